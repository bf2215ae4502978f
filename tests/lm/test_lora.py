"""Functional LoRA: parity with the peft package, dropout, vmap over adapters, training inside lax.scan, HF export."""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from conftest import left_padded_batch, rel_err, torch_forward
from jaxsafe.errors import UserError
from jaxsafe.lm import Decoder, DecoderConfig, from_pretrained, next_token_loss, save_pretrained
from jaxsafe.lm.lora import TARGET_GROUPS, LoRA, LoRAConfig, adapter_axes, init_lora, merge_lora
from jaxsafe.parallel import make_mesh, shard_params, shard_pytree

TINY = DecoderConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_layers=3, num_heads=4, num_kv_heads=2,
                     head_dim=8, sliding_window=5, max_window_layers=1, architecture="qwen2", attention_bias=True)


def _random_adapters(adapters, seed, std=0.1):
    """The same adapter shapes with every entry random (B non-zero, so the adapters do something)."""
    leaves, treedef = jax.tree.flatten(adapters)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return treedef.unflatten([std * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])


def _peft_model(directory, cfg, seed):
    """transformers model from ``directory`` wrapped by peft with every lora_A / lora_B random."""
    import torch
    import transformers
    peft = pytest.importorskip("peft")

    base = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32,
                                                             attn_implementation="eager")
    model = peft.get_peft_model(base, peft.LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                                                      target_modules=list(cfg.targets)))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return model.eval()


def _adapters_from_peft(peft_model, num_layers):
    """Our stacked adapters from peft's per-layer lora_A [r, in] / lora_B [out, r] weights."""
    per_layer: dict = {}
    for name, module in peft_model.named_modules():
        m = re.search(r"layers\.(\d+)\.(self_attn|mlp)\.(\w+_proj)$", name)
        if m and hasattr(module, "lora_A"):
            a = module.lora_A["default"].weight.detach().numpy().T
            b = module.lora_B["default"].weight.detach().numpy().T
            per_layer.setdefault((m[2], m[3]), {})[int(m[1])] = (a, b)
    return {group: {name: {"a": jnp.asarray(np.stack([layers[l][0] for l in range(num_layers)])),
                           "b": jnp.asarray(np.stack([layers[l][1] for l in range(num_layers)]))}
                    for (g, name), layers in per_layer.items() if g == group}
            for group in ("self_attn", "mlp")}


@pytest.mark.parametrize("targets", [tuple(TARGET_GROUPS), ("q_proj", "v_proj", "down_proj")])
def test_adapted_and_merged_models_match_peft(hf_checkpoint, targets):
    directory, _ = hf_checkpoint("llama3")
    cfg = LoRAConfig(rank=4, alpha=8.0, dropout=0.1, targets=targets)
    peft_model = _peft_model(directory, cfg, seed=1)
    ids, mask = left_padded_batch()
    ref_logits, _ = torch_forward(peft_model, ids, mask)  # eval mode: peft's dropout is off
    model = from_pretrained(directory)
    adapters = _adapters_from_peft(peft_model, model.config.num_layers)
    assert sorted(n for g in adapters.values() for n in g) == sorted(targets)
    chex.assert_trees_all_equal_shapes(adapters, init_lora(model, cfg, jax.random.key(0)))
    assert rel_err(model(ids, mask, lora=LoRA.from_config(adapters, cfg)), ref_logits, mask) <= 1e-4
    # Merging: the same weights as peft's merge_and_unload, and the adapted logits.
    merged = merge_lora(model, adapters, cfg)
    theirs = {k: v.numpy() for k, v in peft_model.merge_and_unload().state_dict().items()}
    from jaxsafe.lm.checkpoint import model_tensors

    ours = model_tensors(merged)
    assert set(ours) == set(theirs)
    for name, array in ours.items():
        np.testing.assert_allclose(array, theirs[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert rel_err(merged(ids, mask), ref_logits, mask) <= 1e-4


def test_fresh_adapters_are_the_identity_and_follow_peft_init():
    model = Decoder(TINY, rngs=nnx.Rngs(0))
    ids, mask = left_padded_batch(vocab=64)
    for init in ("kaiming_uniform", "gaussian"):
        cfg = LoRAConfig(rank=4, alpha=8.0, init=init)
        adapters = init_lora(model, cfg, jax.random.key(0))
        q = adapters["self_attn"]["q_proj"]
        chex.assert_shape(q["a"], (3, 32, 4))
        chex.assert_shape(q["b"], (3, 4, 32))
        assert not np.any(np.asarray(q["b"]))
        a = np.asarray(adapters["mlp"]["down_proj"]["a"])  # fan_in 48
        if init == "kaiming_uniform":  # U(-1/sqrt(in), 1/sqrt(in)), as torch.nn.Linear
            assert np.abs(a).max() <= 1 / np.sqrt(48) and np.abs(a).max() > 0.9 / np.sqrt(48)
        else:  # N(0, 1/r^2)
            assert abs(a.std() - 1 / 4) < 0.03
        lora = LoRA.from_config(adapters, cfg, key=jax.random.key(1))  # dropout on: still exact
        np.testing.assert_array_equal(model(ids, mask, lora=lora), model(ids, mask))
    distinct = init_lora(model, LoRAConfig(), jax.random.key(0))
    assert not np.array_equal(distinct["self_attn"]["q_proj"]["a"], distinct["self_attn"]["k_proj"]["a"])
    assert not np.array_equal(distinct["self_attn"]["q_proj"]["a"][0], distinct["self_attn"]["q_proj"]["a"][1])


def test_dropout_acts_on_the_lora_branch_input_only():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(64, 128)), jnp.float32) + 3.0
    y = jnp.zeros((64, 128))
    eye = {"a": jnp.eye(128), "b": jnp.eye(128)}
    lora = LoRA({"self_attn": {"q_proj": eye}}, scale=2.0, dropout=0.25, key=jax.random.key(0))
    out = np.asarray(lora.adapt("q_proj", x, y))
    kept = out != 0
    # Each input entry is either dropped or scaled by 1/(1 - p) (then by alpha/r).
    np.testing.assert_allclose(out[kept], 2.0 * np.asarray(x)[kept] / 0.75, rtol=1e-6)
    assert abs(1 - kept.mean() - 0.25) < 0.01
    # No key: no dropout; a projection without an adapter is left alone.
    np.testing.assert_allclose(LoRA(lora.adapters, 2.0, 0.25).adapt("q_proj", x, y), 2.0 * x, rtol=1e-6)
    assert lora.adapt("k_proj", x, y) is y
    # Each layer and each projection draws its own mask.
    model = Decoder(TINY, rngs=nnx.Rngs(0))
    cfg = LoRAConfig(rank=4, dropout=0.5)
    adapters = _random_adapters(init_lora(model, cfg, jax.random.key(0)), seed=2)
    ids, mask = left_padded_batch(vocab=64)
    runs = [model(ids, mask, lora=LoRA.from_config(adapters, cfg, key=jax.random.key(k))) for k in (0, 0, 1)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert float(jnp.abs(runs[0] - runs[2]).max()) > 1e-3


def test_a_batch_of_adapters_under_vmap_equals_one_at_a_time():
    model = Decoder(TINY, rngs=nnx.Rngs(0))
    cfg = LoRAConfig(rank=2, alpha=4.0, dropout=0.1)
    batch = [_random_adapters(init_lora(model, cfg, jax.random.key(i)), seed=i) for i in range(3)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *batch)
    keys = jax.random.split(jax.random.key(7), 3)
    ids, mask = left_padded_batch(vocab=64)
    graphdef, params = nnx.split(model)

    @jax.jit
    def logits(adapters, key):
        return nnx.merge(graphdef, params)(ids, mask, lora=LoRA.from_config(adapters, cfg, key))

    together = jax.vmap(logits)(stacked, keys)
    for i in range(3):
        np.testing.assert_allclose(together[i], logits(batch[i], keys[i]), rtol=1e-5, atol=1e-6)


def test_adapters_train_inside_lax_scan_and_export_merged(tmp_path):
    model = Decoder(TINY, rngs=nnx.Rngs(0))
    cfg = LoRAConfig(rank=4, alpha=8.0, dropout=0.05)
    adapters = init_lora(model, cfg, jax.random.key(0))
    ids, mask = left_padded_batch(vocab=64)
    graphdef, params = nnx.split(model)
    optimizer = optax.adam(3e-2)

    def loss(adapters, key):
        logits = nnx.merge(graphdef, params)(ids, mask, lora=LoRA.from_config(adapters, cfg, key))
        return next_token_loss(logits, ids, mask)

    def step(carry, key):
        adapters, opt_state = carry
        value, grads = jax.value_and_grad(loss)(adapters, key)
        updates, opt_state = optimizer.update(grads, opt_state, adapters)
        return (optax.apply_updates(adapters, updates), opt_state), value

    keys = jax.random.split(jax.random.key(1), 12)
    (scanned, _), losses = jax.jit(lambda a, k: jax.lax.scan(step, (a, optimizer.init(a)), k))(adapters, keys)
    carry = (adapters, optimizer.init(adapters))
    for k in keys:
        carry, _ = jax.jit(step)(carry, k)
    chex.assert_trees_all_close(scanned, carry[0], rtol=1e-4, atol=1e-6)
    assert float(losses[-1]) < float(losses[0]) - 0.1
    np.testing.assert_array_equal(np.asarray(nnx.state(model)["norm"]["scale"][...]), np.asarray(params["norm"]["scale"][...]))
    # Export: merged weights in a Hugging Face directory give the adapted model's logits.
    adapted = model(ids, mask, lora=LoRA.from_config(scanned, cfg))
    save_pretrained(merge_lora(model, scanned, cfg), tmp_path)
    np.testing.assert_allclose(from_pretrained(tmp_path)(ids, mask), adapted, rtol=1e-4, atol=1e-5)
    # merge_lora returns a new model / state; the original is untouched.
    np.testing.assert_array_equal(model(ids, mask), nnx.merge(graphdef, params)(ids, mask))


def test_sharded_model_and_adapters_give_the_unsharded_logits():
    model = Decoder(TINY, rngs=nnx.Rngs(0))
    cfg = LoRAConfig(rank=4, alpha=8.0)
    adapters = _random_adapters(init_lora(model, cfg, jax.random.key(0)), seed=3)
    ids, mask = left_padded_batch(vocab=64, lengths=(12, 9, 5, 7))
    expected = np.asarray(model(ids, mask, lora=LoRA.from_config(adapters, cfg)))
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    shard_params(model, mesh)
    sharded = shard_pytree(adapters, adapter_axes(adapters), mesh)
    assert sharded["mlp"]["up_proj"]["b"].sharding.spec == jax.sharding.PartitionSpec(None, None, "tensor")
    graphdef, state = nnx.split(model)
    logits = jax.jit(lambda s, a: nnx.merge(graphdef, s)(ids, mask, lora=LoRA.from_config(a, cfg)))(state, sharded)
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-5, atol=1e-5)


def test_bad_lora_configs_are_user_errors():
    with pytest.raises(UserError, match="rank"):
        LoRAConfig(rank=0)
    with pytest.raises(UserError, match="dropout"):
        LoRAConfig(dropout=1.0)
    with pytest.raises(UserError, match="targets"):
        LoRAConfig(targets=("q_proj", "qkv"))
    with pytest.raises(UserError, match="init"):
        LoRAConfig(init="orthogonal")
