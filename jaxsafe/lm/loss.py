"""The language-modelling objective: next-token cross-entropy over chosen tokens.

The training step itself lives in :mod:`jaxsafe.train` (one step for every
trainer); ``lm_loss_fn`` is the plain fine-tuning objective it is given, e.g.
``make_step(model_loss(graphdef, None, lm_loss_fn), optimizer)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx


def next_token_loss(logits: jax.Array, input_ids: jax.Array, loss_mask: jax.Array) -> jax.Array:
    """Mean cross-entropy −log p(x_{t+1} | x_≤t) over the tokens t+1 where ``loss_mask`` is 1.

    ``loss_mask`` is aligned with ``input_ids`` (1 = this token is a prediction target;
    its first column is never a target). Computed in float32; 0 if nothing is masked in.
    """
    # Targets and mask shifted left by one (the last position predicts nothing and is
    # masked out) rather than the logits sliced: slicing copied the [B, T, V] logits.
    targets = jnp.pad(input_ids[:, 1:], ((0, 0), (0, 1)))
    mask = jnp.pad(loss_mask[:, 1:].astype(jnp.float32), ((0, 0), (0, 1)))
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
    return jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def lm_loss_fn(model: nnx.Module, batch: dict) -> tuple[jax.Array, dict]:
    """Fine-tuning objective ``(model, batch) -> (loss, metrics)``: batch has
    ``input_ids``, ``attention_mask`` and ``loss_mask`` ([B, T] each), and ``segment_ids``
    for packed rows (:func:`jaxsafe.data.batching.packed_batch`)."""
    logits = model(batch["input_ids"], batch["attention_mask"], segment_ids=batch.get("segment_ids"))
    return next_token_loss(logits, batch["input_ids"], batch["loss_mask"]), {}
