"""Throughput features of the training core and the decoder: gradient accumulation,
remat policies, bf16 compute over f32 master weights, sequence packing, the attention
implementations. Each against an independent computation on a tiny model."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsafe.data.batching import pack_documents, packed_batch, pad_batch
from jaxsafe.errors import UserError
from jaxsafe.lm import Decoder, DecoderConfig, lm_loss_fn
from jaxsafe.optim.config import OptimizerConfig
from jaxsafe.optim.factory import make_optimizer
from jaxsafe.train import init_state, make_step, model_loss

CONFIG = DecoderConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4,
                       num_kv_heads=2, head_dim=8, architecture="llama")


def _batch(b=8, t=12, seed=0):
    ids = jnp.asarray(np.random.default_rng(seed).integers(0, 64, (b, t)), jnp.int32)
    ones = jnp.ones_like(ids)
    return {"input_ids": ids, "attention_mask": ones, "loss_mask": ones}


def _compiled(fn, *args):
    """(compiled fn, its temporaries in bytes)."""
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, compiled.memory_analysis().temp_size_in_bytes


def test_accumulated_gradient_equals_the_full_batch_gradient_in_less_memory():
    graphdef, params = nnx.split(Decoder(CONFIG, rngs=nnx.Rngs(0)))
    batch = _batch(b=8, t=32)
    loss_fn = model_loss(graphdef, None, lm_loss_fn)
    full, _ = _compiled(jax.value_and_grad(lambda p, b: lm_loss_fn(nnx.merge(graphdef, p), b)[0]), params, batch)
    full_loss, full_grads = full(params, batch)
    # one SGD step (lr 1) moves the weights by exactly the (accumulated) gradient
    optimizer = make_optimizer(OptimizerConfig(name="sgd", lr=1.0, momentum=0.0, nesterov=False), 1)
    state = init_state(params, optimizer)
    steps = {k: _compiled(make_step(loss_fn, optimizer, microbatches=k), state, batch, None) for k in (1, 4)}
    new_state, metrics = steps[4][0](state, batch, None)
    moved = jax.tree.map(lambda p, q: p - q, params, new_state.params)
    for a, b in zip(jax.tree.leaves(moved), jax.tree.leaves(full_grads)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(metrics["loss"], full_loss, rtol=1e-6)
    assert steps[4][1] < 0.6 * steps[1][1], (steps[4][1], steps[1][1])
    with pytest.raises(UserError, match="does not divide the batch of 8 rows"):
        make_step(loss_fn, optimizer, microbatches=3)(state, batch, None)
    with pytest.raises(UserError, match="microbatches must be an int >= 1"):
        make_step(loss_fn, optimizer, microbatches=0)


def test_remat_policies_give_the_same_loss_and_gradients_and_full_remat_less_memory():
    batch = _batch(b=8, t=32)
    results, temps = {}, {}
    for remat in ("none", "full", "dots_saveable"):
        graphdef, state = nnx.split(Decoder(CONFIG, rngs=nnx.Rngs(0), remat=remat))
        fn, temps[remat] = _compiled(jax.value_and_grad(lambda s: lm_loss_fn(nnx.merge(graphdef, s), batch)[0]), state)
        results[remat] = fn(state)
    for remat in ("full", "dots_saveable"):
        np.testing.assert_allclose(results[remat][0], results["none"][0], rtol=1e-6)
        for a, b in zip(jax.tree.leaves(results[remat][1]), jax.tree.leaves(results["none"][1])):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert temps["full"] < temps["none"], temps
    with pytest.raises(UserError, match="remat must be one of none, full"):
        Decoder(CONFIG, rngs=nnx.Rngs(0), remat="everything")


def test_packed_rows_give_each_document_its_own_logits_and_loss():
    rng = np.random.default_rng(1)
    docs = [list(rng.integers(1, 64, n)) for n in (5, 7, 3, 9, 4)]
    ids, segment_ids = pack_documents(docs, 16, 0, segments=True)
    np.testing.assert_array_equal(segment_ids, [[1] * 5 + [2] * 7 + [3] * 3 + [0], [1] * 9 + [2] * 4 + [0] * 3])
    batch = packed_batch(ids, segment_ids)
    model = Decoder(CONFIG, rngs=nnx.Rngs(0))
    packed_logits = jax.jit(lambda m, b: m(b["input_ids"], segment_ids=b["segment_ids"]))(model, batch)
    # each document alone in its own row (right padding: a causal model's logits of the real
    # tokens do not see it): its logits, and the summed cross-entropy of its tokens 1..n-1
    alone_ids, alone_mask = pad_batch(docs, 9, 0)
    alone_logits = np.asarray(jax.jit(lambda m, i, k: m(i, k))(model, alone_ids, alone_mask))
    total, count, where = 0.0, 0, [(0, 0), (0, 5), (0, 12), (1, 0), (1, 9)]
    for i, (doc, (row, start)) in enumerate(zip(docs, where)):
        alone = alone_logits[i, :len(doc)]
        np.testing.assert_allclose(packed_logits[row, start:start + len(doc)], alone, atol=1e-5, rtol=1e-5)
        logp = alone - np.log(np.exp(alone).sum(-1, keepdims=True))
        total -= sum(logp[t - 1, doc[t]] for t in range(1, len(doc)))
        count += len(doc) - 1
    np.testing.assert_allclose(jax.jit(lm_loss_fn)(model, batch)[0], total / count, rtol=1e-5)


def test_dot_product_attention_gives_the_einsum_logits_and_gradients():
    window = dataclasses.replace(CONFIG, architecture="mistral", sliding_window=5)
    batch = _batch(b=3, t=12)
    batch["attention_mask"] = batch["attention_mask"].at[1, :4].set(0)  # a left-padded row
    results = []
    for attention in ("einsum", "xla"):
        graphdef, state = nnx.split(Decoder(window, rngs=nnx.Rngs(0), attention=attention))
        f = lambda s: lm_loss_fn(nnx.merge(graphdef, s), batch)[0]  # noqa: E731
        logits = jax.jit(lambda s: nnx.merge(graphdef, s)(batch["input_ids"], batch["attention_mask"]))(state)
        results.append((logits, jax.jit(jax.grad(f))(state)))
    np.testing.assert_allclose(results[1][0], results[0][0], atol=1e-5, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(results[1][1]), jax.tree.leaves(results[0][1])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    with pytest.raises(UserError, match="attention must be one of einsum, xla, cudnn"):
        Decoder(CONFIG, rngs=nnx.Rngs(0), attention="flash")


def test_bf16_compute_gives_the_f32_gradients_within_bf16_rounding_and_keeps_f32_masters():
    batch = _batch(b=4, t=16)
    grads = {}
    for name, dtype in (("f32", jnp.float32), ("bf16", jnp.bfloat16)):
        graphdef, params = nnx.split(Decoder(CONFIG, rngs=nnx.Rngs(0), dtype=dtype, param_dtype=jnp.float32))
        grads[name] = jax.jit(jax.grad(lambda p: lm_loss_fn(nnx.merge(graphdef, p), batch)[0]))(params)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(grads["bf16"]), jax.tree.leaves(grads["f32"])):
        assert a.dtype == jnp.float32  # gradients of f32 masters are f32
        # bf16 keeps 8 significant bits (relative rounding 2^-9 = 0.2%); through two layers a few times that
        assert np.linalg.norm(a - b) <= 0.03 * np.linalg.norm(b), jax.tree_util.keystr(path)
    # RMU's way with bf16 weights: f32 master copies of the trained rows, cast to bf16 in the forward
    graphdef, params = nnx.split(Decoder(CONFIG, rngs=nnx.Rngs(0), dtype=jnp.bfloat16, param_dtype=jnp.bfloat16))
    from jaxsafe.train import select

    selection = select(params, "layers.0-1.mlp.down_proj")
    optimizer = make_optimizer(OptimizerConfig(name="adamw", lr=1e-3), 1)
    state = init_state(jax.tree.map(lambda x: x.astype(jnp.float32), selection.split(params)), optimizer)
    state, _ = jax.jit(make_step(model_loss(graphdef, selection, lm_loss_fn), optimizer))(state, batch, params)
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
    assert {x.dtype for x in jax.tree.leaves(state.opt_state) if x.ndim} == {jnp.dtype(jnp.float32)}
