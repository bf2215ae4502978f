"""Padding a hierarchy to fixed sizes so that jitted GNN code never recompiles per graph.

:func:`pad_levels` pads every level of a :class:`~jaxsafe.graphs.coarsen.Hierarchy`
with ``jraph.pad_with_graphs``:

* inference: each level to its own power-of-two buckets of nodes and edges, and
  the networks run level by level through jitted per-level functions
  (:class:`Compiled`), so the cost is ~2× the finest level and compiled
  functions are reused across levels and graphs with the same buckets;
* training: every graph of a group to the same per-level sizes and the same
  number of levels (:func:`group_sizes`), stacked along a batch axis and run
  through ``vmap`` inside one jitted step — one compilation per group. A graph
  shallower than the group is extended with copies of its coarsest graph joined
  by identity maps; the network drivers treat those levels as inactive.

Padding edges have weight 0 and point at a padding node; a padding node's
``cmap`` entry points at the last (padding) node of the next level. Index arrays
are passed to jitted functions as arguments, never closed over (closed-over
indices are constant-folded: minutes of compilation at 10⁶ nodes).
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


def _extended(h: Hierarchy, num_levels: int) -> list[Level]:
    """The levels, then copies of the coarsest graph (identity maps) up to ``num_levels``."""
    if num_levels < h.depth:
        raise ValueError(f"hierarchy of depth {h.depth} does not fit in {num_levels} levels")
    return list(h.levels) + [h.coarsest] * (num_levels - h.depth)


def group_sizes(hierarchies: list[Hierarchy]) -> list[tuple[int, int]]:
    """Per-level ``(nodes, edges)`` sizes that fit every hierarchy of a training group."""
    num_levels = max(h.depth for h in hierarchies)
    ext = [_extended(h, num_levels) for h in hierarchies]
    return [(max(e[i].n for e in ext) + 1, max(max(e[i].adj.nnz for e in ext), 1)) for i in range(num_levels)]


def pad_levels(h: Hierarchy, sizes: list[tuple[int, int]] | None = None) -> list[PaddedLevel]:
    """Pad each level to ``sizes`` (default: its own power-of-two buckets, strictly more nodes than real).

    The default edge bucket is ``max(8N, next power of two)``: meshes have fewer
    than 8 directed edges per node, so the node bucket alone fixes the shapes
    and fewer per-level functions are compiled.
    """
    if sizes is None:
        sizes = [(bucket(lv.n + 1), max(8 * bucket(lv.n + 1), bucket(lv.adj.nnz))) for lv in h.levels]
    levels = _extended(h, len(sizes))
    out = []
    for i, lv in enumerate(levels):
        num_nodes, num_edges = sizes[i]
        num_next = sizes[i + 1][0] if i + 1 < len(sizes) else num_nodes
        cmap = np.full(num_nodes, num_next - 1, np.int32)
        cmap[: lv.n] = np.arange(lv.n) if lv.cmap is None else lv.cmap
        g = jraph.pad_with_graphs(to_graphs_tuple(lv.adj), num_nodes, num_edges)
        g = g._replace(senders=g.senders.astype(np.int32), receivers=g.receivers.astype(np.int32),
                       edges=g.edges.astype(np.float32))
        out.append(PaddedLevel(g, cmap, np.arange(num_nodes) < lv.n, np.int32(lv.n)))
    return out


class Compiled:
    """Jitted methods of an NNX module, its parameters passed as an argument.

    ``Compiled(model)("up", *args)`` runs ``model.up(*args)`` under ``jax.jit``.
    Compiled functions are cached per (module structure, method), so every
    model of one architecture (e.g. freshly loaded weights) reuses them.
    """

    _cache: dict = {}

    def __init__(self, model: nnx.Module):
        self.graphdef, self.state = nnx.split(model)

    def __call__(self, name: str, *args):
        key = (self.graphdef, name)
        fn = self._cache.get(key)
        if fn is None:
            graphdef = self.graphdef
            fn = self._cache[key] = jax.jit(lambda state, *a: getattr(nnx.merge(graphdef, state), name)(*a))
        return fn(self.state, *args)


def masked_mean(x: jax.Array, mask: jax.Array, n: jax.Array) -> jax.Array:
    """Column means over the real rows of a padded array."""
    return jnp.sum(jnp.where(mask[:, None], x, 0.0), axis=0) / n
