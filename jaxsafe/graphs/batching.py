"""Padding a hierarchy to fixed sizes so that jitted GNN code never recompiles per graph.

:func:`pad_levels` pads every level of a :class:`~jaxsafe.graphs.coarsen.Hierarchy`
with ``jraph.pad_with_graphs``:

* inference: each level to its own buckets of nodes and edges (powers of two;
  four steps per octave for the ELL layout, whose cost follows the padded node
  count, and at least ``ELL_MIN_NODES`` nodes), and
  the networks run level by level through jitted per-level functions
  (:class:`Compiled`), so the cost is ~2× the finest level and compiled
  functions are reused across levels and graphs with the same buckets. With
  ``ell=True`` the graph is an :class:`~jaxsafe.graphs.layers.EllGraph` (row
  gathers instead of a scatter-add, see ``layers.py``): same outputs, several
  times faster on CPU;
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
import numba
import numpy as np
from flax import nnx

from jaxsafe.graphs.coarsen import Hierarchy, Level
from jaxsafe.graphs.io import to_graphs_tuple
from jaxsafe.graphs.layers import EllGraph
from jaxsafe.graphs.programs import Program, describe


def bucket(size: int, minimum: int = 8, steps: int = 1) -> int:
    """Smallest bucket ≥ ``max(size, minimum)``: a power of two, or with ``steps = 4``
    one of ``2^e·{1, 1.25, 1.5, 1.75}`` (at most 25 % padding instead of 100 %).
    ``steps`` must be a power of two.
    """
    size = max(int(size), minimum)
    top = 1 << int(np.ceil(np.log2(size)))
    step = max(top // (2 * steps), 1)
    return -(-size // step) * step


class PaddedLevel(NamedTuple):
    graph: jraph.GraphsTuple | EllGraph  # padded; nodes/globals unused
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


def locality_ranks(h: Hierarchy) -> list[np.ndarray]:
    """Per level, a new position for every vertex such that vertices merged together sit together.

    Coarsest level: identity; each finer level: vertices sorted (stably) by the
    new position of the coarse vertex they merge into. The children of one
    coarse vertex are adjacent, the children of neighbouring coarse vertices
    nearby, so a vertex's neighbours are mostly stored close to it and the
    ELL row gathers hit the cache more often: on Delaunay graphs with randomly
    numbered vertices both networks together ran 2 % faster at 10⁵ and 10 %
    at 10⁶ (``benchmarks/gnn_inference.py``).
    """
    ranks = [np.arange(h.coarsest.n, dtype=np.int64)]
    for i in range(h.depth - 2, -1, -1):
        ranks.append(_children_first_order(ranks[-1][h.levels[i].cmap], h.levels[i + 1].n))
    return ranks[::-1]


@numba.njit(cache=True)
def _children_first_order(key, num_keys):
    """Stable counting sort: the position of each element when sorted by ``key``."""
    start = np.zeros(num_keys + 1, np.int64)
    for v in range(key.shape[0]):
        start[key[v] + 1] += 1
    for c in range(num_keys):
        start[c + 1] += start[c]
    rank = np.empty(key.shape[0], np.int64)
    for v in range(key.shape[0]):
        rank[v] = start[key[v]]
        start[key[v]] += 1
    return rank


def pad_levels(h: Hierarchy, sizes: list[tuple[int, int]] | None = None, ell: bool = False,
               ranks: list[np.ndarray] | None = None) -> list[PaddedLevel]:
    """Pad each level to ``sizes`` (default: its own buckets, see :func:`bucket`; strictly more nodes than real).

    The default edge bucket is ``max(8N, next power of two)``: meshes have fewer
    than 8 directed edges per node, so the node bucket alone fixes the shapes
    and fewer per-level functions are compiled. ``ell=True``: the inference
    layout (:class:`~jaxsafe.graphs.layers.EllGraph`, see :func:`ell_slots`)
    instead of a ``GraphsTuple``; ``sizes`` then only sets the node counts.
    ``ranks`` (ELL only, e.g. :func:`locality_ranks`): level ``i``'s vertex ``v``
    is stored in row ``ranks[i][v]``; callers permute inputs and outputs.
    """
    if ranks is not None and not ell:
        raise ValueError("ranks are supported with the ELL layout only")
    if sizes is None and ell:
        sizes = [(max(bucket(lv.n + 1, steps=4), ELL_MIN_NODES), 0) for lv in h.levels]
    elif sizes is None:
        sizes = [(bucket(lv.n + 1), max(8 * bucket(lv.n + 1), bucket(lv.adj.nnz))) for lv in h.levels]
    levels = _extended(h, len(sizes))
    out = []
    for i, lv in enumerate(levels):
        num_nodes, num_edges = sizes[i]
        num_next = sizes[i + 1][0] if i + 1 < len(sizes) else num_nodes
        cmap = np.full(num_nodes, num_next - 1, np.int32)
        coarse = np.arange(lv.n) if lv.cmap is None else lv.cmap
        if ranks is None:
            cmap[: lv.n] = coarse
        else:
            cmap[ranks[min(i, h.depth - 1)]] = ranks[min(i + 1, h.depth - 1)][coarse]
        rank = np.arange(lv.n) if ranks is None else ranks[min(i, h.depth - 1)]
        if ell:  # small levels: every edge in a slot, slot count a power of two (few distinct shapes)
            g = _ell_graph(lv, num_nodes, rank, all_in_slots=num_nodes <= ELL_MIN_NODES)
        else:
            g = _edge_graph(lv, num_nodes, num_edges)
        out.append(PaddedLevel(g, cmap, np.arange(num_nodes) < lv.n, np.int32(lv.n)))
    return out


def _edge_graph(lv: Level, num_nodes: int, num_edges: int) -> jraph.GraphsTuple:
    g = jraph.pad_with_graphs(to_graphs_tuple(lv.adj), num_nodes, num_edges)
    return g._replace(senders=g.senders.astype(np.int32), receivers=g.receivers.astype(np.int32),
                      edges=g.edges.astype(np.float32))


# Inference levels with fewer nodes are padded to this many, with a power-of-two
# slot count ≥ their largest degree: the small levels of every hierarchy then share
# a few shapes, so far fewer per-level functions are compiled (and loaded from the
# persistent cache). Their extra work is negligible next to the finest levels.
ELL_MIN_NODES = 1024


def ell_slots(degrees: np.ndarray, overflow_cost: int = 12) -> int:
    """Slots per node ``K`` (a multiple of 4) minimizing ``K·n + overflow_cost·(edges beyond K)``.

    ``overflow_cost``: an edge-list entry (gather + scatter-add) costs about 12
    ELL slots (row gather) on XLA CPU, measured in ``layers.py``. Delaunay
    meshes (mean degree 6) get ``K = 8`` with ~1 % of edges left over.
    """
    top = int(np.ceil(max(int(degrees.max(initial=0)), 1) / 4)) * 4
    cost = {k: k * len(degrees) + overflow_cost * int(np.maximum(degrees - k, 0).sum()) for k in range(4, top + 1, 4)}
    return min(cost, key=cost.get)


def _ell_graph(lv: Level, num_nodes: int, rank: np.ndarray | None = None, all_in_slots: bool = False) -> EllGraph:
    """ELL + COO split of a level's CSR adjacency, padded to ``num_nodes`` (one compiled pass).

    Vertex ``v`` is stored in row ``rank[v]`` (default: ``v``). Slots per row:
    :func:`ell_slots`, or with ``all_in_slots`` the power of two ≥ the largest
    degree (no edge list).
    """
    if num_nodes <= lv.n:
        raise ValueError(f"level with {lv.n} nodes does not fit in {num_nodes}")
    adj = lv.adj
    deg = np.diff(adj.indptr)
    k = bucket(int(deg.max(initial=0))) if all_in_slots else ell_slots(deg)
    m = bucket(int(np.maximum(deg - k, 0).sum()))
    neighbours = np.full((num_nodes, k), num_nodes - 1, np.int32)
    weights = np.zeros((num_nodes, k), np.float32)
    senders = np.full(m, num_nodes - 1, np.int32)
    receivers = np.full(m, num_nodes - 1, np.int32)
    edges = np.zeros(m, np.float32)
    rank = np.arange(lv.n) if rank is None else rank
    _fill_ell(adj.indptr, adj.indices, adj.data, rank, neighbours, weights, senders, receivers, edges)
    return EllGraph(neighbours, weights, senders, receivers, edges)


@numba.njit(cache=True)
def _fill_ell(indptr, indices, data, rank, neighbours, weights, senders, receivers, edges):
    """CSR row ``i``'s first ``K`` entries into ELL row ``rank[i]``, the rest appended to the edge list."""
    k = neighbours.shape[1]
    rest = 0
    for i in range(indptr.shape[0] - 1):
        r = rank[i]
        for e in range(indptr[i], indptr[i + 1]):
            slot = e - indptr[i]
            if slot < k:
                neighbours[r, slot] = rank[indices[e]]
                weights[r, slot] = data[e]
            else:
                senders[rest], receivers[rest], edges[rest] = rank[indices[e]], r, data[e]
                rest += 1


class Compiled:
    """Jitted methods of an NNX module, its parameters passed as an argument.

    ``Compiled(model)("up", *args)`` runs ``model.up(*args)`` under ``jax.jit``
    (a :class:`~jaxsafe.graphs.programs.Program`: kept on disk when the CLI asks).
    Compiled functions are cached per (module structure, method), so every
    model of one architecture (e.g. freshly loaded weights) reuses them. The
    module structure is hashed once, here: hashing an NNX ``GraphDef`` costs
    ~0.15 ms, ~4 ms per bisection at ~26 per-level calls.
    """

    _cache: dict = {}  # GraphDef -> {method name: Program}

    def __init__(self, model: nnx.Module):
        self.graphdef, self.state = nnx.split(model)
        self.kind = type(model).__name__
        self._methods = self._cache.setdefault(self.graphdef, {})

    def __call__(self, name: str, *args):
        fn = self._methods.get(name)
        if fn is None:
            graphdef = self.graphdef
            fn = self._methods[name] = Program(lambda state, *a: getattr(nnx.merge(graphdef, state), name)(*a),
                                               f"{self.kind}.{name}",
                                               salt=describe(graphdef))
        return fn(self.state, *args)


def masked_mean(x: jax.Array, mask: jax.Array, n: jax.Array) -> jax.Array:
    """Column means over the real rows of a padded array."""
    return jnp.sum(jnp.where(mask[:, None], x, 0.0), axis=0) / n
