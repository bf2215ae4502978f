"""Configs of paper B's RL agents and their A2C training (``jaxsafe graphs train-rl``), importable without JAX."""

from __future__ import annotations

import dataclasses

from jaxsafe.config import field
from jaxsafe.graphs.config import FAMILIES
from jaxsafe.optim.config import OptimizerConfig


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """Architecture of one actor-critic (stored in the weights file's metadata)."""

    task: str = field("refine", choices=("refine", "separator", "coarsest"))
    kind: str = field("sage", choices=("sage", "gat"))
    hidden: int = field(8, ge=1)
    layers: int = field(3, ge=1)
    heads: int = field(1, ge=1)  # GAT heads, concatenated (hidden must be a multiple)

    @property
    def in_features(self) -> int:
        return {"refine": 5, "separator": 7, "coarsest": 7}[self.task]


@dataclasses.dataclass(frozen=True)
class RLTrainConfig:
    """A2C (paper B: n-step returns, γ = 0.9, value coefficient 0.1, Adam 1e-3) on generated graphs.

    Training graphs (n ∈ [n_min, n_max]) are drawn from ``families`` in turn:
    Delaunay (``wide_fraction`` of them in [0,2]×[0,1]), Delaunay with holes,
    random geometric (largest component), 2D and 3D grids of about n vertices.
    Refinement episodes start from METIS bisections of level l+1 of each graph's
    hierarchy projected onto level l (every level, the paper's setting) and, for
    ``gnn_fraction`` of the graphs, from the GNN bisection of the finest level.
    Separator episodes start from METIS's vertex separator (``separator_start:
    metis``; libmetis) or from the König cover of a METIS bisection (``cover``),
    and for ``gnn_fraction`` of the graphs also from the cover of the GNN bisection.
    Coarsest-graph episodes are the whole coarsest graph of each graph's
    hierarchy (≤ ``coarsest_size`` vertices), all vertices in A except one
    (``starts`` random start vertices per graph).
    A training step runs ``episodes`` episodes side by side (``vmap``): first
    ``warmup`` ∈ [0, warmup) policy moves without gradient (so later states of
    an episode are seen too), then ``rollout`` moves whose n-step returns
    (bootstrapped with the critic) give the A2C loss
    ``mean(−log π·(R − V)) + value_coef·mean((R − V)²) − entropy_coef·H``.
    With ``lock`` a moved vertex may not move again in the episode, as in the
    test-time greedy rollout (the shipped refinement agent was trained before
    locking existed, ``lock: false``).
    Rewards are ``reward_scale·Δobjective/objective(start)`` (scale-free across graph sizes).
    """

    seed: int = field(0, ge=0, lt=2**32)
    agent: AgentConfig = AgentConfig()
    objective: str = field("nc", choices=("nc", "qc"))
    graphs: int = field(40, ge=1)
    n_min: int = field(200, ge=10)
    n_max: int = field(1500, ge=10)
    wide_fraction: float = field(0.3, ge=0, le=1)
    families: tuple[str, ...] = field(("delaunay",), choices=FAMILIES)
    coarsest_size: int = field(100, ge=2)
    gnn_fraction: float = field(0.25, ge=0, le=1)
    separator_start: str = field("metis", choices=("metis", "cover"))
    starts: int = field(4, ge=1)
    hops: int = field(3, ge=1)
    max_nodes: int = field(1024, ge=16)  # episodes with larger regions are left out
    episodes: int = field(16, ge=1)
    rollout: int = field(16, ge=1)
    warmup: int = field(16, ge=0)
    steps: int = field(300, ge=1)
    gamma: float = field(0.9, ge=0, le=1)
    value_coef: float = field(0.1, ge=0)
    entropy_coef: float = field(0.01, ge=0)
    reward_scale: float = field(1.0, gt=0)
    lock: bool = True
    optimizer: OptimizerConfig = field(OptimizerConfig(name="adam", lr=1e-3, clip_norm=1.0))
    checkpoint_every: int = field(50, ge=1)
    eval_graphs: int = field(6, ge=0)

    def __post_init__(self):
        if self.n_min > self.n_max:
            raise ValueError(f"n_min ({self.n_min}) must not exceed n_max ({self.n_max})")
        if not self.families:
            raise ValueError("families must name at least one graph family")
