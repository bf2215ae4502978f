"""Hugging Face checkpoint directories in and out, without torch and without pickle.

A checkpoint directory holds ``config.json`` (read with transformers' config
classes) and ``model.safetensors`` or ``model-0000k-of-0000n.safetensors`` shards
with ``model.safetensors.index.json``. We parse safetensors ourselves — an 8-byte
little-endian header length, a JSON header of {name: dtype, shape, data_offsets},
then raw little-endian bytes — and memory-map the data, so bfloat16 stays bfloat16
(via ml_dtypes) and each device reads only the slice of each tensor it holds
(``jax.make_array_from_callback`` over a ``NamedSharding``): the full model is
never materialized on one device.

Hugging Face stores linear weights as [out, in]; NNX kernels are [in, out], so
kernels are transposed on the way in and out. Hugging Face names every layer's
tensors apart (``model.layers.3.mlp.down_proj.weight``); our decoder stacks them
(``layers.mlp.down_proj.kernel`` [L, in, out]), so loading stacks the L per-layer
tensors and saving splits them again.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx

from jaxsafe.errors import UserError
from jaxsafe.io import atomic_write_bytes, atomic_write_json
from jaxsafe.lm.config import DecoderConfig
from jaxsafe.lm.model import Decoder
from jaxsafe.parallel import DEFAULT_RULES, barrier, is_primary, logical_to_sharding, param_axes

SAFETENSORS_DTYPES: Mapping[str, np.dtype] = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype(np.int64), "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16), "I8": np.dtype(np.int8), "U8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_),
}
_DTYPE_CODES = {v: k for k, v in SAFETENSORS_DTYPES.items()}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
INDEX_FILE = "model.safetensors.index.json"
# Buffers some exporters write that are recomputed, not learned.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


class SafetensorsFile:
    """A parsed, memory-mapped safetensors file; ``tensors[name]`` is (dtype, shape, start, end)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise UserError(f"{self.path}: not a safetensors file (shorter than 8 bytes)")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise UserError(f"{self.path}: corrupt safetensors header (length {n} exceeds the file)")
            try:
                header = json.loads(f.read(n))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise UserError(f"{self.path}: corrupt safetensors header ({e})") from None
        if not isinstance(header, dict):
            raise UserError(f"{self.path}: corrupt safetensors header (not a JSON object)")
        self.metadata = header.pop("__metadata__", {}) or {}
        self.data_start = 8 + n
        data_size = size - self.data_start
        self.tensors: dict[str, tuple[np.dtype, tuple[int, ...], int, int]] = {}
        for name, info in header.items():
            try:
                dtype = SAFETENSORS_DTYPES[info["dtype"]]
                shape = tuple(int(s) for s in info["shape"])
                start, end = (int(o) for o in info["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise UserError(f"{self.path}: tensor {name!r} has a malformed or unsupported header entry {info!r}") from None
            if not 0 <= start <= end <= data_size or end - start != math.prod(shape) * dtype.itemsize:
                raise UserError(f"{self.path}: tensor {name!r} data offsets {start}..{end} do not fit its shape "
                                f"{shape} {info['dtype']} or the file (truncated?)")
            self.tensors[name] = (dtype, shape, start, end)
        self._mmap = None

    def get(self, name: str) -> np.ndarray:
        """The tensor as a read-only memory-mapped array (nothing is read until sliced)."""
        dtype, shape, start, end = self.tensors[name]
        if self._mmap is None:
            self._mmap = np.memmap(self.path, dtype=np.uint8, mode="r")
        return self._mmap[self.data_start + start:self.data_start + end].view(dtype).reshape(shape)

    def release(self) -> None:
        """Unmaps the file (a later :meth:`get` maps it again). The pages a load touched
        count in the process's resident memory while mapped; releasing after each
        parameter keeps that to one parameter's worth (benchmarks/load.py)."""
        self._mmap = None


def encode_safetensors(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """The bytes of a safetensors file holding ``tensors`` (C order, little endian)."""
    header: dict[str, Any] = {"__metadata__": dict(metadata or {"format": "pt"})}
    chunks, offset = [], 0
    for name, array in tensors.items():
        array = np.ascontiguousarray(array)
        if array.dtype not in _DTYPE_CODES:
            raise UserError(f"cannot store tensor {name!r} of dtype {array.dtype} in safetensors")
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _DTYPE_CODES[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # data starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def hf_name(path: tuple, layer: int | None = None) -> str:
    """Hugging Face tensor name of the parameter at an NNX ``path`` (for a stacked layer
    parameter, ``layers.…``, the name of its slice ``layer``)."""
    *module, leaf = (str(p) for p in path)
    suffix = {"kernel": "weight", "embedding": "weight", "scale": "weight", "bias": "bias"}.get(leaf)
    if suffix is None:
        raise UserError(f"parameter {'.'.join((*module, leaf))} has no Hugging Face name")
    if module == ["lm_head"]:
        return "lm_head." + suffix
    if _is_stacked(path):
        module = [module[0], str(layer), *module[1:]]
    return "model." + ".".join(module) + "." + suffix


def _is_kernel(path: tuple) -> bool:
    return str(path[-1]) == "kernel"


def _is_stacked(path: tuple) -> bool:
    return str(path[0]) == "layers"


def _hf_tensors(path: tuple, shape: tuple) -> list[tuple[str, tuple[int, ...]]]:
    """(Hugging Face name, Hugging Face shape) of each tensor that makes up the parameter at ``path``."""
    if _is_stacked(path):
        per_layer = tuple(shape[1:])
        return [(hf_name(path, l), per_layer[::-1] if _is_kernel(path) else per_layer) for l in range(shape[0])]
    return [(hf_name(path), tuple(shape)[::-1] if _is_kernel(path) else tuple(shape))]


def resolve_checkpoint_dir(path_or_hub_name: str | os.PathLike) -> Path:
    """A local directory as is; otherwise a Hugging Face hub id, downloaded (safetensors only)."""
    path = Path(path_or_hub_name)
    if path.is_dir():
        return path
    name = str(path_or_hub_name)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise UserError(f"checkpoint directory {name} does not exist (and is not a hub id like 'org/model')")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.model",
                                                            "*.tiktoken", "*.txt", "*.jinja"]))
    except Exception as e:  # network, auth and not-found errors all mean "cannot get it"
        raise UserError(f"could not fetch {name!r} from the Hugging Face hub: {type(e).__name__}: {e}") from None


def load_config(directory: str | os.PathLike) -> DecoderConfig:
    """The :class:`DecoderConfig` of a checkpoint directory's ``config.json``."""
    import transformers

    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise UserError(f"{directory}: no config.json")
    try:
        hf = transformers.AutoConfig.from_pretrained(str(directory))
    except (ValueError, OSError, KeyError, TypeError) as e:
        raise UserError(f"{directory}/config.json: {e}") from None
    return DecoderConfig.from_hf(hf)


def open_weights(directory: Path) -> dict[str, SafetensorsFile]:
    """Map every tensor name to the parsed safetensors file that holds it."""
    index = directory / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise UserError(f"{index}: malformed index ({e})") from None
        files = sorted(set(weight_map.values()))
    else:
        files = sorted(p.name for p in directory.glob("*.safetensors"))
    if not files:
        pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise UserError(f"{directory}: only pickle weights ({', '.join(pickles)}); jaxsafe does not unpickle "
                            "untrusted files - convert them to safetensors first")
        raise UserError(f"{directory}: no *.safetensors weights")
    found: dict[str, SafetensorsFile] = {}
    for fname in files:
        if not (directory / fname).is_file():
            raise UserError(f"{directory}: weight file {fname} (listed in {INDEX_FILE}) is missing")
        st = SafetensorsFile(directory / fname)
        for name in st.tensors:
            found[name] = st
    if index.is_file():
        misplaced = sorted(n for n, f in weight_map.items() if n not in found or found[n].path.name != f)
        if misplaced:
            raise UserError(f"{index}: tensors not in the files it names: {_names(misplaced)}")
    return found


def _names(names, limit=8) -> str:
    names = list(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_tensors(directory: Path, config: DecoderConfig, tensors: Mapping[str, SafetensorsFile],
                  expected: Mapping[str, tuple[int, ...]]) -> None:
    """Raise a :class:`UserError` naming every missing, unexpected or wrongly shaped tensor.

    ``expected`` maps Hugging Face names to their Hugging Face shapes ([out, in] for weights)."""
    ignored = {n for n in tensors if n.endswith(_IGNORED_SUFFIXES)}
    if config.tie_word_embeddings:  # some exporters write the tied head anyway
        ignored.add("lm_head.weight")
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected) - ignored)
    wrong = []
    for name, want in expected.items():
        if name in tensors:
            shape = tensors[name].tensors[name][1]
            if shape != tuple(want):
                wrong.append(f"{name} {list(shape)} (expected {list(want)})")
    problems = [f"missing tensors: {_names(missing)}"] * bool(missing)
    problems += [f"unexpected tensors: {_names(unexpected)}"] * bool(unexpected)
    problems += [f"wrongly shaped tensors: {_names(wrong)}"] * bool(wrong)
    if problems:
        raise UserError(f"{directory} does not match its config.json ({config.architecture}): " + "; ".join(problems))


def from_pretrained(path_or_hub_name: str | os.PathLike, dtype=None, mesh: jax.sharding.Mesh | None = None, *,
                    param_dtype=None, rules: Mapping[str, Any] = DEFAULT_RULES, remat: bool | str = False) -> Decoder:
    """Load a Llama / Mistral / Qwen2 checkpoint directory (or hub id) into a :class:`Decoder`.

    Args:
      path_or_hub_name: local Hugging Face directory, or a hub id where the hub is reachable.
      dtype: compute dtype; ``None`` keeps the checkpoint's dtype (bf16 stays bf16).
      mesh: when given, every parameter is placed directly with the ``NamedSharding``
        its logical axes (NNX ``out_sharding`` metadata) map to under ``rules``
        (FSDP over "fsdp", tensor parallel over "tensor").
      param_dtype: storage dtype, default ``dtype`` (f32 here with bf16 ``dtype`` keeps f32 master weights).
      remat: what each layer's backward pass keeps: a :data:`jaxsafe.lm.model.REMAT_POLICIES` name
        ("none", "full", "dots_saveable", ...); True = "full", False = "none".
    Raises:
      UserError: pickle-only weights, missing / unexpected / wrongly shaped tensors, corrupt files.
    """
    directory = resolve_checkpoint_dir(path_or_hub_name)
    config = load_config(directory)
    tensors = open_weights(directory)
    if dtype is None:
        st = tensors.get("model.embed_tokens.weight")
        dtype = st.tensors["model.embed_tokens.weight"][0] if st is not None else np.dtype(np.float32)
    dtype = jnp.dtype(dtype)
    param_dtype = dtype if param_dtype is None else jnp.dtype(param_dtype)
    abstract = nnx.eval_shape(lambda: Decoder(config, rngs=nnx.Rngs(0), dtype=dtype, param_dtype=param_dtype,
                                              remat=remat))
    graphdef, state = nnx.split(abstract)
    flat = nnx.to_flat_state(state)
    check_tensors(directory, config, tensors, {n: s for p, v in flat for n, s in _hf_tensors(p, v.shape)})
    for p, var in flat:
        var.set_value(_load(tensors, p, var, param_dtype, mesh, rules))
        for file in set(tensors.values()):
            file.release()
    return nnx.merge(graphdef, state)


def _load(tensors: Mapping[str, SafetensorsFile], path: tuple, var, dtype, mesh, rules) -> jax.Array:
    """The parameter at ``path`` from its Hugging Face tensor(s): transposed if a kernel,
    stacked if a layer parameter; with a mesh each device reads only its own slice."""
    def view(name):
        array = tensors[name].get(name)
        return array.T if _is_kernel(path) else array

    names = [n for n, _ in _hf_tensors(path, var.shape)]
    if _is_stacked(path):
        def read(index):
            layers = range(len(names))[index[0]]
            return np.stack([np.asarray(view(names[l])[index[1:]]).astype(dtype) for l in layers])
    else:
        def read(index):
            return np.asarray(view(names[0])[index]).astype(dtype)
    shape = tuple(var.shape)
    if mesh is None:
        return jnp.asarray(read(tuple(slice(None) for _ in shape)))
    sharding = logical_to_sharding(param_axes(var, path), mesh, rules, shape)
    return jax.make_array_from_callback(shape, sharding, read)


def model_tensors(model: Decoder) -> dict[str, np.ndarray]:
    """The model's parameters under their Hugging Face names, as host numpy arrays in [out, in]
    layout, one tensor per layer, in Hugging Face's order (embeddings, layer 0, layer 1, ..., the rest)."""
    outer, layers = {}, {}
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        array = np.asarray(jax.device_get(var.get_value()))
        if _is_stacked(path):
            for l in range(array.shape[0]):
                layers[l, hf_name(path, l)] = array[l].T if _is_kernel(path) else array[l]
        else:
            outer[hf_name(path)] = array.T if _is_kernel(path) else array
    first = {n: outer.pop(n) for n in list(outer) if n.startswith("model.embed_tokens.")}
    return {**first, **{n: a for (_, n), a in sorted(layers.items(), key=lambda kv: kv[0][0])}, **outer}


def save_pretrained(model: Decoder, path: str | os.PathLike, tokenizer=None,
                    max_shard_bytes: int = 2 * 1024**3) -> Path:
    """Write ``model`` as a Hugging Face directory (config.json, safetensors, index when sharded).

    transformers' ``AutoModelForCausalLM``, lm-evaluation-harness and vLLM read the
    result. Tensors keep the model's parameter dtype. The directory is built aside
    (``.NAME.partial``, with copies of any other files a previous ``path`` held) and
    renamed into place, so a killed save leaves the previous directory intact.

    In a multi-process job every process calls it: the primary process writes, and all
    return together (a barrier), so none reads or replaces the directory before it is
    complete — and no two processes build it in the same ``.NAME.partial``.
    """
    path = Path(path)
    tensors = model_tensors(model)
    dtypes = {a.dtype for a in tensors.values()}
    hf = model.config.to_hf()
    hf.dtype = str(jnp.dtype(dtypes.pop())) if len(dtypes) == 1 else "float32"
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name, array in tensors.items():
        if shards[-1] and size + array.nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = array
        size += array.nbytes
    if path.exists() and not path.is_dir():
        raise UserError(f"save_pretrained: path {path} is a file, not a directory")
    if is_primary():
        _write_pretrained(path, hf, shards, tensors, tokenizer)
    barrier(f"jaxsafe save_pretrained {path}")
    return path


def _write_pretrained(path: Path, hf, shards: list[dict[str, np.ndarray]], tensors: Mapping[str, np.ndarray],
                      tokenizer) -> None:
    """:func:`save_pretrained`'s files, built aside and renamed into place (one process)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    work, old = path.parent / f".{path.name}.partial", path.parent / f".{path.name}.old"
    if old.exists() and not path.exists():  # a kill between the two renames below: put it back
        os.replace(old, path)
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    if path.is_dir():  # keep what else the directory held (README, generation_config, ...), not old weights
        shutil.copytree(path, work, ignore=lambda _d, names: [n for n in names if n == INDEX_FILE or
                                                              (n.startswith("model") and n.endswith(".safetensors"))])
    work.mkdir(exist_ok=True)
    atomic_write_json(work / "config.json", hf.to_dict())
    if len(shards) == 1:
        atomic_write_bytes(work / "model.safetensors", encode_safetensors(shards[0]))
    else:
        weight_map = {}
        for k, shard in enumerate(shards, 1):
            fname = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
            atomic_write_bytes(work / fname, encode_safetensors(shard))
            weight_map.update(dict.fromkeys(shard, fname))
        atomic_write_json(work / INDEX_FILE, {"metadata": {"total_size": sum(a.nbytes for a in tensors.values())},
                                              "weight_map": weight_map})
    if tokenizer is not None:
        tokenizer.save_pretrained(str(work))
    if path.exists():
        os.replace(path, old)
    os.replace(work, path)
    shutil.rmtree(old, ignore_errors=True)


def load_tokenizer(path_or_hub_name: str | os.PathLike):
    """The checkpoint's tokenizer (with its chat template) via ``transformers.AutoTokenizer``."""
    import transformers

    directory = resolve_checkpoint_dir(path_or_hub_name)
    try:
        return transformers.AutoTokenizer.from_pretrained(str(directory))
    except (ValueError, OSError, KeyError, TypeError) as e:
        raise UserError(f"{directory}: cannot load a tokenizer ({e})") from None


def abstract_parameters(config: DecoderConfig) -> dict[str, tuple[int, ...]]:
    """{Hugging Face name: Hugging Face shape} of every tensor of a model with ``config``, from shapes alone."""
    abstract = nnx.eval_shape(lambda: Decoder(config, rngs=nnx.Rngs(0)))
    return {n: s for p, v in nnx.to_flat_state(nnx.state(abstract, nnx.Param)) for n, s in _hf_tensors(p, v.shape)}


def count_parameters(config: DecoderConfig) -> int:
    """Number of parameters of a model with this config, from shapes alone."""
    return sum(math.prod(shape) for shape in abstract_parameters(config).values())
