"""Paper B's agents in Flax NNX: the refinement actor-critic (GAT or SAGE), the coarsest-graph and the separator agents.

Both are tiny actor-critics over the region graph of an :class:`~jaxsafe.graphs.rl_env.Episode`
(:func:`~jaxsafe.graphs.rl_env.region_graph`): the actor is a stack of graph
layers (tanh) and a linear head giving one logit per vertex — a masked
log-softmax over the allowed vertices is the policy; the critic is one graph
layer, a linear map, a mean over the region's vertices and a tanh (paper B).
``kind="gat"`` uses :class:`~jaxsafe.graphs.layers.GATConv` (the paper's
abstract), ``kind="sage"`` :class:`~jaxsafe.graphs.layers.SAGEConv` (the
authors' code). The separator agent is the same network on the separator
features (7 inputs instead of 5); the coarsest-graph agent (paper B: 4 GAT
layers of 30 units) on the refinement features plus each vertex's edge-weight
fractions to A and B (7 inputs, :func:`~jaxsafe.graphs.rl_env.coarsest_features`).

Weights are safetensors with the config as metadata (``save``/``load``); the
package ships trained ones in ``jaxsafe/graphs/weights/rl_*.safetensors``.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import safetensors.numpy as stn
from flax import nnx

from jaxsafe.errors import UserError
from jaxsafe.graphs.layers import GATConv, SAGEConv
from jaxsafe.graphs.rl_config import AgentConfig
from jaxsafe.io import atomic_write_bytes

WEIGHTS = {"refine": "rl_refine.safetensors", "separator": "rl_separator.safetensors",
           "coarsest": "rl_coarsest.safetensors"}


def _conv(cfg: AgentConfig, fin: int, fout: int, rngs: nnx.Rngs):
    if cfg.kind == "gat":
        return GATConv(fin, fout // cfg.heads, heads=cfg.heads, rngs=rngs)
    return SAGEConv(fin, fout, rngs=rngs)


class ActorCritic(nnx.Module):
    """``(graph, x, region) -> (logits[N], value)``; logits of non-region vertices are meaningless (masked later)."""

    def __init__(self, cfg: AgentConfig, *, rngs: nnx.Rngs):
        if cfg.kind not in ("sage", "gat") or cfg.task not in WEIGHTS:
            raise UserError(f"unknown agent kind/task {cfg.kind}/{cfg.task}")
        self.cfg = cfg
        dims = [cfg.in_features] + [cfg.hidden] * cfg.layers
        self.convs = nnx.List([_conv(cfg, a, b, rngs) for a, b in zip(dims[:-1], dims[1:])])
        self.head = nnx.Linear(cfg.hidden, 1, rngs=rngs)
        self.critic_conv = _conv(cfg, cfg.in_features, cfg.hidden, rngs)
        self.critic_lin = nnx.Linear(cfg.hidden, 1, rngs=rngs)

    def __call__(self, graph, x: jax.Array, region: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = x
        for conv in self.convs:
            h = jnp.tanh(conv(graph, h))
        logits = self.head(h)[:, 0]
        c = self.critic_lin(jnp.tanh(self.critic_conv(graph, x)))[:, 0]
        r = region.astype(c.dtype)
        value = jnp.tanh(jnp.sum(c * r) / jnp.maximum(jnp.sum(r), 1.0))
        return logits, value

    # -- weights ---------------------------------------------------------------------
    def save(self, path: str | Path, extra: dict | None = None) -> None:
        flat = {"/".join(str(k) for k in key): np.asarray(v) for key, v in
                nnx.to_flat_state(nnx.state(self, nnx.Param))}
        meta = {"config": json.dumps(dataclasses.asdict(self.cfg)), **{k: json.dumps(v) for k, v in (extra or {}).items()}}
        atomic_write_bytes(path, stn.save(flat, metadata=meta))

    @classmethod
    def load(cls, path: str | Path | None = None, task: str = "refine") -> "ActorCritic":
        """Weights from ``path`` (default: the shipped ``rl_<task>`` weights)."""
        if path is None:
            path = resources.files("jaxsafe.graphs") / "weights" / WEIGHTS[task]
        path = Path(str(path))
        if not path.exists():
            raise UserError(f"RL agent weights not found: {path}")
        from safetensors import safe_open

        with safe_open(str(path), "np") as f:
            meta = f.metadata() or {}
        cfg = AgentConfig(**json.loads(meta["config"]))
        model = nnx.eval_shape(lambda: cls(cfg, rngs=nnx.Rngs(0)))
        tensors = stn.load_file(str(path))
        state = nnx.state(model, nnx.Param)
        flat = nnx.to_flat_state(state)
        new = []
        for key, var in flat:
            name = "/".join(str(k) for k in key)
            if name not in tensors:
                raise UserError(f"{path}: missing tensor {name}")
            # device_put, not jnp.asarray: the latter compiles a small program per array in a fresh process
            new.append((key, var.replace(jax.device_put(tensors[name]))))
        nnx.update(model, nnx.from_flat_state(new))
        return model


def num_params(model: nnx.Module) -> int:
    return int(sum(np.size(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))
