"""Configs of the GNN bisector and its training (``jaxsafe graphs train``), importable without JAX.

The command line reads and checks them (types and ranges, :mod:`jaxsafe.config`)
before anything heavy is imported.
"""

from __future__ import annotations

import dataclasses

from jaxsafe.config import field
from jaxsafe.optim.config import OptimizerConfig


# training graph families (jaxsafe.graphs.generators.family_graph), shared by the GNN and the RL agents
FAMILIES = ("delaunay", "holes", "geometric", "grid2d", "grid3d")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture and hierarchy settings (part of the weights file's metadata)."""

    laplacian: str = field("sym", choices=("sym", "rw"))  # see embedding.py
    coarsest_size: int = field(16, ge=2)
    embed_hidden: int = field(32, ge=1)
    part_hidden: int = field(16, ge=1)
    # Inference: the embedding module runs at most this many levels up. On deeper
    # hierarchies it starts from the exact eigenvectors of level `max_up_levels`
    # (counted from the top) instead of the coarsest: the shipped weights were
    # trained on n <= 2000 (<= 8 levels up from 16 vertices), and running them
    # through 16 levels at n = 1e5 misplaced the cut (balance 2.7; docs/graphs.md).
    max_up_levels: int = field(8, ge=1)


@dataclasses.dataclass(frozen=True)
class PhaseConfig:
    graphs: int = field(300, ge=1)
    n_min: int = field(100, ge=3)
    n_max: int = field(2000, ge=3)
    wide_fraction: float = field(0.3333, ge=0, le=1)  # share of graphs in [0,2]×[0,1] (paper: 1,000 of 3,000)
    epochs: int = field(20, ge=1)
    # Adam, gradients clipped at norm 1
    optimizer: OptimizerConfig = field(OptimizerConfig(name="adam", lr=1e-3, clip_norm=1.0))
    accumulate: int = field(5, ge=1)
    # drawn in turn (generators.family_graph); wide_fraction applies to the Delaunay ones
    families: tuple[str, ...] = field(("delaunay",), choices=FAMILIES)

    def __post_init__(self):
        if self.n_min > self.n_max:
            raise ValueError(f"n_min ({self.n_min}) must not exceed n_max ({self.n_max})")
        if not self.families:
            raise ValueError("families must name at least one graph family")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    seed: int = field(0, ge=0, lt=2**32)
    max_levels: int = field(16, ge=1)
    checkpoint_every: int = field(200, ge=1)
    eval_graphs: int = field(10, ge=0)
    # devices the graphs of a batch are split over (mesh "data" axis); -1: all
    data_parallel: int = field(1, ge=1, also=(-1,))
    model: ModelConfig = ModelConfig()
    embedding: PhaseConfig = PhaseConfig()
    partition: PhaseConfig = PhaseConfig(graphs=30, n_min=200, n_max=500, wide_fraction=0.0, epochs=200)
