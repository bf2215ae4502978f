"""Our decoder against transformers' PyTorch models: logits, hidden states, dtypes, save/load, sharding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import VARIANTS, left_padded_batch, rel_err, torch_forward
from jaxsafe.lm.checkpoint import from_pretrained, save_pretrained
from jaxsafe.parallel import make_mesh


@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_and_every_hidden_state_match_transformers(hf_checkpoint, variant):
    directory, torch_model = hf_checkpoint(variant)
    ids, mask = left_padded_batch()  # 12 tokens: longer than the sliding windows (4, 5)
    ref_logits, ref_hidden = torch_forward(torch_model, ids, mask)
    model = from_pretrained(directory)
    assert rel_err(model(ids, mask), ref_logits, mask) <= 1e-4
    n = model.config.num_layers
    hidden = model.hidden_states(ids, mask, layers=range(n))
    for layer in range(n - 1):  # transformers' hidden_states[ℓ + 1] is layer ℓ's output
        assert rel_err(hidden[layer], ref_hidden[layer + 1], mask) <= 1e-4, layer
    # ... except the last entry, which comes after the final norm.
    assert rel_err(model.norm(hidden[n - 1]), ref_hidden[n], mask) <= 1e-4


def test_left_padding_gives_the_unpadded_logits(hf_checkpoint):
    model = from_pretrained(hf_checkpoint("mistral")[0])
    ids, mask = left_padded_batch()
    padded = np.asarray(model(ids, mask))
    n = int(mask[-1].sum())  # the most padded row: 7 pads before 5 tokens
    alone = np.asarray(model(ids[-1:, -n:]))[0]
    np.testing.assert_allclose(padded[-1, -n:], alone, rtol=1e-5, atol=1e-5)


def test_hidden_states_runs_only_the_layers_it_needs(hf_checkpoint):
    model = from_pretrained(hf_checkpoint("llama3")[0])
    ids, mask = left_padded_batch()

    def layer_scans(layers):
        """(scan length, matmuls in the scanned body) of each layer scan the call traces."""
        graphdef, state = nnx.split(model)
        jaxpr = jax.make_jaxpr(lambda s: nnx.merge(graphdef, s).hidden_states(ids, mask, layers))(state)
        return [(e.params["length"], str(e.params["jaxpr"]).count("dot_general"))
                for e in jaxpr.jaxpr.eqns if e.primitive.name == "scan"]

    # One scan over the stacked layers, one layer body (7 projections + 2 attention einsums),
    # as many iterations as the deepest requested layer needs.
    assert layer_scans((0,)) == [(1, 9)]
    assert layer_scans((2,)) == layer_scans((0, 1, 2)) == [(3, 9)]


def test_bfloat16_checkpoint_loads_as_bfloat16(hf_checkpoint):
    import torch
    import transformers

    directory, _ = hf_checkpoint("qwen2", "bfloat16")
    model = from_pretrained(directory)
    dtypes = {v.dtype for _, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert dtypes == {jnp.dtype(jnp.bfloat16)}
    ids, mask = left_padded_batch()
    # Upcast to f32 the weights are exactly the bf16 ones: f32 parity with transformers upcasting too.
    upcast = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32,
                                                               attn_implementation="eager").eval()
    ref_logits, _ = torch_forward(upcast, ids, mask)
    assert rel_err(from_pretrained(directory, dtype=jnp.float32)(ids, mask), ref_logits, mask) <= 1e-4
    assert model(ids, mask).dtype == jnp.bfloat16
    assert rel_err(model(ids, mask), ref_logits, mask) <= 5e-2  # bf16 compute: 8-bit mantissa


@pytest.mark.parametrize("variant,shard_bytes", [("llama3", 2**30), ("tied", 40_000)])
def test_save_pretrained_loads_in_transformers_with_identical_logits(hf_checkpoint, tmp_path, variant, shard_bytes):
    import torch
    import transformers

    directory, torch_model = hf_checkpoint(variant)
    ids, mask = left_padded_batch()
    ref_logits, _ = torch_forward(torch_model, ids, mask)
    save_pretrained(from_pretrained(directory), tmp_path, max_shard_bytes=shard_bytes)
    assert (tmp_path / "model.safetensors.index.json").exists() == (shard_bytes < 2**30)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32,
                                                                 attn_implementation="eager").eval()
    assert type(reloaded) is type(torch_model)
    np.testing.assert_array_equal(torch_forward(reloaded, ids, mask)[0], ref_logits)
    np.testing.assert_array_equal(from_pretrained(tmp_path)(ids, mask), from_pretrained(directory)(ids, mask))


@pytest.mark.parametrize("axes", [dict(data=1, fsdp=8), dict(data=2, fsdp=1, tensor=4), dict(data=1, fsdp=2, tensor=4)])
def test_sharded_logits_equal_unsharded(hf_checkpoint, axes):
    directory, _ = hf_checkpoint("qwen2")
    ids, mask = left_padded_batch(lengths=(12, 9, 5, 7))
    expected = np.asarray(from_pretrained(directory)(ids, mask))
    mesh = make_mesh(**axes)
    model = from_pretrained(directory, mesh=mesh)
    mlp = model.layers.mlp.up_proj.kernel[...]
    assert mlp.sharding.mesh == mesh and mlp.addressable_shards[0].data.size < mlp.size  # really split
    graphdef, state = nnx.split(model)
    logits = jax.jit(lambda s, i, m: nnx.merge(graphdef, s)(i, m))(state, ids, mask)
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-5, atol=1e-5)
