"""RMU run configuration (YAML in ``configs/rmu/``; spec/rmu.md lists the published settings)."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class EvalSet:
    """A multiple-choice set in the WMDP schema: a local file/folder or a hub name (+ config)."""

    name: str = ""
    data: str = ""
    config: str | None = None
    subject: str | None = None  # "… multiple choice questions (with answers) about {subject}."; default from the data


@dataclasses.dataclass(frozen=True)
class Topic:
    """A forget topic: its corpus (``text`` field) and the length its documents are cut to."""

    name: str = ""
    data: str = ""
    config: str | None = None
    split: str | None = None
    max_length: int = 512


@dataclasses.dataclass(frozen=True)
class RMUConfig:
    """Settings of one RMU run.

    ``world``: a toy-world folder (``jaxsafe toyworld build``); when set, empty
    ``model``/``forget``/``retain``/``evals`` default to the world's base model,
    forget/retain corpora and multiple-choice sets.
    ``update``: the trainable parameters as a path selector; default
    ``layers.{layer-2}-{layer}.mlp.down_proj`` (the paper's choice).
    ``eval_format``: "letter" is WMDP's metric (" A" … " D"); "cloze" scores the answer
    texts, for models too small to have learned the lettered format.
    ``max_rows``: cap on documents read per corpus (0 = all); RMU makes one pass
    over ``steps × batch_size`` documents per topic anyway.
    """

    world: str | None = None
    model: str = ""
    dtype: str = "float32"
    forget: tuple[Topic, ...] = ()
    retain: Topic = Topic(name="retain")
    evals: tuple[EvalSet, ...] = ()
    eval_batch_size: int = 32
    eval_format: Literal["letter", "cloze"] = "letter"
    layer: int = 7
    update: str | None = None
    steering_coef: float = 20.0
    alpha: float = 100.0
    lr: float = 5e-5
    steps: int = 80
    batch_size: int = 4
    seed: int = 42
    authors_convention: bool = False
    checkpoint_every: int = 50
    max_rows: int = 0

    def update_selector(self) -> str:
        return self.update or f"layers.{max(self.layer - 2, 0)}-{self.layer}.mlp.down_proj"
