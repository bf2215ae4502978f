"""Toy-world defaults for RMU: a config naming ``world`` gets its model, corpora and evaluation sets.

The folder is what ``jaxsafe toyworld build`` writes (layout in :mod:`jaxsafe.toyworld.build`):
the base model in ``base/``, the hazardous-domain text as the one forget topic, the
benign-domain text as the retain corpus, and the hazardous and benign
multiple-choice sets as evaluations.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from jaxsafe.errors import UserError
from jaxsafe.unlearn.config import EvalSet, RMUConfig, Topic

EVAL_SETS = ("hazard", "benign")


def resolve_world(cfg: RMUConfig) -> RMUConfig:
    """Fill empty ``model``/``forget``/``retain``/``evals`` from the toy world in ``cfg.world``."""
    if not cfg.world:
        return cfg
    world = Path(cfg.world)
    needed = [world / "base" / "config.json", world / "corpora" / "forget.jsonl", world / "corpora" / "retain.jsonl",
              *(world / "mcq" / f"{name}.jsonl" for name in EVAL_SETS)]
    missing = [p for p in needed if not p.exists()]
    if missing:
        raise UserError(f"{world} is not a complete toy world ({missing[0]} is missing); "
                        f"build it with: jaxsafe toyworld build --out {world}")
    return dataclasses.replace(
        cfg,
        model=cfg.model or str(world / "base"),
        forget=cfg.forget or (Topic(name="hazard", data=str(world / "corpora" / "forget.jsonl"), max_length=cfg.retain.max_length),),
        retain=cfg.retain if cfg.retain.data else dataclasses.replace(cfg.retain, data=str(world / "corpora" / "retain.jsonl")),
        evals=cfg.evals or tuple(EvalSet(name=n, data=str(world / "mcq" / f"{n}.jsonl")) for n in EVAL_SETS),
    )
