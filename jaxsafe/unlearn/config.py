"""RMU run configuration (YAML in ``configs/rmu/``; spec/rmu.md lists the published settings)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from jaxsafe.config import field
from jaxsafe.optim.config import OptimizerConfig


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
    max_length: int = field(512, ge=1)


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
    ``optimizer``: any optimizer section (:mod:`jaxsafe.optim.factory`); the default
    is AdamW with optax's weight decay 1e-4, what earlier versions used.
    ``microbatches``: split each batch into this many slices whose gradients are
    averaged before one update (``jaxsafe.train.make_step``): the same step with
    the activations of ``batch_size / microbatches`` rows in memory; it must divide
    ``batch_size`` (per device, with ``data_parallel``).
    """

    world: str | None = None
    model: str = ""
    dtype: str = field("float32", choices=("float32", "bfloat16", "float16"))
    forget: tuple[Topic, ...] = ()
    retain: Topic = Topic(name="retain")
    evals: tuple[EvalSet, ...] = ()
    eval_batch_size: int = field(32, ge=1)
    eval_format: Literal["letter", "cloze"] = "letter"
    layer: int = field(7, ge=0)  # and below the model's layer count (checked when the model is known)
    update: str | None = None
    steering_coef: float = field(20.0, gt=0)
    alpha: float = field(100.0, ge=0)
    optimizer: OptimizerConfig = OptimizerConfig(name="adamw", lr=5e-5, weight_decay=1e-4)
    steps: int = field(80, ge=1)
    batch_size: int = field(4, ge=1)
    microbatches: int = field(1, ge=1)
    seed: int = field(42, ge=0)
    authors_convention: bool = False
    checkpoint_every: int = field(50, ge=1)
    max_rows: int = field(0, ge=0)
    # devices each batch is split over (mesh "data" axis); -1: every device of every process
    data_parallel: int = field(1, ge=1, also=(-1,))

    def __post_init__(self):
        if self.batch_size % self.microbatches:
            raise ValueError(f"microbatches ({self.microbatches}) must divide batch_size ({self.batch_size})")

    def update_selector(self) -> str:
        return self.update or f"layers.{max(self.layer - 2, 0)}-{self.layer}.mlp.down_proj"
