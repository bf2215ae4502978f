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

The layers are stacked: ``model.layers`` is one :class:`DecoderLayer` whose
parameters have a leading axis of length L, and the forward pass is a
``jax.lax.scan`` over that axis, so a program compiles one layer body whatever L
is. Parameters are stored as ``embed_tokens.embedding`` [V, D],
``layers.self_attn.q_proj.kernel`` [L, in, out], ``layers.mlp.down_proj.kernel``,
``layers.input_layernorm.scale`` [L, D], ``norm.scale``, ``lm_head.kernel``;
:mod:`jaxsafe.lm.checkpoint` maps them to Hugging Face's per-layer names. Every
parameter carries its logical sharding axes as NNX metadata (``out_sharding``,
e.g. ``("layers", "embed", "mlp")``), which :func:`jaxsafe.parallel.param_shardings`
maps to a mesh.
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


def positions_in_segments(segment_ids: jax.Array) -> jax.Array:
    """Position ids that restart at 0 where the segment id changes along a packed row."""
    t = jnp.arange(segment_ids.shape[-1])
    starts = jnp.concatenate([jnp.ones_like(segment_ids[..., :1], bool), segment_ids[..., 1:] != segment_ids[..., :-1]],
                             axis=-1)
    return t - jax.lax.cummax(jnp.where(starts, t, 0), axis=segment_ids.ndim - 1)


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


def _axes(*names: str | None) -> dict:
    """NNX metadata naming a parameter's logical axes. Sharding is applied by
    :mod:`jaxsafe.parallel` under its rules, never eagerly at creation (no mesh is needed)."""
    return {"out_sharding": names, "eager_sharding": False}


def ablate_direction(h: jax.Array, direction: jax.Array) -> jax.Array:
    """h − (h·r) r: remove the component along the unit vector r [D] (directional ablation)."""
    r = direction.astype(jnp.float32)
    along = jnp.einsum("...d,d->...", h.astype(jnp.float32), r)
    return h - (along[..., None] * r).astype(h.dtype)


class RMSNorm(nnx.Module):
    """x / sqrt(mean(x²) + ε) in float32, cast back, times a learned gain (Zhang & Sennrich 2019)."""

    def __init__(self, dim: int, eps: float, *, dtype, param_dtype):
        self.scale = nnx.Param(jnp.ones((dim,), param_dtype), **_axes(None))  # small: replicated
        self.eps = eps
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return self.scale[...].astype(self.dtype) * normed.astype(self.dtype)


def _linear(fan_in, fan_out, bias, axes, rngs, dtype, param_dtype):
    """nnx.Linear whose kernel has logical axes ``axes`` = (in, out) and whose bias has (out,)."""
    return nnx.Linear(fan_in, fan_out, use_bias=bias, dtype=dtype, param_dtype=param_dtype,
                      kernel_init=_INIT, kernel_metadata=_axes(*axes), bias_metadata=_axes(axes[1]), rngs=rngs)


def _project(module, name: str, x: jax.Array, lora) -> jax.Array:
    """The projection ``name`` (plus its LoRA branch) of ``x`` [..., in], on rows [N, in].

    On [B, T, in] operands XLA:CPU transposes the activations for every weight-gradient
    dot in the backward pass; on [B·T, in] it needs none (the train step's CPU time
    0.78× that of the 3-D form, docs/lm.md "Train-step profile")."""
    rows = x.reshape(-1, x.shape[-1])
    y = getattr(module, name)(rows)
    if lora is not None:
        y = lora.adapt(name, rows, y)
    return y.reshape(*x.shape[:-1], y.shape[-1])


ATTENTION_IMPLEMENTATIONS = ("einsum", "xla", "cudnn")


class Attention(nnx.Module):
    """Grouped-query attention: num_heads query heads share num_kv_heads key/value heads.

    ``implementation`` computes softmax(q kᵀ/√d) v either with jaxsafe's own einsums
    ("einsum") or through ``jax.nn.dot_product_attention`` with that implementation
    ("xla"; "cudnn": cuDNN's fused attention, NVIDIA GPUs only). All take the same
    boolean mask and give the same logits on CPU (docs/scale.md)."""

    def __init__(self, config: DecoderConfig, *, rngs, dtype, param_dtype, implementation: str = "einsum"):
        if implementation not in ATTENTION_IMPLEMENTATIONS:
            raise UserError(f"attention must be one of {', '.join(ATTENTION_IMPLEMENTATIONS)}, got {implementation!r}")
        self.implementation = implementation
        c = config
        self.num_heads, self.num_kv_heads, self.head_dim = c.num_heads, c.num_kv_heads, c.head_dim
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.q_proj = _linear(c.hidden_size, c.num_heads * c.head_dim, c.attention_bias, ("embed", "heads"), **kw)
        self.k_proj = _linear(c.hidden_size, c.num_kv_heads * c.head_dim, c.attention_bias, ("embed", "kv_heads"), **kw)
        self.v_proj = _linear(c.hidden_size, c.num_kv_heads * c.head_dim, c.attention_bias, ("embed", "kv_heads"), **kw)
        # Llama's attention_bias also covers o_proj; Qwen2's biases are on q/k/v only.
        o_bias = c.attention_bias and c.architecture == "llama"
        self.o_proj = _linear(c.num_heads * c.head_dim, c.hidden_size, o_bias, ("heads", "embed"), **kw)

    def __call__(self, x, positions, inv_freq, mask, cache=None, cache_index=None, lora=None):
        """x [B, T, D] -> [B, T, D]; ``mask`` [B, 1, 1, T, S] says which keys each query sees.

        With ``cache`` = (k, v) of [B, S, K, d], the new keys and values are written at
        ``cache_index`` and attention runs over all S slots; the updated cache is
        returned alongside."""
        b, t, _ = x.shape
        q = _project(self, "q_proj", x, lora).reshape(b, t, self.num_heads, self.head_dim)
        k = _project(self, "k_proj", x, lora).reshape(b, t, self.num_kv_heads, self.head_dim)
        v = _project(self, "v_proj", x, lora).reshape(b, t, self.num_kv_heads, self.head_dim)
        q, k = apply_rope(q, positions, inv_freq), apply_rope(k, positions, inv_freq)
        if cache is not None:
            k = jax.lax.dynamic_update_slice(cache[0], k.astype(cache[0].dtype), (0, cache_index, 0, 0))
            v = jax.lax.dynamic_update_slice(cache[1], v.astype(cache[1].dtype), (0, cache_index, 0, 0))
            cache = (k, v)
        if self.implementation != "einsum":
            out = jax.nn.dot_product_attention(q, k.astype(q.dtype), v.astype(q.dtype), mask=mask[:, 0],
                                               scale=1.0 / math.sqrt(self.head_dim), implementation=self.implementation)
            return _project(self, "o_proj", out.reshape(b, t, self.num_heads * self.head_dim), lora), cache
        groups = self.num_heads // self.num_kv_heads
        q = q.reshape(b, t, self.num_kv_heads, groups, self.head_dim)
        scores = jnp.einsum("btkgd,bskd->bkgts", q, k.astype(q.dtype), preferred_element_type=jnp.float32)
        scores = scores / np.float32(math.sqrt(self.head_dim))
        # Padding query rows see no key; a finite fill keeps them finite (they are ignored).
        scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
        out = jnp.einsum("bkgts,bskd->btkgd", probs, v.astype(q.dtype))
        return _project(self, "o_proj", out.reshape(b, t, self.num_heads * self.head_dim), lora), cache


class MLP(nnx.Module):
    """SwiGLU feed-forward (Shazeer 2020, eq. 6): W_down (silu(W_gate x) ⊙ W_up x)."""

    def __init__(self, config: DecoderConfig, *, rngs, dtype, param_dtype):
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        d, f = config.hidden_size, config.intermediate_size
        self.gate_proj = _linear(d, f, False, ("embed", "mlp"), **kw)
        self.up_proj = _linear(d, f, False, ("embed", "mlp"), **kw)
        self.down_proj = _linear(f, d, False, ("mlp", "embed"), **kw)

    def __call__(self, x, lora=None):
        hidden = jax.nn.silu(_project(self, "gate_proj", x, lora)) * _project(self, "up_proj", x, lora)
        return _project(self, "down_proj", hidden, lora)


class DecoderLayer(nnx.Module):
    """One pre-norm block. In a :class:`Decoder` it holds the weights of all L layers stacked."""

    def __init__(self, config: DecoderConfig, *, rngs, dtype, param_dtype, attention: str = "einsum"):
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, **kw)
        self.self_attn = Attention(config, rngs=rngs, implementation=attention, **kw)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, **kw)
        self.mlp = MLP(config, rngs=rngs, **kw)

    def __call__(self, h, positions, inv_freq, mask, cache=None, cache_index=None, lora=None):
        attn, cache = self.self_attn(self.input_layernorm(h), positions, inv_freq, mask, cache, cache_index, lora)
        h = h + attn
        return h + self.mlp(self.post_attention_layernorm(h), lora), cache


def stack_modules(modules: Sequence[nnx.Module], axis_name: str = "layers") -> nnx.Module:
    """One module of the same structure whose every variable is the stack of the modules'
    (leading axis ``axis_name`` added to each variable's logical sharding axes)."""
    graphdef, *_ = nnx.split(modules[0])
    states = []
    for m in modules:
        g, s = nnx.split(m)
        if g != graphdef:
            raise ValueError("stack_modules needs modules of identical structure")
        states.append(s)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    for _, var in nnx.to_flat_state(stacked):
        axes = var.get_metadata().get("out_sharding")
        if axes is not None:
            var.set_metadata(out_sharding=(axis_name, *axes))
    return nnx.merge(graphdef, stacked)


# What the backward pass of a layer keeps (jax.checkpoint policies); "none" = no remat.
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "nothing_saveable": jax.checkpoint_policies.nothing_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "everything_saveable": jax.checkpoint_policies.everything_saveable,
}


def remat_policy_name(remat: bool | str) -> str:
    """The :data:`REMAT_POLICIES` name of ``remat`` (True = "full", False = "none")."""
    if remat is True or remat is False:
        return "full" if remat else "none"
    if remat not in REMAT_POLICIES:
        raise UserError(f"remat must be one of {', '.join(REMAT_POLICIES)} (or true/false), got {remat!r}")
    return remat


class Decoder(nnx.Module):
    """A causal LM over stacked layers. ``dtype`` is the compute dtype, ``param_dtype`` the
    storage dtype (bf16 compute over f32 master weights: ``dtype=jnp.bfloat16,
    param_dtype=jnp.float32``). ``remat`` names what the backward pass keeps of each
    layer (``jax.checkpoint`` on the scan body with a policy from :data:`REMAT_POLICIES`):
    ``"none"`` (or False) everything, ``"full"`` (or True, = ``"nothing_saveable"``) only the
    layer's input, ``"dots_saveable"`` the matmul outputs, trading compute for memory in
    full fine-tuning (docs/scale.md measures each). ``attention`` is the attention
    implementation (:data:`ATTENTION_IMPLEMENTATIONS`, see :class:`Attention`). ``scan_unroll`` is ``lax.scan``'s ``unroll`` (layers per
    compiled loop iteration; L unrolls the whole stack): keep 1 for deep models (at 32
    layers full unrolling compiles a train step 2-4x slower), L can run shallow, narrow
    models faster (benchmarks/lm_compile.py, docs/lm.md)."""

    def __init__(self, config: DecoderConfig, *, rngs: nnx.Rngs, dtype=jnp.float32, param_dtype=jnp.float32,
                 remat: bool | str = False, scan_unroll: int = 1, attention: str = "einsum"):
        self.config = config
        self.dtype = dtype
        self.remat = remat_policy_name(remat)
        self.scan_unroll = scan_unroll
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        self.embed_tokens = nnx.Embed(config.vocab_size, config.hidden_size, embedding_init=_INIT,
                                      embedding_metadata=_axes("vocab", "embed"), rngs=rngs, **kw)
        # Built one by one, then stacked: a seed gives the weights it gave before layers were stacked.
        self.layers = stack_modules([DecoderLayer(config, rngs=rngs, attention=attention, **kw)
                                     for _ in range(config.num_layers)])
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, **kw)
        if not config.tie_word_embeddings:
            self.lm_head = _linear(config.hidden_size, config.vocab_size, False, ("embed", "vocab"), rngs, **kw)

    def __call__(self, input_ids, attention_mask=None, positions=None, *, segment_ids=None, lora=None, ablate=None):
        """Logits [B, T, V]. ``attention_mask`` is 1 for real tokens and 0 for padding
        (left padding gives each row the logits it would have alone). ``segment_ids``
        [B, T] marks the documents of packed rows (1, 2, ... per row, 0 = padding): a
        token attends only within its document and positions restart at each, so every
        document gets the logits it would have alone. ``lora`` is a
        :class:`~jaxsafe.lm.lora.LoRA`; ``ablate`` a unit vector [D] projected out of the
        residual stream after the embedding and after every layer."""
        h, _, _ = self.run_layers(input_ids, attention_mask, positions, segment_ids=segment_ids, lora=lora,
                                  ablate=ablate)
        return self.unembed(h)

    def hidden_states(self, input_ids, attention_mask=None, layers: Sequence[int] = (), positions=None, *,
                      lora=None, ablate=None):
        """{ℓ: h^ℓ [B, T, D]}: the residual stream after decoder layer ℓ (0-based, before
        the final norm). Only layers 0..max(layers) are run (the scan covers that slice)."""
        layers = tuple(sorted(set(int(l) for l in layers)))
        if not layers or layers[0] < 0 or layers[-1] >= self.config.num_layers:
            raise UserError(f"hidden_states needs layers in [0, {self.config.num_layers - 1}], got {layers}")
        collect = len(layers) > 1  # one layer is the scan's final carry; several are stacked outputs
        h, stacked, _ = self.run_layers(input_ids, attention_mask, positions, upto=layers[-1] + 1, collect=collect,
                                        lora=lora, ablate=ablate)
        return {l: stacked[l + 1] for l in layers} if collect else {layers[0]: h}

    def all_hidden_states(self, input_ids, attention_mask=None, positions=None, *, lora=None, ablate=None):
        """[L + 1, B, T, D]: the embeddings h^0, then the output of every layer (before the final norm)."""
        _, stacked, _ = self.run_layers(input_ids, attention_mask, positions, collect=True, lora=lora, ablate=ablate)
        return stacked

    def unembed(self, h):
        """Final RMSNorm and the output projection (the transposed embedding when tied)."""
        rows = self.norm(h.reshape(-1, h.shape[-1]))  # [B·T, D]: see _project
        logits = self.embed_tokens.attend(rows) if self.config.tie_word_embeddings else self.lm_head(rows)
        return logits.reshape(*h.shape[:-1], logits.shape[-1])

    def run_layers(self, input_ids, attention_mask=None, positions=None, *, upto=None, collect=False,
                   cache=None, cache_index=None, kv_valid=None, segment_ids=None, lora=None, ablate=None):
        """Embed and scan layers [0, upto). Returns (h, states, new cache), where ``states``
        is [upto + 1, B, T, D] (the embeddings, then each layer's output) when ``collect``.

        For cached decoding pass ``cache`` = (k, v), each [L, B, S, K, d] (stacked over
        layers), the slot ``cache_index`` where these T tokens go, explicit ``positions``
        and ``kv_valid`` [B, S] marking the slots that hold real tokens. ``segment_ids``
        (packed rows, see ``__call__``) also sets the default mask and positions.
        """
        c = self.config
        input_ids = jnp.asarray(input_ids)
        b, t = input_ids.shape
        if segment_ids is not None:
            if cache is not None:
                raise UserError("segment_ids (packed rows) cannot be combined with a KV cache")
            segment_ids = jnp.asarray(segment_ids)
            if segment_ids.shape != (b, t):
                raise UserError(f"segment_ids has shape {segment_ids.shape}, the tokens {(b, t)}")
            if attention_mask is None:
                attention_mask = (segment_ids > 0).astype(jnp.int32)
            if positions is None:
                positions = positions_in_segments(segment_ids)
        if attention_mask is None:
            attention_mask = jnp.ones((b, t), jnp.int32)
        if positions is None:
            positions = positions_from_mask(attention_mask)
        if cache is None:
            kv_valid, q_index = attention_mask, jnp.arange(t)
        else:
            q_index = cache_index + jnp.arange(t)
        upto = c.num_layers if upto is None else upto
        windowed = np.array([c.uses_sliding_window(i) for i in range(upto)])
        full_mask = attention_mask_4d(kv_valid, q_index, None) if not windowed.all() else None
        window_mask = attention_mask_4d(kv_valid, q_index, c.sliding_window) if windowed.any() else None
        if segment_ids is not None:  # packed rows: no attention across documents
            same = (segment_ids[:, :, None] == segment_ids[:, None, :])[:, None, None]
            full_mask = None if full_mask is None else full_mask & same
            window_mask = None if window_mask is None else window_mask & same
        inv_freq = rope_inverse_frequencies(c)

        graphdef, params = nnx.split(self.layers)
        keep = lambda tree: jax.tree.map(lambda x: x[:upto], tree) if upto < c.num_layers else tree
        xs = {"params": keep(params), "layer": None if cache is None else jnp.arange(upto), "windowed": None,
              "lora": None}
        if full_mask is not None and window_mask is not None:  # Qwen2's partial window: a per-layer flag
            xs["windowed"] = jnp.asarray(windowed)
        if lora is not None:
            layer_keys = None if lora.key is None else jax.random.split(lora.key, c.num_layers)
            xs["lora"] = {"adapters": keep(lora.adapters), "key": None if layer_keys is None else keep(layer_keys)}

        def body(carry, x):
            h, cache = carry
            layer = nnx.merge(graphdef, x["params"])
            if x["windowed"] is not None:
                mask = jnp.where(x["windowed"], window_mask, full_mask)
            else:
                mask = full_mask if window_mask is None else window_mask
            layer_lora = None
            if x["lora"] is not None:
                layer_lora = type(lora)(x["lora"]["adapters"], lora.scale, lora.dropout, x["lora"]["key"])
            layer_cache = None
            if cache is not None:  # this layer's slice of the stacked cache
                layer_cache = tuple(jax.lax.dynamic_index_in_dim(a, x["layer"], keepdims=False) for a in cache)
            h, layer_cache = layer(h, positions, inv_freq, mask, layer_cache, cache_index, layer_lora)
            if cache is not None:
                # The cache rides in the carry and only the T new slots are written back, in
                # place (as scan outputs it would be rebuilt whole for every decoded token).
                cache = tuple(jax.lax.dynamic_update_slice(
                    a, jax.lax.dynamic_slice_in_dim(new, cache_index, t, axis=1)[None], (x["layer"], 0, cache_index, 0, 0))
                    for a, new in zip(cache, layer_cache))
            if ablate is not None:
                h = ablate_direction(h, ablate)
            return (h, cache), (h if collect else None)

        if self.remat != "none":
            body = jax.checkpoint(body, prevent_cse=False, policy=REMAT_POLICIES[self.remat])
        h = self.embed_tokens(input_ids)
        if ablate is not None:
            h = ablate_direction(h, ablate)
        h0 = h
        (h, new_cache), states = jax.lax.scan(body, (h, cache), xs, length=upto, unroll=self.scan_unroll)
        if collect:
            states = jnp.concatenate([h0[None], states], axis=0)
        return h, states, new_cache
