"""Directional ablation, an activation-space attack on unlearning (Łucki et al. 2024,
"An Adversarial Perspective on Machine Unlearning for AI Safety", §4; the refusal-direction
method of Arditi et al. 2024).

At a chosen layer ℓ take the difference of mean residual-stream states over real
tokens of hazardous (forget-domain) and benign text,

    r = mean h^ℓ(x_forget) − mean h^ℓ(x_retain),     r̂ = r / ‖r‖,

and remove its component from the residual stream after the embedding and after
every layer, h ← h − (h·r̂) r̂ (the decoder's ``ablate=r̂`` argument). If unlearning
only hid the knowledge behind a direction the model can recognise, the knowledge
comes back.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def mean_hidden(hidden: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of ``hidden`` [B, T, D] over real tokens (``mask`` [B, T] is 1 on them): [D] in float32."""
    m = mask.astype(jnp.float32)[..., None]
    return jnp.sum(hidden.astype(jnp.float32) * m, axis=(0, 1)) / jnp.maximum(jnp.sum(m), 1.0)


def difference_direction(forget_hidden: jax.Array, forget_mask: jax.Array, retain_hidden: jax.Array,
                         retain_mask: jax.Array) -> jax.Array:
    """r̂ = normalize(mean h(x_forget) − mean h(x_retain)), means over real tokens: a unit vector [D]."""
    r = mean_hidden(forget_hidden, forget_mask) - mean_hidden(retain_hidden, retain_mask)
    return r / jnp.maximum(jnp.linalg.norm(r), 1e-12)


def project_out(h: jax.Array, direction: jax.Array) -> jax.Array:
    """h − (h·r̂) r̂ for a unit vector r̂ [D], computed in float32 and cast back to h's dtype."""
    r = direction.astype(jnp.float32)
    h32 = h.astype(jnp.float32)
    return (h32 - jnp.einsum("...d,d->...", h32, r)[..., None] * r).astype(h.dtype)


def accumulated_mean_hidden(hidden_fn, batches, layer: int) -> jax.Array:
    """Token-weighted mean of h^layer over several (ids, mask) batches, with ``hidden_fn(ids, mask) -> {layer: h}``."""
    total, count = None, 0.0
    for ids, mask in batches:
        h = hidden_fn(ids, mask)[layer]
        n = float(jnp.sum(mask))
        s = mean_hidden(h, mask) * n
        total = s if total is None else total + s
        count += n
    return total / max(count, 1.0)


def model_direction(model, layer: int, forget_batches, retain_batches) -> jax.Array:
    """r̂ at ``layer`` of ``model`` (a :class:`~jaxsafe.lm.model.Decoder`) from lists of (ids, mask) batches."""
    hidden_fn = jax.jit(lambda ids, mask: model.hidden_states(ids, mask, layers=(layer,)))
    r = accumulated_mean_hidden(hidden_fn, forget_batches, layer) - accumulated_mean_hidden(hidden_fn, retain_batches, layer)
    return r / jnp.maximum(jnp.linalg.norm(r), 1e-12)
