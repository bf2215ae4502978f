"""RMU's representation losses as pure functions (Li et al. 2024, "The WMDP Benchmark", §5, eq. 1–3).

With h^ℓ the residual stream after decoder layer ℓ, u a fixed random unit vector per
forget topic and c the steering coefficient:

    L_forget = mean over forget tokens  ‖h_upd^ℓ(x_f) − c·u‖²            (eq. 1)
    L_retain = mean over retain tokens  ‖h_upd^ℓ(x_r) − h_frozen^ℓ(x_r)‖²  (eq. 2)
    L        = L_forget + α·L_retain                                       (eq. 3)

Two conventions for the means (``authors_convention``):

* ``False`` (ours, the default): a squared norm per real token, averaged over real
  tokens only — padding never contributes.
* ``True`` (the authors' code, for exact reproduction): PyTorch's ``mse_loss`` over
  the whole [batch, seq, d] tensor, padding included, which also divides by the
  hidden size d. The 1/d factor multiplies both terms, so α means the same in both
  conventions but the loss scale differs by d; the padding changes the balance of
  the two terms by the share of padding in forget versus retain batches.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def control_vectors(key: jax.Array, num_topics: int, dim: int) -> jax.Array:
    """One random unit vector per forget topic: entries uniform in [0, 1), then normalized."""
    u = jax.random.uniform(key, (num_topics, dim), dtype=jnp.float32)
    return u / jnp.linalg.norm(u, axis=-1, keepdims=True)


def _masked_mean_sq(diff: jax.Array, mask: jax.Array | None, authors_convention: bool) -> jax.Array:
    sq = jnp.square(diff.astype(jnp.float32))
    if authors_convention or mask is None:
        per_token = jnp.mean(sq, axis=-1) if authors_convention else jnp.sum(sq, axis=-1)
        return jnp.mean(per_token)
    per_token = jnp.sum(sq, axis=-1)
    m = mask.astype(jnp.float32)
    return jnp.sum(per_token * m) / jnp.maximum(jnp.sum(m), 1.0)


def forget_loss(hidden: jax.Array, target: jax.Array, mask: jax.Array | None = None, *, authors_convention: bool = False) -> jax.Array:
    """Eq. 1: push forget-token activations [B, T, d] towards ``target`` = c·u ([d])."""
    return _masked_mean_sq(hidden - target, mask, authors_convention)


def retain_loss(hidden: jax.Array, frozen_hidden: jax.Array, mask: jax.Array | None = None, *, authors_convention: bool = False) -> jax.Array:
    """Eq. 2: keep retain-token activations [B, T, d] where the frozen model has them."""
    return _masked_mean_sq(hidden - jax.lax.stop_gradient(frozen_hidden), mask, authors_convention)


def rmu_loss(
    forget_hidden: jax.Array,
    forget_mask: jax.Array | None,
    retain_hidden: jax.Array,
    retain_mask: jax.Array | None,
    frozen_retain_hidden: jax.Array,
    control: jax.Array,
    steering_coef: float,
    alpha: float,
    *,
    authors_convention: bool = False,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Eq. 3: the total loss and its two parts (``control`` is the topic's unit vector u)."""
    lf = forget_loss(forget_hidden, steering_coef * control, forget_mask, authors_convention=authors_convention)
    lr = retain_loss(retain_hidden, frozen_retain_hidden, retain_mask, authors_convention=authors_convention)
    return lf + alpha * lr, {"forget_loss": lf, "retain_loss": lr}
