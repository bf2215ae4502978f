"""Padding a hierarchy to bucket sizes so that jitted GNN code never recompiles per graph.

Two layouts of the same :class:`~jaxsafe.graphs.coarsen.Hierarchy`:

* :func:`pad_levels` — each level padded on its own to power-of-two buckets of
  nodes and edges (``jraph.pad_with_graphs``). Inference walks the levels in a
  Python loop calling jitted per-level functions, so the cost is ~2× the finest
  level and compiled functions are reused across levels and graphs with the
  same buckets.
* :func:`stack_levels` — every level padded to one ``(N, E)`` and a fixed number
  of levels ``L``, stacked along a leading axis, for ``lax.scan`` in training
  (one compilation per bucket; graphs of one bucket are batched with ``vmap``).
  Levels past the graph's depth are inactive: identity ``cmap``, no edges.

Padding edges have weight 0 and point at a padding node; a padding node's
``cmap`` entry points at a padding node of the next level (index ``N_next − 1``).
Index arrays are passed to jitted functions as arguments, never closed over
(closed-over indices are constant-folded: minutes of compilation at 10⁶ nodes).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jraph
import numpy as np
from flax import nnx

from jaxsafe.graphs.coarsen import Hierarchy, Level
from jaxsafe.graphs.io import to_graphs_tuple


def bucket(size: int, minimum: int = 8) -> int:
    """Smallest power of two ≥ ``max(size, minimum)``."""
    return 1 << int(np.ceil(np.log2(max(size, minimum))))


class PaddedLevel(NamedTuple):
    graph: jraph.GraphsTuple  # padded; nodes/globals unused
    cmap: jax.Array  # int32[N]: node -> node of the next (coarser) padded level
    mask: jax.Array  # bool[N]: real nodes
    n: jax.Array  # int32 scalar: real node count


def _pad_graph(level: Level, num_nodes: int, num_edges: int) -> jraph.GraphsTuple:
    g = jraph.pad_with_graphs(to_graphs_tuple(level.adj), num_nodes, num_edges)
    return g._replace(senders=g.senders.astype(np.int32), receivers=g.receivers.astype(np.int32),
                      edges=g.edges.astype(np.float32))


def _padded_cmap(level: Level, num_nodes: int, num_coarse: int) -> np.ndarray:
    cmap = np.full(num_nodes, num_coarse - 1, np.int32)
    if level.cmap is None:  # coarsest (or inactive): identity
        cmap[:] = np.arange(num_nodes, dtype=np.int32)
    else:
        cmap[: level.n] = level.cmap
    return cmap


def _mask(n: int, num_nodes: int) -> np.ndarray:
    return np.arange(num_nodes) < n


def pad_levels(h: Hierarchy) -> list[PaddedLevel]:
    """Each level padded to its own power-of-two buckets (strictly more nodes than real)."""
    sizes = [bucket(lv.n + 1) for lv in h.levels]
    out = []
    for i, lv in enumerate(h.levels):
        nxt = sizes[i + 1] if i + 1 < len(sizes) else sizes[i]
        out.append(PaddedLevel(_pad_graph(lv, sizes[i], bucket(lv.adj.nnz)), _padded_cmap(lv, sizes[i], nxt),
                               _mask(lv.n, sizes[i]), np.int32(lv.n)))
    return out


def stack_levels(h: Hierarchy, num_nodes: int, num_edges: int, num_levels: int) -> PaddedLevel:
    """All levels padded to ``(num_nodes, num_edges)`` and stacked to ``num_levels`` (leading axis)."""
    if h.depth > num_levels or h.levels[0].n >= num_nodes or max(lv.adj.nnz for lv in h.levels) > num_edges:
        raise ValueError(f"hierarchy (depth {h.depth}, n {h.levels[0].n}) does not fit the bucket "
                         f"({num_levels} levels, {num_nodes} nodes, {num_edges} edges)")
    empty = Level(h.coarsest.adj[:0, :0], np.zeros(0), None)
    levels = list(h.levels) + [empty] * (num_levels - h.depth)
    padded = [PaddedLevel(_pad_graph(lv, num_nodes, num_edges), _padded_cmap(lv, num_nodes, num_nodes),
                          _mask(lv.n, num_nodes), np.int32(lv.n)) for lv in levels]
    return jax.tree.map(lambda *xs: np.stack(xs), *padded)


def level_at(stacked: PaddedLevel, index: jax.Array) -> PaddedLevel:
    """Level ``index`` of a stacked hierarchy (``index`` may be traced)."""
    return jax.tree.map(lambda a: jnp.asarray(a)[index], stacked)


class Compiled:
    """Jitted methods of an NNX module, its parameters passed as an argument.

    ``Compiled(model)("up", *args)`` runs ``model.up(*args)`` under ``jax.jit``; one
    cache entry per method and argument shapes, reused across graphs.
    """

    def __init__(self, model: nnx.Module):
        self.graphdef, self.state = nnx.split(model)
        self._fns: dict[str, object] = {}

    def __call__(self, name: str, *args):
        fn = self._fns.get(name)
        if fn is None:
            graphdef = self.graphdef
            fn = jax.jit(lambda state, *a: getattr(nnx.merge(graphdef, state), name)(*a))
            self._fns[name] = fn
        return fn(self.state, *args)


def masked_mean(x: jax.Array, mask: jax.Array, n: jax.Array) -> jax.Array:
    """Column means over the real rows of a padded array."""
    return jnp.sum(jnp.where(mask[:, None], x, 0.0), axis=0) / n
