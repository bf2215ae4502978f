"""The decoder: Llama / Mistral / Qwen2 in Flax NNX.

A pre-norm transformer (Touvron et al. 2023, "LLaMA", §2.2):

    h^0 = E[x]
    a^ℓ = h^ℓ⁻¹ + Attn(RMSNorm(h^ℓ⁻¹))          grouped-query attention with RoPE
    h^ℓ = a^ℓ + W_down (silu(W_gate n) ⊙ W_up n),  n = RMSNorm(a^ℓ)      (SwiGLU)
    logits = RMSNorm(h^L) W_head                   (W_head = Eᵀ when embeddings are tied)

with RMSNorm(x) = x / sqrt(mean(x²) + ε) ⊙ g computed in float32 and RoPE rotating
pairs (x_i, x_{i+d/2}) of every query/key head by angle p·θ^(−2i/d) at position p
(Su et al. 2021, eq. 34, in the "rotate half" layout that Hugging Face checkpoints
use). ``hidden_states`` returns h^ℓ — the residual stream that RMU (Li et al. 2024,
eq. 1–2) steers — and runs only layers 0..ℓ.

Parameters are stored as ``embed_tokens.embedding``, ``layers.<i>.self_attn.q_proj.kernel``
(shape [in, out]), ``layers.<i>.mlp.down_proj.kernel``, ``layers.<i>.input_layernorm.scale``,
``norm.scale``, ``lm_head.kernel``; :mod:`jaxsafe.lm.checkpoint` maps them to Hugging
Face names and :func:`logical_axes` to sharding.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsafe.errors import UserError
from jaxsafe.lm.config import DecoderConfig

_INIT = nnx.initializers.normal(0.02)  # Hugging Face's initializer_range for these families


def rope_inverse_frequencies(config: DecoderConfig) -> np.ndarray:
    """θ^(−2i/d) for i < d/2, with Llama 3.1's frequency-dependent scaling when configured.

    "llama3" (Meta's Llama 3.1 release): wavelengths longer than
    original_max/low_freq_factor are divided by ``factor``, shorter than
    original_max/high_freq_factor are kept, and those in between interpolate
    linearly in original_max/wavelength. "linear" divides every frequency by ``factor``.
    """
    d = config.head_dim
    inv = 1.0 / (config.rope_theta ** (np.arange(0, d, 2, dtype=np.float32) / np.float32(d)))
    inv = inv.astype(np.float32)
    scaling = dict(config.rope_scaling or {})
    kind = scaling.get("rope_type", "default")
    if kind == "linear":
        return (inv / np.float32(scaling["factor"])).astype(np.float32)
    if kind == "llama3":
        factor = scaling["factor"]
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        old = scaling["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > old / low, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old / high) & (wavelen <= old / low)
        return np.where(medium, smoothed, scaled).astype(np.float32)
    return inv


def positions_from_mask(attention_mask: jax.Array) -> jax.Array:
    """Position ids that count only real tokens, so a left-padded row sees positions 0, 1, ..."""
    return jnp.maximum(jnp.cumsum(attention_mask.astype(jnp.int32), axis=-1) - 1, 0)


def apply_rope(x: jax.Array, positions: jax.Array, inv_freq: np.ndarray) -> jax.Array:
    """Rotate x [B, T, heads, d] by angle positions[b, t] · inv_freq (rotate-half layout)."""
    angles = positions[..., None].astype(jnp.float32) * jnp.asarray(inv_freq)  # [B, T, d/2]
    angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]
    cos, sin = jnp.cos(angles).astype(x.dtype), jnp.sin(angles).astype(x.dtype)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def attention_mask_4d(kv_valid: jax.Array, q_index: jax.Array, window: int | None) -> jax.Array:
    """Boolean [B, 1, 1, T, S]: key j is visible to query i if it is real, j ≤ i and i − j < window.

    ``q_index`` [T] holds the absolute index of each query among the S key slots.
    """
    k_index = jnp.arange(kv_valid.shape[-1])
    allowed = k_index[None, :] <= q_index[:, None]
    if window is not None:
        allowed &= q_index[:, None] - k_index[None, :] < window
    return (allowed[None] & kv_valid[:, None, :].astype(bool))[:, None, None]


class RMSNorm(nnx.Module):
    """x / sqrt(mean(x²) + ε) in float32, cast back, times a learned gain (Zhang & Sennrich 2019)."""

    def __init__(self, dim: int, eps: float, *, dtype, param_dtype):
        self.scale = nnx.Param(jnp.ones((dim,), param_dtype))
        self.eps = eps
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return self.scale[...].astype(self.dtype) * normed.astype(self.dtype)


def _linear(fan_in, fan_out, bias, rngs, dtype, param_dtype):
    return nnx.Linear(fan_in, fan_out, use_bias=bias, dtype=dtype, param_dtype=param_dtype,
                      kernel_init=_INIT, rngs=rngs)


class Attention(nnx.Module):
    """Grouped-query attention: num_heads query heads share num_kv_heads key/value heads."""

    def __init__(self, config: DecoderConfig, layer: int, *, rngs, dtype, param_dtype):
        c = config
        self.num_heads, self.num_kv_heads, self.head_dim = c.num_heads, c.num_kv_heads, c.head_dim
        self.window = c.sliding_window if c.uses_sliding_window(layer) else None
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.q_proj = _linear(c.hidden_size, c.num_heads * c.head_dim, c.attention_bias, **kw)
        self.k_proj = _linear(c.hidden_size, c.num_kv_heads * c.head_dim, c.attention_bias, **kw)
        self.v_proj = _linear(c.hidden_size, c.num_kv_heads * c.head_dim, c.attention_bias, **kw)
        # Llama's attention_bias also covers o_proj; Qwen2's biases are on q/k/v only.
        o_bias = c.attention_bias and c.architecture == "llama"
        self.o_proj = _linear(c.num_heads * c.head_dim, c.hidden_size, o_bias, **kw)

    def __call__(self, x, positions, inv_freq, masks, cache=None, cache_index=None):
        """x [B, T, D] -> [B, T, D]. With ``cache`` = (k, v) of [B, S, K, d], the new keys
        and values are written at ``cache_index`` and attention runs over all S slots;
        the updated cache is returned alongside."""
        b, t, _ = x.shape
        q = apply_rope(self.q_proj(x).reshape(b, t, self.num_heads, self.head_dim), positions, inv_freq)
        k = apply_rope(self.k_proj(x).reshape(b, t, self.num_kv_heads, self.head_dim), positions, inv_freq)
        v = self.v_proj(x).reshape(b, t, self.num_kv_heads, self.head_dim)
        if cache is not None:
            k = jax.lax.dynamic_update_slice(cache[0], k.astype(cache[0].dtype), (0, cache_index, 0, 0))
            v = jax.lax.dynamic_update_slice(cache[1], v.astype(cache[1].dtype), (0, cache_index, 0, 0))
            cache = (k, v)
        groups = self.num_heads // self.num_kv_heads
        q = q.reshape(b, t, self.num_kv_heads, groups, self.head_dim)
        scores = jnp.einsum("btkgd,bskd->bkgts", q, k.astype(q.dtype), preferred_element_type=jnp.float32)
        scores = scores / np.float32(math.sqrt(self.head_dim))
        mask = masks["window" if self.window is not None else "full"]
        # Padding query rows see no key; a finite fill keeps them finite (they are ignored).
        scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
        out = jnp.einsum("bkgts,bskd->btkgd", probs, v.astype(q.dtype))
        return self.o_proj(out.reshape(b, t, self.num_heads * self.head_dim)), cache


class MLP(nnx.Module):
    """SwiGLU feed-forward (Shazeer 2020, eq. 6): W_down (silu(W_gate x) ⊙ W_up x)."""

    def __init__(self, config: DecoderConfig, *, rngs, dtype, param_dtype):
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.gate_proj = _linear(config.hidden_size, config.intermediate_size, False, **kw)
        self.up_proj = _linear(config.hidden_size, config.intermediate_size, False, **kw)
        self.down_proj = _linear(config.intermediate_size, config.hidden_size, False, **kw)

    def __call__(self, x):
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nnx.Module):
    def __init__(self, config: DecoderConfig, layer: int, *, rngs, dtype, param_dtype):
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, **kw)
        self.self_attn = Attention(config, layer, rngs=rngs, **kw)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, **kw)
        self.mlp = MLP(config, rngs=rngs, **kw)

    def __call__(self, h, positions, inv_freq, masks, cache=None, cache_index=None):
        attn, cache = self.self_attn(self.input_layernorm(h), positions, inv_freq, masks, cache, cache_index)
        h = h + attn
        return h + self.mlp(self.post_attention_layernorm(h)), cache


def _call_layer(layer, h, positions, inv_freq, masks, cache, cache_index):
    return layer(h, positions, inv_freq, masks, cache, cache_index)


_call_layer_remat = nnx.remat(_call_layer)


class Decoder(nnx.Module):
    """A causal LM. ``dtype`` is the compute dtype, ``param_dtype`` the storage dtype
    (bf16 compute over f32 master weights: ``dtype=jnp.bfloat16, param_dtype=jnp.float32``).
    ``remat=True`` recomputes each layer's activations in the backward pass
    (``jax.checkpoint``), trading compute for memory in full fine-tuning."""

    def __init__(self, config: DecoderConfig, *, rngs: nnx.Rngs, dtype=jnp.float32, param_dtype=jnp.float32,
                 remat: bool = False):
        self.config = config
        self.dtype = dtype
        self.remat = remat
        self.embed_tokens = nnx.Embed(config.vocab_size, config.hidden_size, dtype=dtype, param_dtype=param_dtype,
                                      embedding_init=_INIT, rngs=rngs)
        self.layers = nnx.List([DecoderLayer(config, i, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
                                for i in range(config.num_layers)])
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype=dtype, param_dtype=param_dtype)
        if not config.tie_word_embeddings:
            self.lm_head = _linear(config.hidden_size, config.vocab_size, False, rngs, dtype, param_dtype)

    def __call__(self, input_ids, attention_mask=None, positions=None):
        """Logits [B, T, V]. ``attention_mask`` is 1 for real tokens and 0 for padding
        (left padding gives each row the logits it would have alone)."""
        h, _, _ = self.run_layers(input_ids, attention_mask, positions)
        return self.unembed(h)

    def hidden_states(self, input_ids, attention_mask=None, layers: Sequence[int] = (), positions=None):
        """{ℓ: h^ℓ [B, T, D]}: the residual stream after decoder layer ℓ (0-based, before
        the final norm). Only layers 0..max(layers) are run."""
        layers = tuple(sorted(set(int(l) for l in layers)))
        if not layers or layers[0] < 0 or layers[-1] >= self.config.num_layers:
            raise UserError(f"hidden_states needs layers in [0, {self.config.num_layers - 1}], got {layers}")
        _, collected, _ = self.run_layers(input_ids, attention_mask, positions, upto=layers[-1] + 1, collect=layers)
        return collected

    def unembed(self, h):
        """Final RMSNorm and the output projection (the transposed embedding when tied)."""
        h = self.norm(h)
        if self.config.tie_word_embeddings:
            return self.embed_tokens.attend(h)
        return self.lm_head(h)

    def run_layers(self, input_ids, attention_mask=None, positions=None, *, upto=None, collect=(),
                   cache=None, cache_index=None, kv_valid=None):
        """Embed and run layers [0, upto). Returns (h, {ℓ: h^ℓ for ℓ in collect}, new cache).

        For cached decoding pass ``cache`` (one (k, v) pair per layer, [B, S, K, d]),
        the slot ``cache_index`` where these T tokens go, explicit ``positions`` and
        ``kv_valid`` [B, S] marking the slots that hold real tokens.
        """
        input_ids = jnp.asarray(input_ids)
        b, t = input_ids.shape
        if attention_mask is None:
            attention_mask = jnp.ones((b, t), jnp.int32)
        if positions is None:
            positions = positions_from_mask(attention_mask)
        if cache is None:
            kv_valid, q_index = attention_mask, jnp.arange(t)
        else:
            q_index = cache_index + jnp.arange(t)
        masks = {"full": attention_mask_4d(kv_valid, q_index, None)}
        if self.config.sliding_window is not None:
            masks["window"] = attention_mask_4d(kv_valid, q_index, self.config.sliding_window)
        inv_freq = rope_inverse_frequencies(self.config)
        h = self.embed_tokens(input_ids)
        upto = self.config.num_layers if upto is None else upto
        call = _call_layer_remat if self.remat else _call_layer
        collected, new_cache = {}, []
        for i in range(upto):
            h, layer_cache = call(self.layers[i], h, positions, inv_freq, masks,
                                  None if cache is None else cache[i], cache_index)
            new_cache.append(layer_cache)
            if i in collect:
                collected[i] = h
        return h, collected, (new_cache if cache is not None else None)


def logical_axes(path: tuple) -> tuple[str | None, ...]:
    """Logical sharding axes of the parameter at ``path`` (a tuple of names / layer indices)."""
    module = str(path[-2]) if len(path) >= 2 else ""
    leaf = str(path[-1])
    if module == "embed_tokens":
        return ("vocab", "embed")
    if module == "lm_head":
        return ("embed", "vocab")
    out_axis = {"q_proj": "heads", "k_proj": "kv_heads", "v_proj": "kv_heads", "o_proj": "embed",
                "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "embed"}.get(module)
    in_axis = {"o_proj": "heads", "down_proj": "mlp"}.get(module, "embed")
    if out_axis is None:  # norms: small, replicated
        return (None,)
    if leaf == "kernel":
        return (in_axis, out_axis)
    if leaf == "bias":
        return (out_axis,)
    if leaf == "lora_a":
        return (in_axis, None)
    if leaf == "lora_b":
        return (None, out_axis)
    raise ValueError(f"no sharding rule for parameter {'.'.join(map(str, path))}")
