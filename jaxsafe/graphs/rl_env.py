"""Paper B's environments as pure JAX functions on padded graphs (``vmap`` over graphs and episodes).

Two environments share one padded layout, :class:`Episode`: a subgraph of the
whole graph — the *region* (the vertices within ``hops`` edges of the cut or of
the separator; the only vertices that may move and the only ones the agent's
graph layers see) plus a one-edge *halo* around it (fixed vertices, present so
that every neighbour of a region vertex is in the subgraph). Neighbours are
stored in ELL form (``nbr[i, :K]``; empty slots point at the last row, a padding
vertex, with weight 0). Totals of the *whole* graph (cut, side volumes, side
sizes) travel as scalars and are updated incrementally, so the objective after
every move is the exact objective of the whole graph — a test checks it against
a from-scratch recomputation after random move sequences.

* **Partition refinement** (:func:`refine_reset`, :func:`refine_step`): state =
  a 0/1 side per vertex plus ``cut``, ``vol[2]``, ``size[2]``; action = move one
  region vertex with a neighbour on the other side (the frontier) to the other
  side, never emptying a side; reward = ``obj(s) − obj(s')`` with
  ``obj = cut·(t₀/vol A + t₁/vol B)`` (normalized cut, ``t = (1, 1)``; recursive
  k-way uses ``t = (k₀/k₁, k₁/k₀)``) or the quotient cut with sizes.
  Moving ``v`` changes the cut by ``Σ_{u∼v, same side} w − Σ_{u∼v, other side} w``
  and the volumes by ``±d_v`` — O(K) per move.
* **Coarsest-graph bisection** (:func:`coarsest_episode`, then the refinement
  functions with :func:`coarsest_features`): the region is the whole coarsest
  graph, and the start is every vertex in A except one (paper B's coarsest-graph
  agent); the moves, rewards and incremental updates are the refinement ones,
  so B grows from the start vertex along the frontier.
* **Vertex separator** (:func:`separator_reset`, :func:`separator_step`): labels
  0 = A, 1 = B, 2 = S with no A–B edge; action on a region vertex ``v``: from A or
  B into S if ``v`` touches S (always keeps the separator valid), or from S back
  to the side it touches if it touches only one side (to the lighter side if it
  touches neither; masked if it touches both). Reward = ``NS(s) − NS(s')`` with
  ``NS = |S|·(1/|A| + 1/|B|)`` (weighted sizes: vertex weights).

Degrees ``deg`` are those of the whole (finest) graph: on a coarse level of a
hierarchy a vertex's degree is the sum of the degrees of the fine vertices
merged into it, so the coarse objective equals the fine one for the projected
partition (contraction drops pair-internal edges, so the coarse graph's own
degrees would not).

:func:`extract_episode` builds an :class:`Episode` from a scipy graph and a
partition (NumPy); :func:`stack_episodes` pads several to common shapes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import scipy.sparse as sp

from jaxsafe.graphs.batching import bucket, ell_slots
from jaxsafe.graphs.layers import EllGraph

A_SIDE, B_SIDE, SEP = 0, 1, 2
OBJECTIVES = ("nc", "qc")


class Episode(NamedTuple):
    """One padded subgraph (leading batch axis when stacked). ``N`` rows, the last always padding."""

    nbr: jax.Array  # int32[N, K] neighbour rows (padding slots -> N-1)
    w: jax.Array  # float32[N, K] edge weights (0 on padding slots)
    deg: jax.Array  # float32[N] degree in the whole finest graph (volume contribution)
    vw: jax.Array  # float32[N] vertex weight (size contribution)
    movable: jax.Array  # bool[N] region: may move, seen by the agent
    real: jax.Array  # bool[N] region + halo
    labels0: jax.Array  # int32[N] start sides (0/1) or labels (0/1/2)
    cut0: jax.Array  # float32 scalar: cut of the whole graph (refinement; 0 for separators)
    vol0: jax.Array  # float32[2] side volumes of the whole graph
    size0: jax.Array  # float32[3] side sizes (A, B, S) of the whole graph
    total_vol: jax.Array  # float32 scalar: 2|E| (weighted) of the whole graph
    total_size: jax.Array  # float32 scalar: total vertex weight of the whole graph
    targets: jax.Array  # float32[2] objective weights (t0, t1)


class RefineState(NamedTuple):
    parts: jax.Array  # int32[N]
    cut: jax.Array
    vol: jax.Array  # [2]
    size: jax.Array  # [3] (S unused)
    last: jax.Array  # int32: last moved vertex (-1)


class SepState(NamedTuple):
    labels: jax.Array  # int32[N]
    size: jax.Array  # [3]
    last: jax.Array


# ---------------------------------------------------------------- objectives
def partition_objective(cut, vol, size, targets, kind: str = "nc"):
    """``cut·(t₀/vol A + t₁/vol B)`` (``nc``) or with sizes (``qc``); +inf with an empty side."""
    den = vol if kind == "nc" else size[..., :2]
    ok = jnp.all(den > 0, axis=-1)
    val = cut * (targets[..., 0] / jnp.where(ok, den[..., 0], 1.0) + targets[..., 1] / jnp.where(ok, den[..., 1], 1.0))
    return jnp.where(ok, val, jnp.inf)


def separator_objective(size):
    """``NS = |S|·(1/|A| + 1/|B|)``; +inf with an empty side."""
    ok = (size[..., 0] > 0) & (size[..., 1] > 0)
    val = size[..., 2] * (1 / jnp.where(ok, size[..., 0], 1.0) + 1 / jnp.where(ok, size[..., 1], 1.0))
    return jnp.where(ok, val, jnp.inf)


# ---------------------------------------------------------------- refinement env
def refine_reset(ep: Episode) -> RefineState:
    return RefineState(ep.labels0, ep.cut0, ep.vol0, ep.size0, jnp.int32(-1))


def side_weights(ep: Episode, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(same, other)``: edge weight from each vertex to its own side and to the other side(s)."""
    nl = labels[ep.nbr]
    same = jnp.sum(jnp.where(nl == labels[:, None], ep.w, 0.0), axis=1)
    return same, jnp.sum(ep.w, axis=1) - same


def refine_allowed(ep: Episode, st: RefineState) -> jax.Array:
    """Movable frontier vertices whose move leaves both sides non-empty (volume and size)."""
    _, other = side_weights(ep, st.parts)
    side = st.parts
    keeps = (st.vol[side] - ep.deg > 0) & (st.size[side] - ep.vw > 0)
    return ep.movable & (other > 0) & keeps


def refine_step(ep: Episode, st: RefineState, v: jax.Array, kind: str = "nc") -> tuple[RefineState, jax.Array]:
    """Move vertex ``v`` to the other side; returns the new state and ``obj(s) − obj(s')``."""
    side = st.parts[v]
    nl = st.parts[ep.nbr[v]]
    same = jnp.sum(jnp.where(nl == side, ep.w[v], 0.0))
    other = jnp.sum(ep.w[v]) - same
    onehot = jnp.array([1.0, -1.0]) * jnp.where(side == 0, 1.0, -1.0)  # +1 on v's side, -1 on the other
    vol = st.vol - onehot * ep.deg[v]
    size = st.size.at[:2].add(-onehot * ep.vw[v])
    new = RefineState(st.parts.at[v].set(1 - side), st.cut - other + same, vol, size, v.astype(jnp.int32))
    reward = partition_objective(st.cut, st.vol, st.size, ep.targets, kind) - partition_objective(
        new.cut, new.vol, new.size, ep.targets, kind)
    return new, reward


def refine_features(ep: Episode, st: RefineState) -> jax.Array:
    """Paper B's node features: one-hot side (2), frontier flag, vol A/2|E|, vol B/2|E| (0 outside the region)."""
    _, other = side_weights(ep, st.parts)
    n = st.parts.shape[0]
    f = jnp.stack([st.parts == 0, st.parts == 1, other > 0], axis=1).astype(jnp.float32)
    f = jnp.concatenate([f, jnp.broadcast_to(st.vol / ep.total_vol, (n, 2))], axis=1)
    return jnp.where(ep.movable[:, None], f, 0.0)


def coarsest_features(ep: Episode, st: RefineState) -> jax.Array:
    """:func:`refine_features` plus the fraction of each vertex's edge weight to A and to B.

    The coarsest graph's edge weights (fine edges merged by the contraction) vary
    by an order of magnitude, and graph attention sees edges but not their
    weights; these two features give the agent each vertex's gain
    ``(w to other side − w to own side)/Σw`` of a move.
    """
    same, other = side_weights(ep, st.parts)
    total = jnp.maximum(same + other, 1e-12)
    to_b = jnp.where(st.parts == 1, same, other) / total
    f = jnp.concatenate([refine_features(ep, st), jnp.stack([1.0 - to_b, to_b], axis=1)], axis=1)
    return jnp.where(ep.movable[:, None], f, 0.0)


# ---------------------------------------------------------------- separator env
def separator_reset(ep: Episode) -> SepState:
    return SepState(ep.labels0, ep.size0, jnp.int32(-1))


def _touches(ep: Episode, labels: jax.Array) -> jax.Array:
    """``[N, 3]`` bool: vertex has a neighbour labelled A, B, S."""
    nl = labels[ep.nbr]
    live = ep.w > 0
    return jnp.stack([jnp.any(live & (nl == k), axis=1) for k in range(3)], axis=1)


def _separator_target(ep: Episode, st: SepState, touch: jax.Array) -> jax.Array:
    """Label each vertex would get: A/B -> S; S -> the side it touches (the lighter side if none)."""
    lighter = jnp.where(st.size[0] <= st.size[1], A_SIDE, B_SIDE)
    back = jnp.where(touch[:, 0], A_SIDE, jnp.where(touch[:, 1], B_SIDE, lighter))
    return jnp.where(st.labels == SEP, back, SEP)


def separator_allowed(ep: Episode, st: SepState) -> jax.Array:
    touch = _touches(ep, st.labels)
    side = jnp.minimum(st.labels, 1)
    into_s = (st.labels != SEP) & touch[:, 2] & (st.size[side] - ep.vw > 0)
    out_of_s = (st.labels == SEP) & ~(touch[:, 0] & touch[:, 1])
    return ep.movable & (into_s | out_of_s)


def separator_step(ep: Episode, st: SepState, v: jax.Array) -> tuple[SepState, jax.Array]:
    """Apply the action on ``v`` (see module docstring); returns the new state and ``NS(s) − NS(s')``."""
    nl = st.labels[ep.nbr[v]]
    live = ep.w[v] > 0
    ta, tb = jnp.any(live & (nl == A_SIDE)), jnp.any(live & (nl == B_SIDE))
    old = st.labels[v]
    lighter = jnp.where(st.size[0] <= st.size[1], A_SIDE, B_SIDE)
    new_label = jnp.where(old == SEP, jnp.where(ta, A_SIDE, jnp.where(tb, B_SIDE, lighter)), SEP)
    size = st.size.at[old].add(-ep.vw[v]).at[new_label].add(ep.vw[v])
    new = SepState(st.labels.at[v].set(new_label), size, v.astype(jnp.int32))
    return new, separator_objective(st.size) - separator_objective(size)


def separator_features(ep: Episode, st: SepState) -> jax.Array:
    """One-hot A/B/S (3), frontier flag (touches another label), S vertex touching both A and B, |A|/n, |B|/n."""
    touch = _touches(ep, st.labels)
    n = st.labels.shape[0]
    frontier = jnp.where(st.labels == SEP, touch[:, 0] | touch[:, 1], touch[:, 2])
    both = (st.labels == SEP) & touch[:, 0] & touch[:, 1]
    f = jnp.stack([st.labels == 0, st.labels == 1, st.labels == 2, frontier, both], axis=1).astype(jnp.float32)
    f = jnp.concatenate([f, jnp.broadcast_to(st.size[:2] / ep.total_size, (n, 2))], axis=1)
    return jnp.where(ep.movable[:, None], f, 0.0)


# ---------------------------------------------------------------- the agent's view
def region_graph(ep: Episode, edges: tuple | None = None) -> jraph.GraphsTuple:
    """The region as an edge list: edges with both ends in the region keep their weight, others 0.

    Default: all ``N·K`` slots (the same shape for every episode of a batch).
    ``edges``: the compact list of :func:`region_edges` instead — an unbatched
    rollout's aggregation then scatters only the region's real edges — or the
    :class:`~jaxsafe.graphs.layers.EllGraph` of :func:`region_ell` (returned as it is).
    """
    if isinstance(edges, EllGraph):
        return edges
    n, k = ep.nbr.shape
    if edges is not None:
        senders, receivers, w = edges
        return jraph.GraphsTuple(nodes=None, edges=w, senders=senders, receivers=receivers, globals=None,
                                 n_node=jnp.array([n]), n_edge=jnp.array([w.shape[0]]))
    keep = ep.movable[:, None] & ep.movable[ep.nbr]
    w = jnp.where(keep, ep.w, 0.0)
    receivers = jnp.repeat(jnp.arange(n, dtype=jnp.int32), k)
    return jraph.GraphsTuple(nodes=None, edges=w.reshape(-1), senders=ep.nbr.reshape(-1), receivers=receivers,
                             globals=None, n_node=jnp.array([n]), n_edge=jnp.array([n * k]))


def region_edges(ep: dict | Episode, per_row: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(senders, receivers, weights)``: the region's edges (both ends movable), padded (NumPy).

    Padding edges have weight 0 and point at the last (padding) row, as in
    :func:`region_graph`, whose ``N·K`` slots are mostly empty: ``K`` is set by the
    largest degree (at 10⁵ Delaunay vertices 4 vertices of degree > 16 make it 32,
    the mean is 6). The list has ``per_row·N`` entries when the edges fit (every level
    of a Delaunay or 2D-grid hierarchy: a rollout's program then has no more shapes than
    its episode), else a power-of-two bucket: each new shape is one more program to load.
    """
    nbr, w, keep = _region_slots(ep)
    rows, slots = np.nonzero(keep)
    return _padded_edge_list(nbr[rows, slots], rows, w[rows, slots], nbr.shape[0], per_row * nbr.shape[0])


def _region_slots(ep: dict | Episode) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(nbr, w, keep)`` as NumPy: ``keep[i, s]`` marks the region's edges (both ends movable, weight > 0)."""
    items = ep._asdict() if isinstance(ep, Episode) else ep
    nbr, w, movable = (np.asarray(items[f]) for f in ("nbr", "w", "movable"))
    return nbr, w, movable[:, None] & movable[nbr] & (w > 0)


def _padded_edge_list(senders, receivers, weights, n: int, fit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An edge list padded to ``fit`` entries when it fits, else to a power-of-two bucket (weight 0, last row)."""
    m = len(senders)
    size = fit if m <= fit else bucket(m)
    out = (np.full(size, n - 1, np.int32), np.full(size, n - 1, np.int32), np.zeros(size, np.float32))
    out[0][:m], out[1][:m], out[2][:m] = senders, receivers, weights
    return out


def region_ell(ep: dict | Episode) -> EllGraph:
    """The region's edges (both ends movable) as an :class:`~jaxsafe.graphs.layers.EllGraph` (NumPy).

    What :func:`region_edges` lists, with each row's first ``k`` edges in dense slots
    (``k`` from :func:`~jaxsafe.graphs.batching.ell_slots`, at least 8: 8 on Delaunay regions) and
    the rest in an edge list of ``N/8`` entries when they fit (every level of a Delaunay
    hierarchy), else a power-of-two bucket. :class:`~jaxsafe.graphs.layers.SAGEConv`
    then gathers rows instead of scattering every edge: at 10⁵ Delaunay vertices
    (6,144 rows) a greedy move took 1.14 instead of 1.30 ms (loaded machine).
    """
    nbr, w, keep = _region_slots(ep)
    n = nbr.shape[0]
    counts = keep.sum(axis=1)
    k = max(ell_slots(counts), 8)  # not fewer: a sparse region then shares its bucket's shape
    rows, slots = np.nonzero(keep)  # row-major: each row's edges together, in slot order
    rank = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    dense, rest = rank < k, rank >= k
    neighbours = np.full((n, k), n - 1, np.int32)
    weights = np.zeros((n, k), np.float32)
    neighbours[rows[dense], rank[dense]] = nbr[rows[dense], slots[dense]]
    weights[rows[dense], rank[dense]] = w[rows[dense], slots[dense]]
    senders, receivers, edges = _padded_edge_list(nbr[rows[rest], slots[rest]], rows[rest], w[rows[rest], slots[rest]],
                                                  n, n // 8)
    return EllGraph(neighbours, weights, senders, receivers, edges)


# ---------------------------------------------------------------- building episodes (NumPy)
def _hops(adj: sp.csr_matrix, seeds: np.ndarray, hops: int) -> np.ndarray:
    mark = np.zeros(adj.shape[0], bool)
    mark[seeds] = True
    for _ in range(hops):
        mark = mark | (adj @ mark.astype(np.float64) > 0)
    return mark


def region_mask(adj: sp.csr_matrix, labels: np.ndarray, hops: int | None, separator: bool = False) -> np.ndarray:
    """Vertices within ``hops`` edges of the cut (endpoints of cut edges) or of the separator S; ``None``: all."""
    if hops is None:
        return np.ones(adj.shape[0], bool)
    if separator:
        seeds = np.flatnonzero(labels == SEP)
    else:
        coo = adj.tocoo()
        cross = labels[coo.row] != labels[coo.col]
        seeds = np.unique(coo.row[cross])
    if len(seeds) == 0:
        return np.zeros(adj.shape[0], bool)
    return _hops(adj, seeds, max(hops - 1, 0) if not separator else hops)


def extract_episode(adj: sp.csr_matrix, labels: np.ndarray, *, hops: int | None = 3, separator: bool = False,
                    deg: np.ndarray | None = None, vw: np.ndarray | None = None,
                    targets: tuple[float, float] = (1.0, 1.0), num_nodes: int | None = None,
                    num_slots: int | None = None, min_rows: int = 64) -> tuple[dict, np.ndarray]:
    """An :class:`Episode` (as a dict of NumPy arrays) around the cut/separator of ``labels`` on ``adj``.

    ``hops=None``: every vertex is in the region (no halo). ``deg`` (default: ``adj``'s weighted degrees) and ``vw`` (default 1) are the
    volume and size contributions; ``num_nodes``/``num_slots`` pad to given
    shapes (default: buckets of rows — 2 per octave, at least ``min_rows`` — and
    of slots — powers of two, at least 8). Returns ``(episode, sub)`` with ``sub`` the graph
    vertex of each subgraph row (region first, then halo).
    """
    adj = sp.csr_matrix(adj)
    n = adj.shape[0]
    labels = np.asarray(labels).astype(np.int64)
    deg = np.asarray(adj.sum(axis=1)).ravel() if deg is None else np.asarray(deg, np.float64)
    vw = np.ones(n) if vw is None else np.asarray(vw, np.float64)
    region = region_mask(adj, labels, hops, separator)
    halo = (adj @ region.astype(np.float64) > 0) & ~region
    sub = np.concatenate([np.flatnonzero(region), np.flatnonzero(halo)])
    m = len(sub)
    s = adj[sub][:, sub].tocsr()
    counts = np.diff(s.indptr)
    k_need = int(counts.max()) if m else 1
    # coarse buckets: few compiled shapes per hierarchy, shared by graphs of nearby sizes
    N = bucket(m + 1, min_rows, 2) if num_nodes is None else num_nodes
    K = bucket(k_need, 8) if num_slots is None else num_slots
    if m + 1 > N or k_need > K:
        raise ValueError(f"episode needs {m + 1} rows and {k_need} slots, got {N} and {K}")
    nbr = np.full((N, K), N - 1, np.int32)
    w = np.zeros((N, K), np.float32)
    rows = np.repeat(np.arange(m), counts)
    cols = np.arange(s.nnz) - np.repeat(s.indptr[:-1], counts)
    nbr[rows, cols] = s.indices
    w[rows, cols] = s.data
    pad = lambda x, dtype, fill=0: np.concatenate([np.asarray(x, dtype), np.full(N - m, fill, dtype)])  # noqa: E731
    coo = adj.tocoo()
    if separator:
        cut = 0.0
        vol = np.zeros(2)
        size = np.bincount(labels, weights=vw, minlength=3)
    else:
        cross = labels[coo.row] != labels[coo.col]
        cut = coo.data[cross].sum() / 2
        vol = np.bincount(labels, weights=deg, minlength=2)[:2]
        size = np.concatenate([np.bincount(labels, weights=vw, minlength=2)[:2], [0.0]])
    ep = dict(nbr=nbr, w=w, deg=pad(deg[sub], np.float32), vw=pad(vw[sub], np.float32),
              movable=pad(np.arange(m) < region.sum(), bool, False), real=pad(np.ones(m, bool), bool, False),
              labels0=pad(labels[sub], np.int32), cut0=np.float32(cut), vol0=vol.astype(np.float32),
              size0=size.astype(np.float32), total_vol=np.float32(deg.sum()), total_size=np.float32(vw.sum()),
              targets=np.asarray(targets, np.float32))
    return ep, sub


def coarsest_episode(adj: sp.csr_matrix, start: int, **kw) -> dict:
    """The coarsest-graph episode: the whole graph movable, every vertex in A except ``start`` (in B).

    ``kw`` go to :func:`extract_episode` (``deg``, ``vw``, ``targets``, padding);
    rows are the graph's vertices in order.
    """
    labels = (np.arange(adj.shape[0]) == start).astype(np.int64)
    return extract_episode(adj, labels, hops=None, **kw)[0]


def to_jax(ep: dict | Episode) -> Episode:
    """An :class:`Episode` of device arrays from a dict (or Episode) of NumPy arrays.

    ``device_put``, not ``jnp.asarray``: the latter compiles a small program per
    array shape, which a fresh process pays for every padded episode shape.
    """
    items = ep._asdict() if isinstance(ep, Episode) else ep
    return Episode(**jax.device_put({f: items[f] for f in Episode._fields}))


def stack_episodes(eps: list[dict], num_nodes: int | None = None, num_slots: int | None = None) -> Episode:
    """Pad dict episodes to common ``(N, K)`` (default: the largest) and stack them."""
    N = max(e["nbr"].shape[0] for e in eps) if num_nodes is None else num_nodes
    K = max(e["nbr"].shape[1] for e in eps) if num_slots is None else num_slots
    out = [repad(e, N, K) for e in eps]
    return Episode(**{f: np.stack([e[f] for e in out]) for f in Episode._fields})


def repad(ep: dict, N: int, K: int) -> dict:
    """The same episode with ``N`` rows and ``K`` slots (padding vertex moved to the new last row)."""
    n0, k0 = ep["nbr"].shape
    if (n0, k0) == (N, K):
        return ep
    if N < n0 or K < k0:
        raise ValueError("cannot shrink an episode")
    nbr = np.full((N, K), N - 1, np.int32)
    old = ep["nbr"]
    nbr[:n0, :k0] = np.where(old == n0 - 1, N - 1, old)
    w = np.zeros((N, K), np.float32)
    w[:n0, :k0] = ep["w"]
    out = dict(ep, nbr=nbr, w=w)
    for f, fill in (("deg", 0), ("vw", 0), ("movable", False), ("real", False), ("labels0", 0)):
        a = ep[f]
        out[f] = np.concatenate([a, np.full(N - n0, fill, a.dtype)])
    return out


def scatter_back(labels: np.ndarray, sub: np.ndarray, sub_labels: np.ndarray) -> np.ndarray:
    """Write an episode's labels (rows ``0..len(sub)-1``) back onto the whole graph's labels."""
    out = np.asarray(labels).copy()
    out[sub] = np.asarray(sub_labels)[: len(sub)]
    return out
