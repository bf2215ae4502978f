"""Stacked layers: every hidden state at once, directional ablation (against transformers with hooks), sharding metadata."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import left_padded_batch, rel_err, torch_forward
from jaxsafe.lm import Decoder, DecoderConfig, from_pretrained
from jaxsafe.parallel import DEFAULT_RULES, make_mesh, param_shardings, shard_params

TINY = DecoderConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_layers=3, num_heads=4, num_kv_heads=2,
                     head_dim=8, architecture="llama")


def _unit(d, seed=0):
    r = np.random.default_rng(seed).normal(size=d).astype(np.float32)
    return r / np.linalg.norm(r)


def _ablating_hooks(torch_model, r):
    """Forward hooks projecting r out of the embedding output and of every decoder layer's output."""
    import torch

    rt = torch.tensor(r)

    def hook(_module, _inputs, output):
        h = output[0] if isinstance(output, tuple) else output
        h = h - (h @ rt)[..., None] * rt
        return (h, *output[1:]) if isinstance(output, tuple) else h

    inner = torch_model.model
    return [inner.embed_tokens.register_forward_hook(hook)] + [l.register_forward_hook(hook) for l in inner.layers]


@pytest.mark.parametrize("variant", ["qwen2", "llama3"])
def test_all_hidden_states_and_ablation_match_transformers(hf_checkpoint, variant):
    directory, torch_model = hf_checkpoint(variant)
    ids, mask = left_padded_batch()
    model = from_pretrained(directory)
    n = model.config.num_layers
    _, ref_hidden = torch_forward(torch_model, ids, mask)
    states = model.all_hidden_states(ids, mask)
    chex.assert_shape(states, (n + 1, *ids.shape, model.config.hidden_size))
    for layer in range(n):  # transformers' last entry comes after the final norm
        assert rel_err(states[layer], ref_hidden[layer], mask) <= 1e-4, layer
    assert rel_err(model.norm(states[n]), ref_hidden[n], mask) <= 1e-4
    hidden = model.hidden_states(ids, mask, layers=(0, 2))
    np.testing.assert_array_equal(hidden[0], states[1])
    np.testing.assert_array_equal(hidden[2], states[3])

    r = _unit(model.config.hidden_size)
    hooks = _ablating_hooks(torch_model, r)
    try:
        ref_logits, ref_hidden = torch_forward(torch_model, ids, mask)
    finally:
        for h in hooks:
            h.remove()
    assert rel_err(model(ids, mask, ablate=jnp.asarray(r)), ref_logits, mask) <= 1e-4
    ablated = model.all_hidden_states(ids, mask, ablate=jnp.asarray(r))
    for layer in range(n):  # transformers records each layer's output before our hook ablates it
        ref = ref_hidden[layer] - (ref_hidden[layer] @ r)[..., None] * r
        assert rel_err(ablated[layer], ref, mask) <= 1e-4, layer
    assert float(jnp.abs(ablated @ r).max()) < 1e-4 * float(jnp.abs(ablated).max())  # nothing left along r
    assert float(jnp.abs(ablated - states).max()) > 1e-2


def test_parameters_are_stacked_and_carry_logical_axes():
    model = Decoder(TINY, rngs=nnx.Rngs(0))
    axes = {".".join(map(str, p)): (tuple(v.shape), v.get_metadata()["out_sharding"])
            for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert axes["layers.self_attn.q_proj.kernel"] == ((3, 32, 32), ("layers", "embed", "heads"))
    assert axes["layers.self_attn.k_proj.kernel"] == ((3, 32, 16), ("layers", "embed", "kv_heads"))
    assert axes["layers.self_attn.o_proj.kernel"] == ((3, 32, 32), ("layers", "heads", "embed"))
    assert axes["layers.mlp.down_proj.kernel"] == ((3, 48, 32), ("layers", "mlp", "embed"))
    assert axes["layers.input_layernorm.scale"] == ((3, 32), ("layers", None))
    assert axes["embed_tokens.embedding"] == ((64, 32), ("vocab", "embed"))
    assert axes["lm_head.kernel"] == ((32, 64), ("embed", "vocab"))
    assert set(n for _, (_, a) in axes.items() for n in a if n) <= set(DEFAULT_RULES)
    # Building the layers one at a time and stacking keeps an unstacked model's random stream:
    # layer 1's q_proj is what a lone layer gets from the same Rngs after the embedding and layer 0.
    from jaxsafe.lm.model import DecoderLayer

    rngs = nnx.Rngs(0)
    nnx.Embed(64, 32, rngs=rngs)
    layers = [DecoderLayer(TINY, rngs=rngs, dtype=jnp.float32, param_dtype=jnp.float32) for _ in range(2)]
    np.testing.assert_array_equal(model.layers.self_attn.q_proj.kernel[1], layers[1].self_attn.q_proj.kernel[...])


@pytest.mark.parametrize("axes", [dict(data=1, fsdp=8), dict(data=2, fsdp=1, tensor=4)])
def test_shard_params_places_by_metadata_and_keeps_the_logits(axes):
    model = Decoder(TINY, rngs=nnx.Rngs(0))
    ids, mask = left_padded_batch(vocab=64, lengths=(12, 9, 5, 7))
    expected = np.asarray(model(ids, mask))
    mesh = make_mesh(**axes)
    shardings = param_shardings(model, mesh)
    fsdp, tensor = mesh.shape["fsdp"] > 1, mesh.shape["tensor"] > 1
    spec = shardings["layers"]["mlp"]["gate_proj"]["kernel"].spec
    assert tuple(spec) == (None, "fsdp" if fsdp else None, "tensor" if tensor else None)
    shard_params(model, mesh)
    kernel = model.layers.mlp.gate_proj.kernel[...]
    assert kernel.sharding.spec == spec and kernel.addressable_shards[0].data.size < kernel.size
    graphdef, state = nnx.split(model)
    logits = jax.jit(lambda s, i, m: nnx.merge(graphdef, s)(i, m))(state, ids, mask)
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-5, atol=1e-5)
