"""The ``optimizer:`` config section (JAX-free, so a config is checked before anything heavy is imported).

:func:`jaxsafe.optim.factory.make_optimizer` turns an :class:`OptimizerConfig` into an
optax transformation; see that module for the schedules' formulas.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from jaxsafe.config import field

OPTIMIZERS = ("adamw", "adam", "sgd", "adagrad", "adadelta", "schedule_free_adamw", "ecdsep")
SCHEDULES = ("constant", "linear_warmup", "warmup_cosine", "sgdr")


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """The learning-rate shape over steps.

    ``constant``: lr. ``linear_warmup``: 0 → lr linearly over ``warmup_steps``, then lr.
    ``warmup_cosine``: the warm-up, then cosine decay to ``final_fraction·lr`` at
    ``decay_steps`` (counted from step 0, warm-up included; 0 = the run's length).
    ``sgdr`` (Loshchilov & Hutter 2017, warm restarts): the warm-up + cosine shape
    repeated every ``cycle_steps`` steps (0 = the run's length).
    """

    kind: Literal["constant", "linear_warmup", "warmup_cosine", "sgdr"] = "constant"
    warmup_steps: int = field(0, ge=0)
    decay_steps: int = field(0, ge=0)
    final_fraction: float = field(0.0, ge=0, le=1)
    cycle_steps: int = field(0, ge=0)


@dataclasses.dataclass(frozen=True)
class EcdsepConfig:
    """ECDSep's own settings (:func:`jaxsafe.optim.ecdsep`); ``lr`` is its Δt."""

    eta: float = field(1.0, gt=0)
    f0: float = 0.0
    nu: float = field(1e-5, ge=0)
    s: float = field(1.0, gt=0)
    delta_energy: float = field(0.0, ge=0)
    noise: Literal["hash", "gaussian"] = "hash"
    seed: int = field(0, ge=0, lt=2**32)


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """An optimizer section. ``weight_decay`` is decoupled for adamw and
    schedule_free_adamw (Loshchilov & Hutter 2019) and a coupled L2 term (added to
    the gradient, PyTorch's convention) for the others. ``momentum``/``nesterov``
    apply to sgd; ``eps`` = 0 keeps each optimizer's own default. ``eps_root`` (adam, adamw)
    is added to v inside Adam's square root, √(v + eps_root): it makes the update
    differentiable where a gradient entry is exactly 0 (d√v/dv is infinite at 0), which a
    meta-gradient through the optimizer needs (TAR's ``second_order`` with LoRA adversaries)."""

    name: Literal["adamw", "adam", "sgd", "adagrad", "adadelta", "schedule_free_adamw", "ecdsep"] = "adamw"
    lr: float = field(1e-3, gt=0)
    schedule: ScheduleConfig = ScheduleConfig()
    weight_decay: float = field(0.0, ge=0)
    b1: float = field(0.9, ge=0, lt=1)
    b2: float = field(0.999, ge=0, lt=1)
    eps: float = field(0.0, ge=0)
    eps_root: float = field(0.0, ge=0)
    momentum: float = field(0.0, ge=0, lt=1)
    nesterov: bool = False
    clip_norm: float = field(0.0, ge=0)  # 0 = off
    ecdsep: EcdsepConfig = EcdsepConfig()
