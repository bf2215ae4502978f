"""Loss, parameter selection, the generic train step, remat, mixed precision, LoRA."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxsafe.errors import UserError
from jaxsafe.lm import (Decoder, DecoderConfig, init_train_state, lm_loss_fn, make_train_step, next_token_loss,
                        save_pretrained, select_params)
from jaxsafe.lm.lora import LoRALinear, add_lora, merge_lora

CONFIG = DecoderConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4,
                       num_kv_heads=2, head_dim=8, sliding_window=5, architecture="mistral")


def _batch(seed=0, b=4, t=12):
    ids = jnp.asarray(np.random.default_rng(seed).integers(0, 64, (b, t)), jnp.int32)
    mask = jnp.ones_like(ids).at[1, :4].set(0)
    return {"input_ids": ids, "attention_mask": mask, "loss_mask": mask.at[:, :6].set(0)}


def _flat(state):
    return {".".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(state)}


def test_next_token_loss_is_masked_mean_cross_entropy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7)).astype(np.float32)
    ids = rng.integers(0, 7, (2, 5))
    mask = np.array([[0, 1, 1, 0, 1], [1, 0, 0, 1, 1]])
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    terms = [-logp[b, t - 1, ids[b, t]] for b in range(2) for t in range(1, 5) if mask[b, t]]
    np.testing.assert_allclose(next_token_loss(logits, ids, mask), np.mean(terms), rtol=1e-6)
    assert float(next_token_loss(logits, ids, np.zeros_like(mask))) == 0.0


def test_select_params_by_path():
    model = Decoder(CONFIG, rngs=nnx.Rngs(0))
    state = nnx.state(model)

    def selected(spec):
        return sorted(_flat(nnx.filter_state(state, select_params(model, spec))))

    assert selected("layers.1-5.mlp.down_proj") == ["layers.1.mlp.down_proj.kernel"]
    assert selected("layers.0-1.mlp.down_proj") == ["layers.0.mlp.down_proj.kernel", "layers.1.mlp.down_proj.kernel"]
    assert len(selected("layers.0")) == 9 and len(selected("layers.*.self_attn.*_proj")) == 8
    assert selected("norm, lm_head") == ["lm_head.kernel", "norm.scale"]
    with pytest.raises(UserError, match="'layers.7.mlp' matches no parameter"):
        select_params(model, "layers.7.mlp")
    with pytest.raises(UserError, match="matches no parameter"):
        select_params(state, "layers.1.mlp.dwn_proj")


def test_train_step_moves_only_the_selected_parameters_and_lowers_the_loss():
    model = Decoder(CONFIG, rngs=nnx.Rngs(0))
    trainable = select_params(model, "layers.1-2.mlp.down_proj,norm")
    optimizer = optax.adam(1e-2)
    graphdef, state = init_train_state(model, optimizer, trainable)
    before = _flat(state.params)
    step = make_train_step(graphdef, lm_loss_fn, optimizer, trainable)
    batch = _batch()
    losses = []
    for _ in range(15):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    after = _flat(state.params)
    changed = sorted(n for n in before if not np.array_equal(before[n], after[n]))
    assert changed == ["layers.1.mlp.down_proj.kernel", "norm.scale"]
    assert losses[-1] < losses[0] - 0.05 and int(state.step) == 15
    # The step's first loss is the loss of the model we started from.
    assert losses[0] == pytest.approx(float(lm_loss_fn(model, batch)[0]), rel=1e-6)


def test_remat_gives_the_same_gradients():
    batch = _batch()
    grads = []
    for remat in (False, True):
        graphdef, state = nnx.split(Decoder(CONFIG, rngs=nnx.Rngs(0), remat=remat))
        grads.append(jax.jit(jax.grad(lambda s: lm_loss_fn(nnx.merge(graphdef, s), batch)[0]))(state))
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_bf16_compute_keeps_f32_master_weights():
    model = Decoder(CONFIG, rngs=nnx.Rngs(0), dtype=jnp.bfloat16, param_dtype=jnp.float32)
    reference = Decoder(CONFIG, rngs=nnx.Rngs(0))
    batch = _batch()
    assert model(batch["input_ids"]).dtype == jnp.bfloat16
    np.testing.assert_allclose(model(batch["input_ids"]).astype(jnp.float32), reference(batch["input_ids"]),
                               atol=0.02)
    graphdef, state = init_train_state(model, optax.sgd(0.1))
    state, _ = make_train_step(graphdef, lm_loss_fn, optax.sgd(0.1))(state, batch)
    assert {v.dtype for v in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}


def test_lora_starts_as_identity_trains_only_adapters_and_merges(tmp_path):
    model = Decoder(CONFIG, rngs=nnx.Rngs(0))
    batch = _batch()
    base_logits = model(batch["input_ids"], batch["attention_mask"])
    add_lora(model, "q_proj,layers.1.mlp.*_proj", rank=4, alpha=8, rngs=nnx.Rngs(1))
    assert isinstance(model.layers[0].self_attn.q_proj, LoRALinear)
    assert isinstance(model.layers[1].mlp.up_proj, LoRALinear)
    assert not isinstance(model.layers[0].mlp.up_proj, LoRALinear)
    np.testing.assert_array_equal(model(batch["input_ids"], batch["attention_mask"]), base_logits)
    with pytest.raises(UserError, match="merge_lora"):
        save_pretrained(model, tmp_path)
    optimizer = optax.adam(1e-2)
    graphdef, state = init_train_state(model, optimizer, nnx.LoRAParam)
    before = _flat(state.params)
    step = make_train_step(graphdef, lm_loss_fn, optimizer, nnx.LoRAParam)
    for _ in range(3):
        state, _ = step(state, batch)
    after = _flat(state.params)
    changed = {n for n in before if not np.array_equal(before[n], after[n])}
    assert changed and all(n.endswith("lora_b") or n.endswith("lora_a") for n in changed)
    trained = nnx.merge(graphdef, state.params)
    adapted = trained(batch["input_ids"], batch["attention_mask"])
    assert float(jnp.abs(adapted - base_logits).max()) > 1e-3
    merge_lora(trained)
    assert not nnx.state(trained, nnx.LoRAParam) and type(trained.layers[0].self_attn.q_proj) is nnx.Linear
    np.testing.assert_allclose(trained(batch["input_ids"], batch["attention_mask"]), adapted, atol=1e-5)
    with pytest.raises(UserError, match="match no linear layer"):
        add_lora(trained, "layers.9.q_proj", rngs=nnx.Rngs(0))
