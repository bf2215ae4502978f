"""Cached generation against uncached decoding and transformers; config conversion; `jaxsafe lm info`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import VARIANTS, _hf_config, left_padded_batch
from jaxsafe.cli import main
from jaxsafe.errors import UserError
from jaxsafe.lm import Decoder, DecoderConfig, count_parameters, from_pretrained, save_pretrained
from jaxsafe.lm.generate import generate

TINY = DecoderConfig(vocab_size=160, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4,
                     num_kv_heads=2, head_dim=8, sliding_window=4, architecture="mistral", eos_token_id=7)


def _uncached_greedy(model, ids, mask, steps):
    """Greedy decoding that re-runs the whole sequence for every token (one fixed-size buffer:
    causality keeps the not-yet-written slots after t from affecting the logits at t)."""
    t = ids.shape[1]
    ids = np.concatenate([ids, np.zeros((len(ids), steps), ids.dtype)], 1)
    mask = np.concatenate([mask, np.ones((len(ids), steps), mask.dtype)], 1)
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda i, m: nnx.merge(graphdef, state)(i, m))
    for i in range(steps):
        ids[:, t + i] = np.asarray(jnp.argmax(forward(ids, mask)[:, t + i - 1], axis=-1))
    return ids[:, t:]


def test_cached_greedy_equals_uncached_greedy_past_the_sliding_window():
    model = Decoder(TINY.replace(eos_token_id=None), rngs=nnx.Rngs(0))
    ids, mask = left_padded_batch()
    np.testing.assert_array_equal(generate(model, ids, mask, max_new_tokens=6), _uncached_greedy(model, ids, mask, 6))


def test_greedy_matches_transformers_generate(hf_checkpoint):
    import torch

    directory, torch_model = hf_checkpoint("qwen2")
    ids, mask = left_padded_batch()
    with torch.no_grad():
        ref = torch_model.generate(torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                                   max_new_tokens=5, do_sample=False, eos_token_id=None, pad_token_id=0)
    ours = generate(from_pretrained(directory), ids, mask, max_new_tokens=5, eos_token_id=-1)
    np.testing.assert_array_equal(ours, ref[:, ids.shape[1]:].numpy())


def test_sampling_follows_the_softmax_and_stops_at_eos():
    model = Decoder(TINY, rngs=nnx.Rngs(0))
    model.lm_head.kernel[...] *= 50.0  # a peaked next-token distribution, far from uniform
    prompt = np.tile(np.arange(3, 9)[None], (20000, 1))
    probs = np.asarray(jax.nn.softmax(model(prompt[:1])[0, -1] / 2.0))
    first = np.asarray(generate(model, prompt, max_new_tokens=1, temperature=2.0, key=jax.random.key(0)))[:, 0]
    # Total variation to the softmax: sampling noise alone gives about 0.03 at n = 20000, V = 160.
    assert 0.5 * np.abs(np.bincount(first, minlength=160) / len(first) - probs).sum() < 0.06
    assert 0.1 < probs.max() < 0.6 and 0.5 * np.abs(probs - 1 / 160).sum() > 0.3  # neither greedy nor uniform
    tokens = np.asarray(generate(model, prompt[:64], max_new_tokens=12, temperature=3.0, key=jax.random.key(1)))
    rows_with_eos = [r for r in tokens if 7 in r[:-1]]
    assert rows_with_eos, "the test needs some row to emit eos"
    for row in rows_with_eos:
        assert (row[list(row).index(7) + 1:] == 7).all()  # padded with eos (no pad id configured)
    with pytest.raises(UserError, match="key"):
        generate(model, prompt[:1], temperature=1.0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_config_round_trips_through_transformers(variant):
    pytest.importorskip("torch", reason="transformers model classes need torch")
    hf = _hf_config(variant)
    config = DecoderConfig.from_hf(hf)
    back = config.to_hf()
    assert type(back) is type(hf)
    assert DecoderConfig.from_hf(back) == config
    expected = {"llama3": ("llama", None), "mistral": ("mistral", 4), "qwen2": ("qwen2", 5), "tied": ("llama", None)}
    assert (config.architecture, config.sliding_window) == expected[variant]
    assert config.attention_bias == (variant in ("qwen2", "tied"))


def test_legacy_rope_scaling_and_unsupported_models():
    import transformers

    legacy = transformers.LlamaConfig(rope_theta=500000.0, rope_scaling={"type": "llama3", "factor": 8.0,
                                      "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                      "original_max_position_embeddings": 8192})
    config = DecoderConfig.from_hf(legacy)
    assert config.rope_theta == 500000.0 and config.rope_scaling["rope_type"] == "llama3"
    with pytest.raises(UserError, match="model_type 'gpt2' is not supported"):
        DecoderConfig.from_hf(transformers.GPT2Config())
    with pytest.raises(UserError, match="num_kv_heads"):
        TINY.replace(num_kv_heads=3)


def test_lm_info_prints_architecture_and_parameter_count(tmp_path, capsys):
    save_pretrained(Decoder(TINY, rngs=nnx.Rngs(0)), tmp_path)
    assert main(["lm", "info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "mistral" in out and f"{count_parameters(TINY):,}" in out and "4 tokens, all layers" in out
    (tmp_path / "config.json").unlink()
    assert main(["lm", "info", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err
