"""Greedy and temperature sampling with a key/value cache, in one jitted call.

The prompt (left-padded, with its attention mask) is run once, filling a cache of
T + max_new_tokens slots per layer (one (k, v) pair stacked over layers,
scanned with them); then each new token costs one single-token
forward pass (``jax.lax.scan``), attending to the cached keys and values. Shapes
depend only on (B, T, max_new_tokens), so repeated calls with the same shapes do
not recompile — pad prompts to a few bucket lengths.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from jaxsafe.errors import UserError
from jaxsafe.lm.model import Decoder, positions_from_mask


def generate(model: Decoder, input_ids, attention_mask=None, *, max_new_tokens: int = 32,
             temperature: float = 0.0, key: jax.Array | None = None, eos_token_id: int | None = None,
             pad_token_id: int | None = None) -> jax.Array:
    """New tokens [B, max_new_tokens] continuing each (left-padded) prompt.

    ``temperature`` 0 is greedy (argmax); above 0 samples from softmax(logits / temperature)
    with ``key``. After a row emits ``eos_token_id`` (default: the config's first eos id)
    the rest of the row is ``pad_token_id`` (default: config pad id, else eos).
    """
    input_ids = jnp.asarray(input_ids, jnp.int32)
    if input_ids.ndim != 2:
        raise UserError(f"input_ids must be [batch, length], got shape {input_ids.shape}")
    if attention_mask is None:
        attention_mask = jnp.ones_like(input_ids)
    if max_new_tokens < 1:
        raise UserError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if temperature < 0:
        raise UserError(f"temperature must be >= 0, got {temperature}")
    if temperature > 0 and key is None:
        raise UserError("sampling with temperature > 0 needs a jax.random key")
    config = model.config
    if eos_token_id is None:
        eos = config.eos_token_id
        eos_token_id = (eos[0] if isinstance(eos, tuple) else eos)
    eos_token_id = -1 if eos_token_id is None else int(eos_token_id)
    if pad_token_id is None:
        pad_token_id = config.pad_token_id if config.pad_token_id is not None else max(eos_token_id, 0)
    graphdef, state = nnx.split(model)
    key = jax.random.key(0) if key is None else key
    return _generate(graphdef, state, input_ids, jnp.asarray(attention_mask, jnp.int32), key,
                     jnp.float32(temperature), max_new_tokens, eos_token_id, int(pad_token_id))


def _pick(logits, key, temperature):
    sampled = jax.random.categorical(key, logits.astype(jnp.float32) / jnp.maximum(temperature, 1e-6))
    return jnp.where(temperature > 0, sampled, jnp.argmax(logits, axis=-1)).astype(jnp.int32)


@partial(jax.jit, static_argnums=(0, 6, 7, 8))
def _generate(graphdef, state, input_ids, attention_mask, key, temperature, max_new_tokens, eos, pad):
    model = nnx.merge(graphdef, state)
    # The cache rides in the layer scan's carry; unrolled, XLA copies it per layer (2x slower here).
    model.scan_unroll = 1
    c = model.config
    b, t = input_ids.shape
    slots = t + max_new_tokens
    cache = (jnp.zeros((c.num_layers, b, slots, c.num_kv_heads, c.head_dim), model.dtype),) * 2  # [L, ...] like the layers
    # Slots after the prompt are filled in order; causality keeps unfilled ones out of reach.
    kv_valid = jnp.concatenate([attention_mask, jnp.ones((b, max_new_tokens), jnp.int32)], axis=1)
    positions = positions_from_mask(attention_mask)
    h, _, cache = model.run_layers(input_ids, attention_mask, positions, cache=cache, cache_index=0, kv_valid=kv_valid)
    key, sub = jax.random.split(key)
    token = _pick(model.unembed(h[:, -1]), sub, temperature)
    done = token == eos

    def step(carry, i):
        token, done, cache, key = carry
        pos = positions[:, -1:] + 1 + i
        h, _, cache = model.run_layers(token[:, None], None, pos, cache=cache, cache_index=t + i, kv_valid=kv_valid)
        key, sub = jax.random.split(key)
        nxt = jnp.where(done, pad, _pick(model.unembed(h[:, -1]), sub, temperature))
        return (nxt, done | (nxt == eos), cache, key), nxt

    _, rest = jax.lax.scan(step, (token, done, cache, key), jnp.arange(max_new_tokens - 1))
    return jnp.concatenate([token[:, None], rest.T], axis=1)

