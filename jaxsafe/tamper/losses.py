"""TAR's losses as pure functions (Tamirisa et al. 2024, "Tamper-Resistant Safeguards for Open-Weight LLMs").

Notation: ``logits`` [B, T, V] are next-token logits (position t predicts token
t + 1); ``mask`` [B, T] is 1 on real tokens; hidden states are [..., B, T, D].

- :func:`entropy_loss` — the knowledge-restriction tamper-resistance loss
  L_TR = −H(softmax(logits)), averaged over next-token distributions (§4.2; the
  defender *maximizes* the entropy, whose maximum is log |V|).
- :func:`completion_loss` — CE of completions given their prompts (the refusal variant's
  initial safeguard trains on the refusals with it).
- :func:`dpo_loss` — the refusal tamper-resistance loss: DPO's sigmoid form
  −log σ(β[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))])
  with β = 0.1 (Rafailov et al. 2023, eq. 7).
- :func:`random_mapping_loss` — the initial "random mapping" safeguard:
  CE(x_r) + mean over layers and forget tokens of 1 − |cos(h_ℓ(x_f), R[x_f])|
  with R a fixed Gaussian table [|V|, D] indexed by token id.
- :func:`retain_loss` — CE_LM(x_r) + mean over hidden states (embeddings and every
  layer) and tokens of ‖h_θ − h_ref‖₂ (the norm itself, not squared).
- :func:`inner_step_weights` — w_k = exp(0.0625·(k − (K − 1))) at every n-th inner
  step, later steps weighing more.

Masking: by default every mean runs over real tokens only. The authors' code takes
the entropy over every position of the padded batch; ``include_padding=True``
reproduces that.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax


def _f32(x: jax.Array) -> jax.Array:
    """``x`` in float32 at least (bf16 is upcast; float64 under x64 stays, for gradient checks)."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _masked_mean(values: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Mean of ``values`` [..., B, T] over positions where ``mask`` [B, T] is 1 (all positions when None)."""
    values = _f32(values)
    if mask is None:
        return jnp.mean(values)
    m = jnp.broadcast_to(mask.astype(values.dtype), values.shape)
    return jnp.sum(values * m) / jnp.maximum(jnp.sum(m), 1.0)


def next_token_mask(mask: jax.Array) -> jax.Array:
    """[B, T] mask of the positions whose next-token prediction has a real target:
    t counts when tokens t and t + 1 are both real (the last position never counts)."""
    m = mask.astype(jnp.float32)
    return jnp.concatenate([m[:, :-1] * m[:, 1:], jnp.zeros_like(m[:, :1])], axis=1)


def token_entropy(logits: jax.Array) -> jax.Array:
    """H(softmax(logits)) per position, in nats, computed in float32: [B, T]."""
    logp = jax.nn.log_softmax(_f32(logits), axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def entropy_loss(logits: jax.Array, mask: jax.Array | None = None, *, include_padding: bool = False) -> jax.Array:
    """L_TR for knowledge restriction: minus the mean next-token entropy.

    With ``mask`` the mean runs over positions t whose target t + 1 is a real token
    (:func:`next_token_mask`); ``include_padding=True`` (the authors' convention)
    averages over every position of the batch, padding and the last one included.
    """
    h = token_entropy(logits)
    if include_padding or mask is None:
        return -jnp.mean(h)
    return -_masked_mean(h, next_token_mask(mask))


def sequence_logprob(logits: jax.Array, input_ids: jax.Array, loss_mask: jax.Array) -> jax.Array:
    """Σ_t log p(x_{t+1} | x_≤t) over targets t + 1 with ``loss_mask`` 1 (aligned with
    ``input_ids``; e.g. the completion tokens of a prompt + completion row): [B]."""
    logp = jax.nn.log_softmax(_f32(logits[:, :-1]), axis=-1)
    picked = jnp.take_along_axis(logp, input_ids[:, 1:, None], axis=-1)[..., 0]
    return jnp.sum(picked * loss_mask[:, 1:].astype(jnp.float32), axis=-1)


def completion_loss(logits: jax.Array, input_ids: jax.Array, loss_mask: jax.Array) -> jax.Array:
    """Mean next-token cross-entropy over the targets with ``loss_mask`` 1 (e.g. the completion of
    prompt + completion rows, as in :func:`sequence_logprob`): −Σ log p / (number of such tokens)."""
    n = jnp.sum(loss_mask[:, 1:].astype(jnp.float32))
    return -jnp.sum(sequence_logprob(logits, input_ids, loss_mask)) / jnp.maximum(n, 1.0)


def dpo_loss(chosen_logp: jax.Array, rejected_logp: jax.Array, ref_chosen_logp: jax.Array,
             ref_rejected_logp: jax.Array, beta: float = 0.1) -> tuple[jax.Array, dict]:
    """DPO's sigmoid loss, mean over the batch, and its implicit rewards.

    Arguments are per-example sequence log-probabilities [B] of the chosen (refusal)
    and rejected (harmful) completions under the policy and the frozen reference.
    """
    chosen_reward = beta * (chosen_logp - jax.lax.stop_gradient(ref_chosen_logp))
    rejected_reward = beta * (rejected_logp - jax.lax.stop_gradient(ref_rejected_logp))
    margin = chosen_reward - rejected_reward
    loss = -jnp.mean(jax.nn.log_sigmoid(margin))
    return loss, {"chosen_reward": jnp.mean(chosen_reward), "rejected_reward": jnp.mean(rejected_reward),
                  "reward_accuracy": jnp.mean((margin > 0).astype(jnp.float32))}


def lm_loss(logits: jax.Array, input_ids: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean next-token cross-entropy over real targets (float32)."""
    ce = optax.softmax_cross_entropy_with_integer_labels(_f32(logits[:, :-1]), input_ids[:, 1:])
    m = (mask[:, :-1] * mask[:, 1:]).astype(ce.dtype)
    return jnp.sum(ce * m) / jnp.maximum(jnp.sum(m), 1.0)


def random_mapping_table(key: jax.Array, vocab_size: int, dim: int) -> jax.Array:
    """The fixed Gaussian table R [|V|, D] of the random-mapping safeguard."""
    return jax.random.normal(key, (vocab_size, dim), jnp.float32)


def random_mapping_loss(retain_logits: jax.Array, retain_ids: jax.Array, retain_mask: jax.Array,
                        forget_hidden: jax.Array, forget_ids: jax.Array, forget_mask: jax.Array,
                        table: jax.Array) -> tuple[jax.Array, dict]:
    """CE(x_r) + mean over layers ℓ and real forget tokens of 1 − |cos(h_ℓ(x_f), R[x_f])|.

    ``forget_hidden`` [L, B, T, D] holds the layers the safeguard maps (the caller picks them).
    """
    ce = lm_loss(retain_logits, retain_ids, retain_mask)
    h = _f32(forget_hidden)
    target = table[forget_ids]  # [B, T, D]
    cos = jnp.sum(h * target, -1) / (jnp.linalg.norm(h, axis=-1) * jnp.linalg.norm(target, axis=-1) + 1e-8)
    mapping = _masked_mean(1.0 - jnp.abs(cos), forget_mask)
    return ce + mapping, {"retain_ce": ce, "mapping_loss": mapping}


def retain_loss(logits: jax.Array, input_ids: jax.Array, mask: jax.Array, hidden: jax.Array,
                ref_hidden: jax.Array, *, include_padding: bool = False) -> tuple[jax.Array, dict]:
    """L_retain = CE_LM(x_r) + mean over hidden states and tokens of ‖h_θ − h_ref‖₂.

    ``hidden`` and ``ref_hidden`` are [L + 1, B, T, D] (embeddings, then every layer);
    the norm is over D and not squared. Padding positions count only with
    ``include_padding=True``.
    """
    ce = lm_loss(logits, input_ids, mask)
    diff = _f32(hidden) - _f32(jax.lax.stop_gradient(ref_hidden))
    # a zero difference (the first step) has an undefined norm gradient: use sqrt(x² + tiny) there
    dist = jnp.sqrt(jnp.maximum(jnp.sum(diff * diff, axis=-1), 1e-20))
    rep = _masked_mean(dist, None if include_padding else mask)
    return ce + rep, {"retain_ce": ce, "retain_rep": rep}


def inner_step_weights(num_steps: int, every: int = 4, rate: float = 0.0625) -> np.ndarray:
    """w_k for k = 0 … K − 1: exp(rate·(k − (K − 1))) where (k + 1) is a multiple of ``every``, else 0.

    Inner step k is the parameters after k + 1 adversary updates, so the last
    evaluation is after all K updates and weighs 1 (K = 64: 16 evaluations).
    """
    k = np.arange(num_steps)
    w = np.exp(rate * (k - (num_steps - 1)))
    return np.where((k + 1) % every == 0, w, 0.0).astype(np.float32)
