"""Checkpoint I/O without torch: safetensors codec, refusals and the promised errors."""

import json
import shutil

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from flax import nnx

from jaxsafe.errors import UserError
from jaxsafe.lm import Decoder, DecoderConfig, count_parameters, from_pretrained, save_pretrained
from jaxsafe.lm.checkpoint import SafetensorsFile, encode_safetensors

CONFIG = DecoderConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4,
                       num_kv_heads=2, head_dim=8, architecture="qwen2", attention_bias=True)


@pytest.fixture
def saved(tmp_path):
    model = Decoder(CONFIG, rngs=nnx.Rngs(0))
    save_pretrained(model, tmp_path / "ckpt")
    return model, tmp_path / "ckpt"


def _rewrite(directory, edit):
    """Apply ``edit`` to the {name: array} of model.safetensors and write it back."""
    st = SafetensorsFile(directory / "model.safetensors")
    tensors = {n: np.array(st.get(n)) for n in st.tensors}
    del st
    edit(tensors)
    (directory / "model.safetensors").write_bytes(encode_safetensors(tensors))


def test_safetensors_codec_roundtrips_bfloat16(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1.5, -2.25], ml_dtypes.bfloat16),
              "c": np.arange(3, dtype=np.int64)}
    (tmp_path / "x.safetensors").write_bytes(encode_safetensors(arrays))
    st = SafetensorsFile(tmp_path / "x.safetensors")
    for name, a in arrays.items():
        assert st.get(name).dtype == a.dtype
        np.testing.assert_array_equal(st.get(name), a)


def test_roundtrip_is_exact_and_keeps_dtype(tmp_path):
    model = Decoder(CONFIG, rngs=nnx.Rngs(1), dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    save_pretrained(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["Qwen2ForCausalLM"]
    loaded = from_pretrained(tmp_path)
    assert loaded.config == CONFIG
    ids = np.arange(20).reshape(2, 10) % 96
    forward = nnx.jit(lambda m, i: m(i))
    assert forward(loaded, ids).dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(forward(loaded, ids), np.float32), np.asarray(forward(model, ids), np.float32))


def test_count_parameters_matches_the_formula():
    c = CONFIG
    attn = c.hidden_size * c.head_dim * (2 * c.num_heads + 2 * c.num_kv_heads) + c.head_dim * (c.num_heads + 2 * c.num_kv_heads)
    layer = attn + 3 * c.hidden_size * c.intermediate_size + 2 * c.hidden_size
    assert count_parameters(c) == c.num_layers * layer + 2 * c.vocab_size * c.hidden_size + c.hidden_size


def test_pickle_weights_are_refused(saved):
    _, directory = saved
    (directory / "model.safetensors").unlink()
    (directory / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(UserError, match="pickle.*pytorch_model.bin"):
        from_pretrained(directory)


@pytest.mark.parametrize("edit,message", [
    (lambda t: t.pop("model.layers.1.mlp.down_proj.weight"), "missing tensors: model.layers.1.mlp.down_proj.weight"),
    (lambda t: t.update({"model.layers.9.extra.weight": np.zeros(3, np.float32)}),
     "unexpected tensors: model.layers.9.extra.weight"),
    (lambda t: t.update({"model.layers.0.self_attn.k_proj.bias": np.zeros(3, np.float32)}),
     r"wrongly shaped tensors: model.layers.0.self_attn.k_proj.bias \[3\] \(expected \[16\]\)"),
])
def test_mismatched_tensors_are_named(saved, edit, message):
    _, directory = saved
    _rewrite(directory, edit)
    with pytest.raises(UserError, match=message):
        from_pretrained(directory)


def test_truncated_and_garbage_files_are_user_errors(saved, tmp_path):
    _, directory = saved
    data = (directory / "model.safetensors").read_bytes()
    (directory / "model.safetensors").write_bytes(data[:-100])
    with pytest.raises(UserError, match="truncated"):
        from_pretrained(directory)
    (directory / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(UserError, match="corrupt safetensors header"):
        from_pretrained(directory)


def test_missing_config_and_directory_are_user_errors(saved, tmp_path):
    _, directory = saved
    with pytest.raises(UserError, match="does not exist"):
        from_pretrained(tmp_path / "nowhere")
    (directory / "config.json").unlink()
    with pytest.raises(UserError, match="no config.json"):
        from_pretrained(directory)


def test_sharded_index_naming_a_missing_file_is_a_user_error(saved, tmp_path):
    model, _ = saved
    save_pretrained(model, tmp_path / "sharded", max_shard_bytes=10_000)
    files = sorted((tmp_path / "sharded").glob("model-*.safetensors"))
    assert len(files) > 2
    shutil.move(files[1], tmp_path / "elsewhere.safetensors")
    with pytest.raises(UserError, match=f"{files[1].name}.*missing"):
        from_pretrained(tmp_path / "sharded")


def test_an_interrupted_save_leaves_the_previous_directory_intact(saved, tmp_path, monkeypatch):
    import jaxsafe.lm.checkpoint as checkpoint

    model, directory = saved
    (directory / "README.md").write_text("notes")
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    other = Decoder(CONFIG, rngs=nnx.Rngs(5))

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt  # stands in for a kill while the weights are written

    monkeypatch.setattr(checkpoint, "encode_safetensors", killed)
    with pytest.raises(KeyboardInterrupt):
        save_pretrained(other, directory)
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before
    monkeypatch.undo()
    save_pretrained(other, directory, max_shard_bytes=10_000)  # replaces the half-built copy too
    assert (directory / "README.md").read_text() == "notes" and not (directory / "model.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    ids = np.arange(20).reshape(2, 10) % 96
    np.testing.assert_array_equal(from_pretrained(directory)(ids), other(ids))
    with pytest.raises(UserError, match="is a file"):
        save_pretrained(other, directory / "README.md")
