"""LoRA adapters on chosen projections (Hu et al. 2021, "LoRA", eq. 3).

A frozen linear map W is replaced by W + (α/r)·A·B with A ∈ R^{in×r} Gaussian and
B ∈ R^{r×out} zero, so an adapted model starts out computing exactly what the
original did. Only A and B are ``nnx.LoRAParam`` — train them with
``trainable_filter=nnx.LoRAParam``. :func:`merge_lora` folds the adapters back into
plain kernels, which is what :func:`~jaxsafe.lm.checkpoint.save_pretrained` writes.
The fine-tuning attack suite uses this to attack with low-rank updates.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxsafe.errors import UserError
from jaxsafe.lm.loss import PathSelector


class LoRALinear(nnx.Module):
    """x·W + b + (α/r)·(x·A)·B, keeping the wrapped layer's ``kernel`` and ``bias`` variables
    (so parameter paths, sharding and checkpoint names are unchanged)."""

    def __init__(self, base: nnx.Linear, rank: int, alpha: float, *, rngs: nnx.Rngs):
        self.kernel = base.kernel
        self.bias = base.bias
        self.dtype = base.dtype
        param_dtype = base.kernel.dtype
        fan_in, fan_out = base.kernel.shape
        self.lora_a = nnx.LoRAParam(jax.random.normal(rngs.params(), (fan_in, rank), param_dtype) / math.sqrt(fan_in))
        self.lora_b = nnx.LoRAParam(jnp.zeros((rank, fan_out), param_dtype))
        self.scale = alpha / rank

    def merged_kernel(self) -> jax.Array:
        w = self.kernel[...]
        return (w + self.scale * (self.lora_a[...] @ self.lora_b[...]).astype(jnp.float32)).astype(w.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        dtype = self.dtype or x.dtype
        x = x.astype(dtype)
        y = x @ self.kernel[...].astype(dtype)
        if self.bias is not None:
            y = y + self.bias[...].astype(dtype)
        return y + self.scale * ((x @ self.lora_a[...].astype(dtype)) @ self.lora_b[...].astype(dtype))


def _targets(model: nnx.Module, cls, patterns: Sequence[str]):
    """(parent, attribute name, module) for each ``cls`` module whose path matches a pattern.

    A pattern without dots ("q_proj") names the module itself wherever it is."""
    full = PathSelector(tuple(p for p in patterns if "." in p))
    names = PathSelector(tuple(p for p in patterns if "." not in p))
    modules = dict(nnx.iter_modules(model))
    found = []
    for path, module in modules.items():
        if isinstance(module, cls) and path and (full(path) or names(path[-1:])):
            found.append((modules[path[:-1]], path[-1], module))
    return found


def add_lora(model: nnx.Module, targets: str | Sequence[str], rank: int = 8, alpha: float = 16.0, *,
             rngs: nnx.Rngs) -> nnx.Module:
    """Wrap the linear layers named by ``targets`` (e.g. ``"q_proj,v_proj"`` or
    ``"layers.10-15.mlp.*_proj"``) in :class:`LoRALinear`, in place; returns the model."""
    patterns = [p.strip() for p in (targets.split(",") if isinstance(targets, str) else targets) if p.strip()]
    if rank < 1:
        raise UserError(f"LoRA rank must be at least 1, got {rank}")
    found = _targets(model, nnx.Linear, patterns)
    if not found:
        raise UserError(f"LoRA targets {targets!r} match no linear layer")
    for parent, name, linear in found:
        _set(parent, name, LoRALinear(linear, rank, alpha, rngs=rngs))
    return model


def merge_lora(model: nnx.Module) -> nnx.Module:
    """Fold every adapter into its kernel (W ← W + (α/r)AB) and restore plain ``nnx.Linear`` layers, in place."""
    for parent, name, lora in _targets(model, LoRALinear, ["*"]):
        kernel_in, kernel_out = lora.kernel.shape
        linear = nnx.eval_shape(lambda: nnx.Linear(kernel_in, kernel_out, use_bias=lora.bias is not None,
                                                   dtype=lora.dtype, param_dtype=lora.kernel.dtype,
                                                   rngs=nnx.Rngs(0)))
        linear.kernel = nnx.Param(lora.merged_kernel())
        linear.bias = lora.bias
        _set(parent, name, linear)
    return model


def _set(parent, name, module):
    if isinstance(name, int):  # a list entry
        parent[name] = module
    else:
        setattr(parent, name, module)
