"""Functional LoRA (Hu et al. 2021, "LoRA", eq. 3): adapters are a pytree, not model state.

A frozen linear map x·W is replaced by x·W + (α/r)·dropout(x)·A·B with A ∈ R^{in×r}
and B ∈ R^{r×out}, B initialised to zero so an adapted model starts out computing
exactly what the original did. This is the ``peft`` package's convention (its
``lora_A`` / ``lora_B`` are our Aᵀ / Bᵀ; dropout acts on the input of the LoRA
branch only, and A starts Kaiming-uniform, or Gaussian with std 1/r).

The adapters of every targeted projection are stacked over the decoder's layers
like its weights, so the model's layer scan carries them along::

    cfg = LoRAConfig(rank=16, alpha=32, dropout=0.05)
    adapters = init_lora(model, cfg, jax.random.key(0))
    # {"self_attn": {"q_proj": {"a": [L, in, r], "b": [L, r, out]}, ...}, "mlp": {...}}
    logits = model(ids, mask, lora=LoRA.from_config(adapters, cfg, key=dropout_key))
    merged = merge_lora(model, adapters, cfg)     # plain weights, for save_pretrained

Nothing here draws from stateful ``nnx.Rngs``: the adapters are plain arrays and
dropout takes an explicit key (no key = no dropout, i.e. evaluation), so
a batch of adapters runs under ``jax.vmap`` and an adapter training loop runs
inside ``lax.scan``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxsafe.errors import UserError

# Every projection LoRA can adapt, and the sub-module of a decoder layer that holds it.
TARGET_GROUPS = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
                 "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
_TARGET_INDEX = {name: i for i, name in enumerate(TARGET_GROUPS)}
# Logical (input, output) axes of each projection's kernel, as the model declares them.
_KERNEL_AXES = {"q_proj": ("embed", "heads"), "k_proj": ("embed", "kv_heads"), "v_proj": ("embed", "kv_heads"),
                "o_proj": ("heads", "embed"), "gate_proj": ("embed", "mlp"), "up_proj": ("embed", "mlp"),
                "down_proj": ("mlp", "embed")}
INITS = ("kaiming_uniform", "gaussian")


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    """Rank r, α (the update is scaled by α/r), dropout on the LoRA branch input, target projections.

    ``init`` is how A starts: "kaiming_uniform" (U(−1/√in, 1/√in), peft's default) or
    "gaussian" (N(0, 1/r²), peft's ``init_lora_weights="gaussian"``); B starts at zero.
    """

    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    targets: tuple[str, ...] = tuple(TARGET_GROUPS)
    init: str = "kaiming_uniform"

    def __post_init__(self):
        object.__setattr__(self, "targets", tuple(self.targets))
        if int(self.rank) != self.rank or self.rank < 1:
            raise UserError(f"LoRA rank must be a positive integer, got {self.rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        unknown = [t for t in self.targets if t not in TARGET_GROUPS]
        if unknown or not self.targets:
            raise UserError(f"LoRA targets {list(self.targets)} must be a non-empty subset of {list(TARGET_GROUPS)}")
        if self.init not in INITS:
            raise UserError(f"LoRA init {self.init!r} is not one of {INITS}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


@functools.partial(jax.tree_util.register_dataclass, data_fields=("adapters", "scale", "key"),
                   meta_fields=("dropout",))
@dataclasses.dataclass(frozen=True)
class LoRA:
    """What a forward pass needs to apply adapters: the adapter pytree, α/r, dropout rate and key.

    ``key=None`` turns dropout off. A pytree (``dropout`` is static), so it can cross
    ``jit``/``vmap``/``scan`` boundaries; the decoder hands each layer its slice.
    """

    adapters: Any
    scale: Any = 1.0
    dropout: float = 0.0
    key: jax.Array | None = None

    @classmethod
    def from_config(cls, adapters, cfg: LoRAConfig, key: jax.Array | None = None) -> "LoRA":
        return cls(adapters, cfg.scale, cfg.dropout, key)

    def adapt(self, name: str, x: jax.Array, y: jax.Array) -> jax.Array:
        """y + scale·dropout(x)·A·B for projection ``name`` of one layer (y unchanged if not adapted)."""
        adapter = self.adapters.get(TARGET_GROUPS[name], {}).get(name)
        if adapter is None:
            return y
        if self.key is not None and self.dropout > 0:
            keep = jax.random.bernoulli(jax.random.fold_in(self.key, _TARGET_INDEX[name]), 1.0 - self.dropout,
                                        x.shape)
            x = jnp.where(keep, x / jnp.asarray(1.0 - self.dropout, x.dtype), jnp.zeros((), x.dtype))
        update = (x @ adapter["a"].astype(x.dtype)) @ adapter["b"].astype(x.dtype)
        return y + (self.scale * update).astype(y.dtype)


def _stacked_kernels(model_or_params) -> dict[str, dict[str, Any]]:
    """{group: {name: stacked kernel Variable [L, in, out]}} of a Decoder or its parameter state."""
    if isinstance(model_or_params, nnx.Module):
        layers = model_or_params.layers
        get = lambda group, name: getattr(getattr(layers, group), name).kernel
    else:
        layers = model_or_params["layers"]
        get = lambda group, name: layers[group][name]["kernel"]
    kernels: dict[str, dict[str, Any]] = {}
    for name, group in TARGET_GROUPS.items():
        kernels.setdefault(group, {})[name] = get(group, name)
    return kernels


def init_lora(model_or_params, cfg: LoRAConfig, key: jax.Array, dtype=jnp.float32) -> dict:
    """Fresh adapters for every target of a stacked decoder: A random, B zero, stacked over layers.

    Args:
      model_or_params: a :class:`~jaxsafe.lm.model.Decoder` or its ``nnx.State`` (only shapes are read).
      cfg: rank, targets and A's initialisation.
      key: the only source of randomness (one fold-in per target).
      dtype: adapter dtype; float32 by default, also over a bf16 model.
    Returns:
      ``{"self_attn": {"q_proj": {"a": [L, in, r], "b": [L, r, out]}, ...}, "mlp": {...}}``
      holding the targeted projections only.
    """
    kernels = _stacked_kernels(model_or_params)
    adapters: dict[str, dict[str, Any]] = {}
    for name in cfg.targets:
        group = TARGET_GROUPS[name]
        layers, fan_in, fan_out = kernels[group][name].shape
        k = jax.random.fold_in(key, _TARGET_INDEX[name])
        if cfg.init == "gaussian":
            a = jax.random.normal(k, (layers, fan_in, cfg.rank), dtype) / cfg.rank
        else:  # kaiming_uniform(a=√5) as torch.nn.Linear and peft use: bound 1/√fan_in
            bound = 1.0 / math.sqrt(fan_in)
            a = jax.random.uniform(k, (layers, fan_in, cfg.rank), dtype, -bound, bound)
        adapters.setdefault(group, {})[name] = {"a": a, "b": jnp.zeros((layers, cfg.rank, fan_out), dtype)}
    return adapters


def adapter_axes(adapters) -> dict:
    """Logical sharding axes of every adapter array, for :func:`jaxsafe.parallel.shard_pytree`:
    A [L, in, r] shares its kernel's input axis, B [L, r, out] its output axis, the rank is replicated."""
    return {group: {name: {"a": ("layers", _KERNEL_AXES[name][0], None), "b": ("layers", None, _KERNEL_AXES[name][1])}
                    for name in modules}
            for group, modules in adapters.items()}


def merge_lora(model_or_params, adapters, cfg: LoRAConfig | float):
    """Fold adapters into the kernels: W ← W + (α/r)·A·B, computed in float32, stored in W's dtype.

    ``model_or_params`` is a Decoder (a new Decoder is returned; the argument is not
    changed) or its parameter ``nnx.State`` (a new State is returned). ``cfg`` may
    also be the scale α/r itself. The result holds only plain weights, which
    :func:`~jaxsafe.lm.checkpoint.save_pretrained` writes as a Hugging Face checkpoint.
    """
    scale = cfg.scale if isinstance(cfg, LoRAConfig) else cfg
    if isinstance(model_or_params, nnx.Module):
        graphdef, state = nnx.split(model_or_params)
        return nnx.merge(graphdef, merge_lora(state, adapters, scale))
    merged = jax.tree.map(lambda x: x, model_or_params)  # new Variables; the caller's state is untouched
    kernels = _stacked_kernels(merged)
    for group, modules in adapters.items():
        for name, adapter in modules.items():
            if name not in kernels.get(group, {}):
                raise UserError(f"adapter {group}.{name} has no kernel in the model")
            var = kernels[group][name]
            w = var.get_value()
            delta = jnp.einsum("lir,lro->lio", adapter["a"].astype(jnp.float32), adapter["b"].astype(jnp.float32))
            var.set_value((w.astype(jnp.float32) + scale * delta).astype(w.dtype))
    return merged
