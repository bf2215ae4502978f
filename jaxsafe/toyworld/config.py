"""The toy-world build config (YAML in ``configs/toyworld/``), importable without JAX.

The command line reads and checks it (types and ranges, :mod:`jaxsafe.config`)
before anything heavy is imported, so a bad value is reported at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from jaxsafe.config import field
from jaxsafe.optim.config import OptimizerConfig, ScheduleConfig
from jaxsafe.toyworld.world import WorldSpec


@dataclass(frozen=True)
class CorpusSpec:
    mentions: int = field(48, ge=1)  # pretraining paragraphs per entity
    mc_renderings: int = field(6, ge=0)  # lettered practice items per practice fact
    cloze_renderings: int = field(2, ge=0)  # cloze practice items per practice fact
    file_docs_per_entity: int = field(4, ge=1)  # paragraphs per entity in the corpus files


@dataclass(frozen=True)
class ModelSpec:
    """A small Llama configuration (tied embeddings keep the parameter count down)."""

    hidden_size: int = field(128, ge=1)
    intermediate_size: int = field(384, ge=1)
    num_layers: int = field(4, ge=1)
    num_heads: int = field(4, ge=1)
    num_kv_heads: int = field(4, ge=1)
    head_dim: int = field(32, ge=2)
    seq_len: int = field(128, ge=16)  # training row length and max_position_embeddings

    def __post_init__(self):
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"model.num_heads ({self.num_heads}) must be a multiple of model.num_kv_heads ({self.num_kv_heads})")
        if self.head_dim % 2:
            raise ValueError(f"model.head_dim ({self.head_dim}) must be even (rotary embeddings)")


@dataclass(frozen=True)
class TrainSpec:
    steps: int = field(800, ge=1)  # many small steps: memorizing facts takes updates more than tokens
    batch_size: int = field(16, ge=1)
    # AdamW, warm-up then cosine decay to a tenth of the peak, gradients clipped at norm 1
    optimizer: OptimizerConfig = field(OptimizerConfig(
        name="adamw", lr=5e-3, weight_decay=0.01, clip_norm=1.0,
        schedule=ScheduleConfig(kind="warmup_cosine", warmup_steps=50, final_fraction=0.1)))
    checkpoint_every: int = field(100, ge=1)

    def __post_init__(self):
        warmup = self.optimizer.schedule.warmup_steps
        if warmup >= self.steps:
            raise ValueError(f"train.optimizer.schedule.warmup_steps ({warmup}) must be below train.steps ({self.steps})")


@dataclass(frozen=True)
class BuildConfig:
    seed: int = field(0, ge=0, lt=2**32)
    # an upper bound: training stops once every word of the world is one token
    vocab_size: int = field(4096, ge=64)
    world: WorldSpec = field(WorldSpec())
    corpus: CorpusSpec = field(CorpusSpec())
    model: ModelSpec = field(ModelSpec())
    train: TrainSpec = field(TrainSpec())
    eval_batch_size: int = field(64, ge=1)
