"""TAR's outer step as one compiled program (Tamirisa et al. 2024, Algorithm 1).

With parameters θ, one outer step:

1. samples A attacks (host side, a pure function of the step number): each a data
   stream (forget text, a second forget corpus, or retain text switching to forget
   text at M = ⌊Beta(6, 3)·K⌋) and a learning rate;
2. runs each adversary — a fresh AdamW taking K cross-entropy steps from θ — as one
   ``lax.scan``, all A at once under ``jax.vmap``;
3. every ``tr_every``-th inner step k takes the tamper-resistance loss on a held-out
   batch x_TR and its gradient at θ'_k, accumulated with weight w_k
   (:func:`~jaxsafe.tamper.losses.inner_step_weights`). First-order (the paper's
   choice): ∇_θ' L_TR(θ'_k) stands in for d L_TR(θ'_k)/dθ, no backpropagation
   through the inner updates. ``second_order=True`` differentiates through the
   whole inner loop instead (the exact meta-gradient; memory grows with K);
4. adds the retain gradient at θ, L_retain = CE(x_r) + mean ‖h_θ − h_ref‖₂, and takes
   one step of the outer optimizer (schedule-free AdamW in the paper):

       g = λ_TR · mean_a Σ_k w_k ∇L_TR(θ'_{a,k}) + λ_retain · ∇L_retain(θ).

L_TR is the knowledge-restriction entropy loss (x_TR: forget text) or, for the refusal
variant, the DPO loss on held-out preference pairs with reference log-probabilities of the
model before TAR (x_TR: chosen and rejected rows; the adversaries then fine-tune on
harmful completions, prompt + rejected).

Everything but the sampling is in :func:`make_tar_step`, a pure function of
(state, batch, frozen) in the training core's form (:mod:`jaxsafe.train`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxsafe.errors import UserError
from jaxsafe.lm.lora import LoRA, init_lora
from jaxsafe.tamper.losses import dpo_loss, entropy_loss, inner_step_weights, lm_loss, retain_loss, sequence_logprob


@dataclasses.dataclass(frozen=True)
class InnerLoop:
    """The adversary of TAR's training attacks and how its trajectory is scored."""

    steps: int = 64  # K
    tr_every: int = 4
    weight_rate: float = 0.0625
    include_padding: bool = False  # the authors' entropy over padding positions too
    tr_loss: str = "entropy"  # or "dpo" (refusal)
    dpo_beta: float = 0.1
    second_order: bool = False
    lora: Any = None  # a jaxsafe.lm.lora.LoRAConfig: the batch's LoRA lanes train adapters of this shape


def make_tar_step(graphdef, inner: InnerLoop, adversary, outer, *, lambda_tr: float = 4.0,
                  lambda_retain: float = 1.0, microbatches: int = 1) -> Callable:
    """The pure outer step ``(state, batch, frozen) -> (state, metrics)``.

    ``state`` is a :class:`jaxsafe.train.TrainState` over θ (the ``nnx.Param`` state);
    ``frozen`` = (rest, ref_params): the model's non-parameter state and the reference
    parameters for h_ref. ``batch`` holds ``retain_ids``/``retain_mask`` [B, T],
    ``tr_ids``/``tr_mask`` [B, T] (x_TR), ``adv_ids``/``adv_mask`` [A, K, b, T] and
    ``adv_lr`` [A]. With ``inner.tr_loss == "dpo"``, x_TR is B/2 preference pairs: rows
    ``tr_ids`` [B, T] hold the chosen completions, then the rejected ones, ``tr_loss_mask``
    [B, T] marks the completion tokens and ``tr_ref_logp`` [B] holds their summed
    log-probabilities under the reference (the model before TAR), so L_TR(θ') =
    −mean log σ(β[(log π_θ'(y_w) − log π_ref(y_w)) − (log π_θ'(y_l) − log π_ref(y_l))]). ``adversary`` and ``outer`` are optimizers from
    :func:`jaxsafe.optim.factory.make_optimizer` (the adversary's lr is set per lane).

    LoRA adversaries (``inner.lora`` set): the batch also holds
    ``lora_ids``/``lora_mask`` [A_l, K, b, T], ``lora_lr`` [A_l] and ``lora_seed`` [A_l]
    (adapters start at ``init_lora(θ, inner.lora, fold_in(key(seed), 0))``; dropout
    at step k uses ``split(fold_in(key(seed), 1), K)[k]``). Such an adversary trains fresh adapters on the
    frozen θ; θ'_k = θ ⊕ adapters_k, and since θ enters the adapted model additively,
    ∇_θ L_TR(θ ⊕ adapters_k) is the first-order term. The mean runs over all A + A_l lanes.
    ``inner.second_order`` differentiates every lane, LoRA lanes included (their adapters
    are trained on θ, so they depend on it), through its whole inner loop.

    ``microbatches=k`` accumulates every gradient of the step over k slices of its batch with
    the training core's mechanism (:func:`jaxsafe.train.accumulated_loss_and_grad`, what
    ``make_step(microbatches=k)`` runs): the adversaries' steps (their b rows), the first-order
    ∇L_TR(θ'_k) (x_TR; DPO pairs stay together when k divides the number of pairs) and the
    retain gradient (its B rows). Equal to one batch when the losses weigh rows equally (token
    means over rows of unequal length weigh each slice's tokens by 1/k); LoRA dropout draws
    one mask per slice. Second order evaluates L_TR over the whole x_TR.
    """
    from jaxsafe.optim.factory import with_hyper
    from jaxsafe.train import accumulated_loss_and_grad, apply_gradients, init_state, make_step

    if inner.steps % inner.tr_every:
        raise UserError(f"inner steps ({inner.steps}) must be a multiple of tr_every ({inner.tr_every})")
    if inner.tr_loss not in ("entropy", "dpo"):
        raise UserError(f"tr_loss must be 'entropy' or 'dpo', got {inner.tr_loss!r}")
    n_seg = inner.steps // inner.tr_every
    weights = jnp.asarray(inner_step_weights(inner.steps, inner.tr_every, inner.weight_rate)[inner.tr_every - 1::inner.tr_every])

    def model(params, rest):
        return nnx.merge(graphdef, params, rest)

    def adv_loss(params, batch, rest):
        ids, mask = batch
        return lm_loss(model(params, rest)(ids, mask), ids, mask), {}

    adv_step = make_step(adv_loss, adversary, microbatches=microbatches)

    def tr_value(logits_fn, tr):
        """L_TR of the model ``logits_fn(ids, mask)`` on x_TR (``tr``: the batch's ``tr_*`` arrays)."""
        logits = logits_fn(tr["tr_ids"], tr["tr_mask"])
        if inner.tr_loss == "entropy":
            return entropy_loss(logits, tr["tr_mask"], include_padding=inner.include_padding)
        logp, ref = sequence_logprob(logits, tr["tr_ids"], tr["tr_loss_mask"]), tr["tr_ref_logp"]
        n = logp.shape[0] // 2
        return dpo_loss(logp[:n], logp[n:], ref[:n], ref[n:], inner.dpo_beta)[0]

    def tr_loss(params, rest, tr):
        return tr_value(model(params, rest), tr)

    def tr_value_and_grad(fn, params, tr):
        """(L_TR, its gradient) of ``fn(params, tr)``, accumulated over ``microbatches`` slices of x_TR."""
        (value, _), g = accumulated_loss_and_grad(lambda p, b, _: (fn(p, b), {}), params, tr,
                                                  microbatches=microbatches)
        return value, g

    def trajectory(state, advance, xs, score, acc0):
        """The inner loop of one attack: ``advance(state, x)`` over the K steps' ``xs`` (leading axis
        K), scored after every ``tr_every``-th step by ``score(state) -> (L_TR, gradient or None)``.
        Returns (Σ_k w_k gradient_k, or None without ``acc0``; Σ_k w_k L_TR(θ'_k); L_TR per evaluation)."""
        segs = jax.tree.map(lambda x: x.reshape(n_seg, inner.tr_every, *x.shape[1:]), xs)

        def segment(carry, seg):
            (state, acc), (step_xs, w) = carry, seg
            state, _ = jax.lax.scan(lambda s, x: (advance(s, x), None), state, step_xs)
            value, g = score(state)
            if acc is not None:
                acc = jax.tree.map(lambda a, b: a + w * b, acc, g)
            return (state, acc), value

        (_, acc), values = jax.lax.scan(segment, (state, acc0), (segs, weights))
        return acc, jnp.sum(weights * values), values

    def zeros_like_wide(tree):
        """Gradient accumulators in float32 or wider whatever θ's dtype (the weights w_k are float32 or wider)."""
        return jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.promote_types(x.dtype, jnp.float32)), tree)

    def adversary_run(theta, rest, ids, mask, lr, tr, accumulate_grads: bool):
        """One full fine-tuning adversary from θ; its first-order term is ∇_θ' L_TR(θ'_k)."""
        state = init_state(theta, adversary)
        state = state._replace(opt_state=with_hyper(state.opt_state, lr=lr))
        if accumulate_grads:
            score = lambda st: tr_value_and_grad(lambda p, b: tr_loss(p, rest, b), st.params, tr)
        else:
            score = lambda st: (tr_loss(st.params, rest, tr), None)
        return trajectory(state, lambda st, x: adv_step(st, x, rest)[0], (ids, mask), score,
                          zeros_like_wide(theta) if accumulate_grads else None)

    def lora_loss(adapters, batch, frozen):
        ids, mask, key = batch  # key [1]: this slice's dropout key
        theta, rest = frozen
        return lm_loss(model(theta, rest)(ids, mask, lora=LoRA.from_config(adapters, inner.lora, key=key[0])),
                       ids, mask), {}

    lora_step = make_step(lora_loss, adversary, microbatches=microbatches)

    def lora_run(theta, rest, ids, mask, lr, seed, tr, accumulate_grads: bool):
        """One LoRA adversary: fresh adapters (float32 or wider) trained on the frozen θ; its
        first-order term is ∇_θ L_TR(θ ⊕ adapters_k). Differentiated as a whole (second order),
        the adapters' dependence on θ through their training counts too."""
        key = jax.random.key(seed)
        dtype = jnp.promote_types(jax.tree.leaves(theta)[0].dtype, jnp.float32)
        state = init_state(init_lora(theta, inner.lora, jax.random.fold_in(key, 0), dtype=dtype), adversary)
        state = state._replace(opt_state=with_hyper(state.opt_state, lr=lr))
        keys = jax.random.split(jax.random.fold_in(key, 1), inner.steps)  # step k's dropout key
        # [K, microbatches]: one key per slice of step k's batch (step k's own key when unsplit)
        keys = keys[:, None] if microbatches == 1 else jax.vmap(lambda k: jax.random.split(k, microbatches))(keys)

        def tr_at(th, adapters, tr_b):
            return tr_value(lambda i, m: model(th, rest)(i, m, lora=LoRA.from_config(adapters, inner.lora)), tr_b)

        if accumulate_grads:
            score = lambda st: tr_value_and_grad(lambda th, b: tr_at(th, st.params, b), theta, tr)
        else:
            score = lambda st: (tr_at(theta, st.params, tr), None)
        return trajectory(state, lambda st, x: lora_step(st, x, (theta, rest))[0], (ids, mask, keys), score,
                          zeros_like_wide(theta) if accumulate_grads else None)

    def tr_part(batch):
        return {k: v for k, v in batch.items() if k.startswith("tr_")}

    def all_lanes(theta, rest, batch, accumulate_grads: bool):
        """Every adversary of the batch (full lanes, then LoRA lanes), each lane group vmapped:
        (per-lane Σ_k w_k gradients or None, per-lane Σ_k w_k L_TR [A], L_TR per evaluation [A, K/tr_every])."""
        tr = tr_part(batch)
        run = jax.vmap(lambda i, m, lr: adversary_run(theta, rest, i, m, lr, tr, accumulate_grads))
        out = [run(batch["adv_ids"], batch["adv_mask"], batch["adv_lr"])]
        if inner.lora is not None and "lora_ids" in batch:
            run_lora = jax.vmap(lambda i, m, lr, seed: lora_run(theta, rest, i, m, lr, seed, tr, accumulate_grads))
            out.append(run_lora(batch["lora_ids"], batch["lora_mask"], batch["lora_lr"], batch["lora_seed"]))
        return tuple(jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts) for parts in zip(*out))

    def first_order(theta, rest, batch):
        grads, objective, values = all_lanes(jax.lax.stop_gradient(theta), rest, batch, True)
        return jax.tree.map(lambda g: jnp.mean(g, axis=0), grads), jnp.mean(objective), values

    def tr_objective(theta, rest, batch):
        """mean over attacks of Σ_k w_k L_TR(θ'_k(θ)), differentiable through the inner loop; and L_TR per evaluation."""
        _, objective, values = all_lanes(theta, rest, batch, False)
        return jnp.mean(objective), values

    def second_order(theta, rest, batch):
        (objective, values), grads = jax.value_and_grad(tr_objective, has_aux=True)(theta, rest, batch)
        return grads, objective, values

    meta_gradient = second_order if inner.second_order else first_order

    def retain_objective(theta, rest, ref, ids, mask):
        m = model(theta, rest)
        hidden = m.all_hidden_states(ids, mask)
        logits = m.unembed(hidden[-1])
        ref_hidden = jax.lax.stop_gradient(model(ref, rest).all_hidden_states(ids, mask))
        return retain_loss(logits, ids, mask, hidden, ref_hidden)

    def retain_fn(theta, rows, frozen):  # the training core's loss_fn form, for accumulated_loss_and_grad
        return retain_objective(theta, *frozen, *rows)

    def step(state, batch, frozen):
        rest, ref = frozen
        tr_grads, tr_objective, tr_values = meta_gradient(state.params, rest, batch)
        (l_retain, parts), r_grads = accumulated_loss_and_grad(
            retain_fn, state.params, (batch["retain_ids"], batch["retain_mask"]), (rest, ref),
            microbatches=microbatches)
        # in the parameters' dtype, so the outer optimizer's state keeps its dtype from step to step
        grads = jax.tree.map(lambda a, b, p: (lambda_tr * a + lambda_retain * b).astype(p.dtype),
                             tr_grads, r_grads, state.params)
        loss = lambda_tr * tr_objective + lambda_retain * l_retain
        new_state = apply_gradients(outer, state, grads, loss)
        # L_TR after the first and the last evaluated inner step (entropy: −L_TR, in nats)
        first, last = jnp.mean(tr_values[:, 0]), jnp.mean(tr_values[:, -1])
        named = ({"tr_entropy_first": -first, "tr_entropy_last": -last} if inner.tr_loss == "entropy"
                 else {"tr_dpo_first": first, "tr_dpo_last": last})
        metrics = {"loss": loss, "tr_objective": tr_objective, **named, "retain_loss": l_retain, **parts,
                   "grad_norm": optax.tree.norm(grads)}
        return new_state, metrics

    # the pieces, for a Python loop over attacks one at a time (benchmarks/tar.py: the authors' way)
    step.meta_gradient = meta_gradient
    step.tr_objective = tr_objective
    step.retain_gradient = jax.value_and_grad(retain_objective, has_aux=True)
    return step


def beta_switch(rng: np.random.Generator, k: int) -> int:
    """M = ⌊Beta(6, 3)·K⌋, kept inside 1 … K − 1 so both phases are non-empty."""
    return int(np.clip(np.floor(rng.beta(6.0, 3.0) * k), 1, k - 1))


def sample_adversaries(rng: np.random.Generator, streams: dict[str, np.ndarray], kinds: tuple[str, ...],
                       lrs: tuple[float, ...], num: int, k: int, b: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Rows [num, K, b] and learning rates [num] of ``num`` sampled training attacks."""
    rows, lr_out, names = [], [], []
    for _ in range(num):
        kind = kinds[rng.integers(len(kinds))]
        lr_out.append(lrs[rng.integers(len(lrs))])
        if kind == "retain_then_forget":
            m = beta_switch(rng, k)
            r = np.concatenate([rng.choice(streams["retain"], (m, b)), rng.choice(streams["forget"], (k - m, b))])
        else:
            r = rng.choice(streams[kind], (k, b))
        rows.append(r)
        names.append(kind)
    return np.stack(rows).astype(np.int32), np.asarray(lr_out, np.float32), names


def copy_tree(tree: Any) -> Any:
    return jax.tree.map(jnp.copy, tree)
