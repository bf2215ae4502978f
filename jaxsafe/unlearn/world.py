"""Toy-world defaults for RMU: a config naming ``world`` gets its model, corpora and evaluation sets."""

from __future__ import annotations

import dataclasses

from jaxsafe.unlearn.config import RMUConfig


def resolve_world(cfg: RMUConfig) -> RMUConfig:
    """Fill empty ``model``/``forget``/``retain``/``evals`` from the toy world in ``cfg.world``."""
    if not cfg.world:
        return cfg
    raise NotImplementedError("toy world layout pending")
