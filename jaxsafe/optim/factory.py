"""The one optimizer factory: an ``optimizer:`` config section -> an optax transformation.

Every trainer (toy-world pretraining, RMU, the GNN trainer, TAR's outer loop and
its fine-tuning attacks) builds its optimizer here, so each accepts the same
section::

    optimizer:
      name: adamw            # adamw | adam | sgd | adagrad | adadelta | schedule_free_adamw | ecdsep
      lr: 1.0e-3
      weight_decay: 0.01
      clip_norm: 1.0         # 0 = no clipping
      schedule: {kind: warmup_cosine, warmup_steps: 100, final_fraction: 0.1}

The learning rate of step ``t`` is ``lr · shape(t)`` with the schedule's numbers held
in the optimizer *state* (:class:`ScheduledState`), not baked into the compiled
program: attacks that differ only in lr or schedule numbers share one program and
run side by side under ``jax.vmap`` (:func:`with_hyper` sets a batch of them). The
schedules equal optax's (``linear_schedule``, ``warmup_cosine_decay_schedule``,
``sgdr_schedule``) to float rounding; tests/optim/test_factory.py checks it.

Every optimizer is a ``GradientTransformationExtraArgs``: the training core always
passes ``value=loss`` (ECDSep needs it; the others ignore it).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax.contrib import ScheduleFreeState, schedule_free_adamw, schedule_free_eval_params

from jaxsafe.errors import UserError
from jaxsafe.optim.config import OptimizerConfig

from jaxsafe.optim.config import OPTIMIZERS, SCHEDULES
HYPER = ("lr", "warmup_steps", "decay_steps", "final_fraction", "cycle_steps")


class ScheduledState(NamedTuple):
    """State of :func:`make_optimizer`: the call count, the schedule's numbers
    (float32 scalars, or batched under ``vmap``) and the wrapped optimizer's state."""

    count: jax.Array
    hyper: dict[str, jax.Array]
    inner: optax.OptState


def schedule_value(kind: str, count: jax.Array, hyper: dict[str, jax.Array]) -> jax.Array:
    """The learning rate at step ``count`` for schedule ``kind`` (a static string) and
    traced numbers ``hyper`` (see :data:`HYPER`); the formulas of optax's schedules."""
    lr = hyper["lr"]
    t = count.astype(jnp.float32)
    if kind == "constant":
        return lr
    warmup = hyper["warmup_steps"]
    if kind == "sgdr":
        t = jnp.mod(t, jnp.maximum(hyper["cycle_steps"], 1.0))
    ramp = jnp.where(warmup > 0, lr * jnp.clip(t, 0.0, warmup) / jnp.maximum(warmup, 1.0), lr)
    if kind == "linear_warmup":
        return ramp
    length = hyper["cycle_steps"] if kind == "sgdr" else hyper["decay_steps"]
    cosine_steps = jnp.maximum(length - warmup, 1.0)
    progress = jnp.clip(t - warmup, 0.0, cosine_steps) / cosine_steps
    floor = hyper["final_fraction"]
    decayed = lr * ((1.0 - floor) * 0.5 * (1.0 + jnp.cos(math.pi * progress)) + floor)
    return jnp.where(t < warmup, ramp, decayed)


def _base(cfg: OptimizerConfig, lr: jax.Array) -> optax.GradientTransformationExtraArgs:
    """The named optimizer at learning rate ``lr`` (its state does not depend on lr)."""
    eps = cfg.eps or None
    kw = {} if eps is None else {"eps": eps}
    name = cfg.name
    if cfg.eps_root:  # adam and adamw only (make_optimizer checks)
        kw["eps_root"] = cfg.eps_root
    if name == "adamw":
        return optax.with_extra_args_support(optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay, **kw))
    if name == "schedule_free_adamw":
        return schedule_free_adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay, **kw)
    if name == "ecdsep":
        from jaxsafe.optim.ecdsep import ecdsep

        e = cfg.ecdsep
        return ecdsep(lr, e.eta, f0=e.f0, nu=e.nu, s=e.s, delta_energy=e.delta_energy,
                      weight_decay=cfg.weight_decay, seed=e.seed, noise=e.noise)
    if name == "adam":
        base = optax.adam(lr, b1=cfg.b1, b2=cfg.b2, **kw)
    elif name == "sgd":
        base = optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov)
    elif name == "adagrad":  # PyTorch's defaults (an empty accumulator, eps 1e-10), as the authors' attacks use
        base = optax.adagrad(lr, initial_accumulator_value=0.0, eps=eps or 1e-10)
    elif name == "adadelta":
        base = optax.adadelta(lr, **kw)
    else:
        raise UserError(f"optimizer name {name!r} is not one of {', '.join(OPTIMIZERS)}")
    if cfg.weight_decay:
        base = optax.chain(optax.add_decayed_weights(cfg.weight_decay), base)
    return optax.with_extra_args_support(base)


def initial_hyper(cfg: OptimizerConfig, total_steps: int) -> dict[str, jax.Array]:
    """The schedule numbers of ``cfg`` for a run of ``total_steps`` steps."""
    s = cfg.schedule
    values = {"lr": cfg.lr, "warmup_steps": s.warmup_steps, "decay_steps": s.decay_steps or total_steps,
              "final_fraction": s.final_fraction, "cycle_steps": s.cycle_steps or total_steps}
    return {k: jnp.asarray(v, jnp.float32) for k, v in values.items()}


def make_optimizer(cfg: OptimizerConfig, total_steps: int) -> optax.GradientTransformationExtraArgs:
    """The optimizer of ``cfg`` for a run of ``total_steps`` steps.

    Args:
      cfg: the config section.
      total_steps: the run's length, the default ``decay_steps``/``cycle_steps``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScheduledState`;
      its update takes ``value=`` (the loss, for ECDSep) and ignores it otherwise.

    Example:
      >>> opt = make_optimizer(OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, nesterov=True), 100)
      >>> state = opt.init({"w": jnp.zeros(3)})
    """
    if cfg.name not in OPTIMIZERS:
        raise UserError(f"optimizer name {cfg.name!r} is not one of {', '.join(OPTIMIZERS)}")
    if cfg.schedule.kind not in SCHEDULES:
        raise UserError(f"schedule kind {cfg.schedule.kind!r} is not one of {', '.join(SCHEDULES)}")
    if cfg.name == "ecdsep" and cfg.clip_norm:
        raise UserError("optimizer.clip_norm is not supported with ecdsep (it needs the true gradient)")
    if cfg.eps_root and cfg.name not in ("adam", "adamw"):
        raise UserError(f"optimizer.eps_root applies to adam and adamw, not {cfg.name}")
    kind = cfg.schedule.kind

    def init_fn(params):
        hyper = initial_hyper(cfg, total_steps)
        return ScheduledState(jnp.zeros((), jnp.int32), hyper, _base(cfg, hyper["lr"]).init(params))

    def update_fn(updates, state, params=None, **extra):
        lr = schedule_value(kind, state.count, state.hyper)
        if cfg.clip_norm:
            updates, _ = optax.clip_by_global_norm(cfg.clip_norm).update(updates, optax.EmptyState())
        updates, inner = _base(cfg, lr).update(updates, state.inner, params, **extra)
        return updates, ScheduledState(optax.safe_increment(state.count), state.hyper, inner)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def with_hyper(state: ScheduledState, **values: Any) -> ScheduledState:
    """``state`` with some schedule numbers replaced (scalars, or arrays to vmap over)."""
    unknown = set(values) - set(HYPER)
    if unknown:
        raise ValueError(f"unknown schedule numbers {sorted(unknown)}; known: {HYPER}")
    hyper = {**state.hyper, **{k: jnp.asarray(v, jnp.float32) for k, v in values.items()}}
    return state._replace(hyper=hyper)


def current_lr(cfg: OptimizerConfig, state: ScheduledState) -> jax.Array:
    """The learning rate the next update will use."""
    return schedule_value(cfg.schedule.kind, state.count, state.hyper)


def evaluation_params(opt_state: optax.OptState, params: Any) -> Any:
    """The parameters to evaluate: schedule-free's averaged sequence x (Defazio et al.
    2024, eq. 1) when the state holds a schedule-free optimizer, else ``params``."""
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, ScheduleFreeState))
             if isinstance(s, ScheduleFreeState)]
    return schedule_free_eval_params(found[0], params) if found else params
