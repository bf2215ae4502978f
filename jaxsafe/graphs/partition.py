"""Bisection, refinement, k-way partitioning and partition metrics.

Methods (one interface): ``gnn`` (paper A's trained modules), ``metis``,
``spectral`` (see ``baselines.py``) and the optional ``scotch``
(``scotch.py``); METIS and Scotch return parts directly, without refinement.
Refinements of a score vector (GNN: the probability ``y₁``; spectral: the
Fiedler vector):

* ``none`` — GNN only: ``argmax`` of the probabilities (the network alone).
* ``sweep`` — sort vertices by the score and take the prefix split of minimum
  (target-weighted) normalized cut; O(m log n).
* ``fm`` — the sweep, then greedy boundary passes: a boundary vertex moves to
  the other side when that lowers the normalized cut (exact NC change; only
  improving moves, no hill-climbing or rollback, so this is FM-style, not full
  Fiduccia–Mattheyses).

The objective for a split into sides that will later hold ``k₀`` and ``k₁``
parts (recursive k-way) is ``cut·((k₀/k₁)/vol A + (k₁/k₀)/vol B)``: for
``k₀ = k₁`` the normalized cut ``cut·(1/vol A + 1/vol B)``, and for a fixed cut
its minimum is at ``vol A : vol B = k₀ : k₁``.

Defined behaviour on awkward graphs:

* n = 1: one part (``[0]``); metrics report ``normalized_cut``/``balance`` as None.
* Tiny or dense graphs (K4, stars): a METIS/Scotch bisection that leaves a side
  empty is replaced by the spectral sweep; a k-way METIS/Scotch answer with empty
  parts (k near n) by recursive bisection; a bisection leaving a side fewer
  vertices than the parts it must hold moves the nearest vertices over. Every
  one of the ``k`` parts is non-empty whenever ``k <= n``.
* Disconnected graphs (components first): the components are packed whole onto
  the two sides, largest first, each onto the side lighter relative to its
  target (cut 0, NC 0). That is returned when its volume balance is at most
  ``MAX_COMPONENT_IMBALANCE``; otherwise the largest component is bisected by
  the method and the other components are packed onto the lighter side.
  Isolated vertices are components of volume 0.
"""

from __future__ import annotations

import time

import numba
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from jaxsafe.errors import UserError
from jaxsafe.graphs.baselines import fiedler_vector, metis_parts
from jaxsafe.graphs.scotch import scotch_parts

METHODS = ("gnn", "metis", "spectral", "scotch")
# partitioners that return k parts directly: (adj, k, seed) -> parts
DIRECT = {"metis": metis_parts, "scotch": scotch_parts}
REFINEMENTS = ("none", "sweep", "fm")
MAX_COMPONENT_IMBALANCE = 1.5


def evaluate(adj: sp.csr_matrix, parts: np.ndarray) -> dict:
    """cut, k-way normalized cut ``Σ_k cut(P_k)/vol(P_k)``, balance ``max vol / min vol``, part count.

    For two parts the normalized cut is ``cut·(1/vol A + 1/vol B)``. With an
    empty (zero-volume) part the normalized cut and balance are None.
    """
    parts = np.asarray(parts)
    k = int(parts.max()) + 1 if len(parts) else 0
    coo = adj.tocoo()
    cross = parts[coo.row] != parts[coo.col]
    deg = np.asarray(adj.sum(axis=1)).ravel()
    vol = np.bincount(parts, weights=deg, minlength=k)
    cut_k = np.bincount(parts[coo.row[cross]], weights=coo.data[cross], minlength=k)
    ok = k >= 2 and vol.min() > 0
    return {
        "n": int(adj.shape[0]),
        "parts": int(len(np.unique(parts))),  # the ids present in the file, never a count with empty parts
        "cut": float(coo.data[cross].sum() / 2),
        "normalized_cut": float(np.sum(cut_k / vol)) if ok else None,
        "balance": float(vol.max() / vol.min()) if ok else None,
    }


COMPILED_COMPONENTS_FROM = 100_000  # vertices; below, scipy's labelling (no numba start-up cost)


def components(adj: sp.csr_matrix) -> tuple[int, np.ndarray]:
    """Connected components of a symmetric CSR graph: ``(count, label per vertex)``.

    Labels are numbered by the lowest vertex of each component (as scipy's
    ``connected_components``). From ``COMPILED_COMPONENTS_FROM`` vertices a
    compiled breadth-first labelling: 0.2 vs 0.5 s at 10⁶ Delaunay vertices,
    where scipy's took ~10 % of a whole GNN bisection. Below, scipy's: the
    first numba call of a process costs ~0.25 s, which a METIS bisection of a
    small graph would otherwise pay.
    """
    if adj.shape[0] < COMPILED_COMPONENTS_FROM:
        count, labels = connected_components(adj, directed=False)
        return int(count), labels.astype(np.int64)
    labels = np.full(adj.shape[0], -1, np.int64)
    count = _label_components(adj.indptr, adj.indices, labels)
    return count, labels


def largest_component(adj: sp.csr_matrix) -> sp.csr_matrix:
    """The subgraph induced by the largest connected component of ``adj`` (``adj`` itself when connected)."""
    ncomp, labels = components(adj)
    if ncomp == 1:
        return adj
    keep = np.flatnonzero(labels == np.argmax(np.bincount(labels)))
    return adj[keep][:, keep].tocsr()


def _timed_components(adj: sp.csr_matrix, seconds: dict) -> tuple[int, np.ndarray]:
    t0 = time.perf_counter()
    out = components(adj)
    seconds["components"] = seconds.get("components", 0.0) + time.perf_counter() - t0
    return out


@numba.njit(cache=True)
def _label_components(indptr, indices, labels):
    queue = np.empty(labels.shape[0], np.int64)
    count = 0
    for root in range(labels.shape[0]):
        if labels[root] >= 0:
            continue
        labels[root] = count
        head, tail = 0, 1
        queue[0] = root
        while head < tail:
            v = queue[head]
            head += 1
            for e in range(indptr[v], indptr[v + 1]):
                w = indices[e]
                if labels[w] < 0:
                    labels[w] = count
                    queue[tail] = w
                    tail += 1
        count += 1
    return count


def _target_weights(targets: tuple[int, int]) -> tuple[float, float]:
    return targets[0] / targets[1], targets[1] / targets[0]


def sweep_cut(adj: sp.csr_matrix, score: np.ndarray, targets: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Best prefix split of the vertices sorted by ``score`` (vectorized, O(m + n log n)).

    The cut of the prefix of length k is the weight of edges whose endpoints'
    positions ``a < b`` satisfy ``a < k ≤ b``: a difference array over positions.
    """
    n = adj.shape[0]
    order = np.argsort(score, kind="stable")
    pos = np.empty(n, np.int64)
    pos[order] = np.arange(n)
    coo = sp.triu(adj, k=1).tocoo()
    a, b = np.minimum(pos[coo.row], pos[coo.col]), np.maximum(pos[coo.row], pos[coo.col])
    diff = np.bincount(a + 1, coo.data, minlength=n + 1) - np.bincount(b + 1, coo.data, minlength=n + 1)
    cut = np.cumsum(diff)[1:n]  # prefix lengths 1..n-1
    deg = np.asarray(adj.sum(axis=1)).ravel()
    vol_a = np.cumsum(deg[order])[: n - 1]
    vol_b = deg.sum() - vol_a
    w0, w1 = _target_weights(targets)
    with np.errstate(divide="ignore", invalid="ignore"):
        obj = cut * (w0 / vol_a + w1 / vol_b)
    obj[(vol_a <= 0) | (vol_b <= 0)] = np.inf
    k = int(np.argmin(obj)) + 1
    parts = np.ones(n, np.int64)
    parts[order[:k]] = 0
    return parts


@numba.njit(cache=True)
def _boundary_passes(indptr, indices, data, deg, parts, t0, t1, max_passes):
    n = indptr.shape[0] - 1
    vol = np.zeros(2)
    cut = 0.0
    for v in range(n):
        vol[parts[v]] += deg[v]
        for k in range(indptr[v], indptr[v + 1]):
            if parts[indices[k]] != parts[v]:
                cut += data[k]
    cut /= 2
    for _ in range(max_passes):
        moved = 0
        for v in range(n):
            side = parts[v]
            inside, outside = 0.0, 0.0
            for k in range(indptr[v], indptr[v + 1]):
                if parts[indices[k]] == side:
                    inside += data[k]
                else:
                    outside += data[k]
            if outside == 0.0:
                continue
            new_cut = cut - outside + inside
            new_vs, new_vo = vol[side] - deg[v], vol[1 - side] + deg[v]
            if new_vs <= 0:
                continue
            ts, to = (t0, t1) if side == 0 else (t1, t0)
            if new_cut * (ts / new_vs + to / new_vo) < cut * (ts / vol[side] + to / vol[1 - side]) - 1e-12:
                parts[v] = 1 - side
                cut, vol[side], vol[1 - side] = new_cut, new_vs, new_vo
                moved += 1
        if moved == 0:
            break
    return parts


def boundary_refine(adj: sp.csr_matrix, parts: np.ndarray, targets: tuple[int, int] = (1, 1),
                    max_passes: int = 10) -> np.ndarray:
    """Greedy boundary passes lowering the (target-weighted) normalized cut; see module docstring."""
    deg = np.asarray(adj.sum(axis=1)).ravel()
    return _boundary_passes(adj.indptr.astype(np.int64), adj.indices.astype(np.int64), adj.data.astype(np.float64),
                            deg, parts.astype(np.int64).copy(), *_target_weights(targets), max_passes)


def _bisect_connected(adj, method, refine, model, seed, targets, seconds, solver):
    if adj.shape[0] <= 2:
        return np.arange(adj.shape[0], dtype=np.int64) % 2
    t0 = time.perf_counter()
    if method in DIRECT:
        parts = DIRECT[method](adj, 2, seed)
        if np.bincount(parts, minlength=2).min() == 0:  # METIS leaves a side empty on tiny dense graphs (K4, stars)
            parts = sweep_cut(adj, fiedler_vector(adj, solver, seed=seed), targets)
    elif method == "spectral":
        score = fiedler_vector(adj, solver, seed=seed)
        seconds["eigensolver"] = seconds.get("eigensolver", 0.0) + time.perf_counter() - t0
        t0 = time.perf_counter()
        parts = sweep_cut(adj, score, targets)
    else:
        _, y, net = model.predict(adj, seed)
        for key, val in net.items():
            seconds[key] = seconds.get(key, 0.0) + val
        t0 = time.perf_counter()
        parts = np.argmax(y, axis=1).astype(np.int64) if refine == "none" else sweep_cut(adj, y[:, 1], targets)
    if refine == "fm" and method not in DIRECT:
        parts = boundary_refine(adj, parts, targets)
    key = method if method in DIRECT else "refinement"
    seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - t0
    return parts


def bisect(adj: sp.csr_matrix, method: str = "gnn", *, refine: str = "sweep", model=None, seed: int = 0,
           targets: tuple[int, int] = (1, 1), seconds: dict | None = None, solver: str = "auto") -> np.ndarray:
    """Two-way partition (0/1 per vertex) of any graph; components handled as the module docstring says.

    ``solver``: the spectral method's eigensolver (see :func:`~jaxsafe.graphs.baselines.fiedler_vector`).

    ``seconds`` (if given) accumulates the time breakdown: ``components``,
    ``hierarchy``, ``network``, ``refinement`` (gnn), ``eigensolver``/``refinement``
    (spectral), ``metis``, ``scotch``.
    """
    if method not in METHODS:
        raise UserError(f"unknown method '{method}' (choose from {', '.join(METHODS)})")
    if refine not in REFINEMENTS:
        raise UserError(f"unknown refinement '{refine}' (choose from {', '.join(REFINEMENTS)})")
    if method == "gnn" and model is None:
        from jaxsafe.graphs.gnn import GNNBisector

        model = GNNBisector.load()
    seconds = {} if seconds is None else seconds
    n = adj.shape[0]
    if n == 0:
        raise UserError("graph has no vertices")
    ncomp, labels = _timed_components(adj, seconds)
    if ncomp == 1:
        return _bisect_connected(adj, method, refine, model, seed, targets, seconds, solver)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    comp_vol = np.bincount(labels, weights=deg, minlength=ncomp)
    comp_size = np.bincount(labels, minlength=ncomp)
    side = _pack(comp_vol, comp_size, targets, np.zeros(2), np.zeros(2))
    vol = np.bincount(side, weights=comp_vol, minlength=2)
    rel = vol / np.asarray(targets, float)
    if rel.min() > 0 and rel.max() / rel.min() <= MAX_COMPONENT_IMBALANCE:
        return side[labels].astype(np.int64)
    big = int(np.argmax(comp_vol))
    idx = np.flatnonzero(labels == big)
    parts = np.empty(n, np.int64)
    parts[idx] = _bisect_connected(adj[idx][:, idx], method, refine, model, seed, targets, seconds, solver)
    start_vol = np.bincount(parts[idx], weights=deg[idx], minlength=2)
    start_size = np.bincount(parts[idx], minlength=2).astype(float)
    others = np.flatnonzero(np.arange(ncomp) != big)
    comp_side = np.zeros(ncomp, np.int64)
    comp_side[others] = _pack(comp_vol[others], comp_size[others], targets, start_vol, start_size)
    rest = labels != big
    parts[rest] = comp_side[labels[rest]]
    return parts


def _pack(vols, sizes, targets, start_vol, start_size) -> np.ndarray:
    """Greedy: largest component first onto the side lighter relative to its target (ties: fewer vertices)."""
    vol, size = start_vol.astype(float).copy(), start_size.astype(float).copy()
    t = np.asarray(targets, float)
    side = np.zeros(len(vols), np.int64)
    for c in np.lexsort((-sizes, -vols)):
        s = int(np.lexsort((size / t, vol / t))[0])
        side[c] = s
        vol[s] += vols[c]
        size[s] += sizes[c]
    return side


def partition(adj: sp.csr_matrix, k: int = 2, method: str = "gnn", *, refine: str = "sweep", model=None,
              seed: int = 0, seconds: dict | None = None, solver: str = "auto") -> np.ndarray:
    """k-way partition: METIS and Scotch k-way directly; gnn and spectral by recursive bisection.

    A part that must later hold ``k`` parts is split with targets
    ``(⌊k/2⌋, ⌈k/2⌉)`` so that volumes follow the number of parts each side gets.
    """
    if k < 1:
        raise UserError(f"k (--parts) must be at least 1, got {k}")
    n = adj.shape[0]
    if n == 0:
        raise UserError("graph has no vertices")
    if k > n:
        raise UserError(f"cannot split {n} vertices into {k} non-empty parts")
    if k == 1:
        return np.zeros(n, np.int64)
    seconds = {} if seconds is None else seconds
    if method in DIRECT and k > 2 and _timed_components(adj, seconds)[0] == 1:
        t0 = time.perf_counter()
        parts = DIRECT[method](adj, k, seed)
        seconds[method] = time.perf_counter() - t0
        if len(np.unique(parts)) == k:
            return parts
        # k-way METIS/Scotch leave parts empty when k is near n: recursive bisection fills every part
    k0 = k // 2
    sides = bisect(adj, method, refine=refine, model=model, seed=seed, targets=(k0, k - k0), seconds=seconds,
                   solver=solver)
    sides = _ensure_sizes(adj, sides, (k0, k - k0))
    parts = np.empty(n, np.int64)
    offset = 0
    for s, ks in ((0, k0), (1, k - k0)):
        idx = np.flatnonzero(sides == s)
        parts[idx] = offset + partition(adj[idx][:, idx], ks, method, refine=refine, model=model, seed=seed,
                                        seconds=seconds, solver=solver)
        offset += ks
    return parts


def _ensure_sizes(adj: sp.csr_matrix, sides: np.ndarray, need: tuple[int, int]) -> np.ndarray:
    """Move vertices to a side holding fewer vertices than the parts it must be split into.

    Vertices move nearest-first (breadth-first from the short side; other components
    after), so the short side grows along the cut. Needs ``n >= sum(need)``.
    """
    from scipy.sparse.csgraph import breadth_first_order

    sides = sides.astype(np.int64).copy()
    for short in (0, 1):
        deficit = need[short] - int(np.sum(sides == short))
        if deficit <= 0:
            continue
        seeds = np.flatnonzero(sides == short)
        order: list[int] = []
        if len(seeds):
            # one virtual source joined to the short side: BFS distance to it
            n = adj.shape[0]
            link = sp.csr_matrix((np.ones(len(seeds)), (np.full(len(seeds), n), seeds)), shape=(n + 1, n + 1))
            graph = sp.bmat([[adj, None], [None, sp.csr_matrix((1, 1))]], format="csr") + link + link.T
            order = [int(v) for v in breadth_first_order(graph, n, directed=False, return_predecessors=False) if v < n]
        seen = set(order)
        order += [v for v in range(adj.shape[0]) if v not in seen]
        movable = [v for v in order if sides[v] != short]
        sides[movable[:deficit]] = short
    return sides
