"""Multilevel hierarchy: heavy-edge matching, contraction, interpolation.

Shared by both graph papers (spec: graph_partitioning.md). One coarsening level:

1. **Heavy-edge matching (HEM).** Vertices are visited in a random order; an
   unmatched vertex ``u`` is matched with the unmatched neighbour ``v`` of
   heaviest edge weight ``w_uv`` (ties: the lighter vertex, which keeps coarse
   vertex weights even), provided ``vw_u + vw_v`` stays under a cap so that no
   coarse vertex swallows a large share of the graph. Unlike the authors'
   code (an unweighted random matching that drops weights) this uses both edge
   and vertex weights.
2. **Contraction.** Each matched pair (or unmatched vertex) becomes one coarse
   vertex; vertex weights add up, parallel edges add up, the edge inside a pair
   disappears (it can never be cut at coarser levels). Hence for every coarse
   partition, its cut equals the cut of its interpolation on the fine graph.
3. **Interpolation.** A fine vertex takes the value of the coarse vertex it was
   merged into: ``x_fine = x_coarse[cmap]``. Restriction (used by the V-cycle
   going down) is the mean over the merged vertices.

The combinatorial kernels are compiled loops (numba): a Python loop per vertex
is far too slow for 10⁶ vertices and numpy-vectorized handshake matchings stall.

Stopping rule (spec "Coarsest level"): stop when the graph has at most
``coarsest_size`` vertices, when one round shrinks it by less than
``1 - stall_ratio`` (matching stalls on star-like parts and on graphs with many
components, since HEM never merges across components), or after ``max_levels``.
The coarsest graph can therefore have any size ≥ 1; the GNN starts there from
the exact low eigenvectors of that small graph (see ``embedding.py``).
"""

from __future__ import annotations

import dataclasses

import numba
import numpy as np
import scipy.sparse as sp


@dataclasses.dataclass(frozen=True)
class Level:
    """One level: its adjacency, vertex weights and the map to the next coarser level."""

    adj: sp.csr_matrix
    vweights: np.ndarray
    cmap: np.ndarray | None  # fine vertex -> coarse vertex of the next level; None at the coarsest

    @property
    def n(self) -> int:
        return self.adj.shape[0]


@dataclasses.dataclass(frozen=True)
class Hierarchy:
    """Levels from the input graph (``levels[0]``) to the coarsest (``levels[-1]``)."""

    levels: tuple[Level, ...]

    @property
    def depth(self) -> int:
        return len(self.levels)

    @property
    def coarsest(self) -> Level:
        return self.levels[-1]

    def interpolate_to_finest(self, x: np.ndarray, start: int | None = None) -> np.ndarray:
        """Carry values from level ``start`` (default: the coarsest) down to level 0."""
        start = self.depth - 1 if start is None else start
        for level in reversed(self.levels[:start]):
            x = x[level.cmap]
        return x


@numba.njit(cache=True)
def _heavy_edge_matching(indptr, indices, data, vw, order, max_vw):
    n = indptr.shape[0] - 1
    match = np.full(n, -1, dtype=np.int64)
    for u in order:
        if match[u] >= 0:
            continue
        best, best_w, best_vw = -1, -1.0, np.inf
        for k in range(indptr[u], indptr[u + 1]):
            v = indices[k]
            if v == u or match[v] >= 0 or vw[u] + vw[v] > max_vw:
                continue
            w = data[k]
            if w > best_w or (w == best_w and vw[v] < best_vw):
                best, best_w, best_vw = v, w, vw[v]
        if best >= 0:
            match[u] = best
            match[best] = u
        else:
            match[u] = u
    cmap = np.empty(n, dtype=np.int64)
    nc = 0
    for u in range(n):
        if match[u] >= u:  # u is the representative of its pair (or a singleton)
            cmap[u] = nc
            cmap[match[u]] = nc
            nc += 1
    return match, cmap, nc


@numba.njit(cache=True)
def _contract(indptr, indices, data, match, cmap, nc):
    n = indptr.shape[0] - 1
    reps = np.empty(nc, dtype=np.int64)
    for u in range(n):
        if match[u] >= u:
            reps[cmap[u]] = u
    cindptr = np.zeros(nc + 1, dtype=np.int64)
    cind = np.empty(indices.shape[0], dtype=np.int64)
    cdat = np.empty(indices.shape[0], dtype=np.float64)
    marker = np.full(nc, -1, dtype=np.int64)  # slot of coarse neighbour in the current row
    pos = 0
    for c in range(nc):
        start = pos
        u = reps[c]
        for t in range(2):
            x = u if t == 0 else match[u]
            if t == 1 and x == u:
                break
            for k in range(indptr[x], indptr[x + 1]):
                cv = cmap[indices[k]]
                if cv == c:
                    continue
                m = marker[cv]
                if m >= start:
                    cdat[m] += data[k]
                else:
                    marker[cv] = pos
                    cind[pos] = cv
                    cdat[pos] = data[k]
                    pos += 1
        cindptr[c + 1] = pos
    return cindptr, cind[:pos], cdat[:pos]


def heavy_edge_matching(adj: sp.csr_matrix, vweights: np.ndarray, rng: np.random.Generator,
                        max_vweight: float = np.inf) -> tuple[np.ndarray, np.ndarray, int]:
    """One HEM round. Returns ``(match, cmap, n_coarse)``; ``match[u] == u`` for unmatched ``u``."""
    order = rng.permutation(adj.shape[0]).astype(np.int64)
    return _heavy_edge_matching(adj.indptr.astype(np.int64), adj.indices.astype(np.int64),
                                adj.data.astype(np.float64), vweights.astype(np.float64), order, float(max_vweight))


def contract(adj: sp.csr_matrix, vweights: np.ndarray, match: np.ndarray, cmap: np.ndarray,
             n_coarse: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """Contract matched pairs: sum vertex weights and parallel edge weights, drop pair-internal edges."""
    indptr, ind, dat = _contract(adj.indptr.astype(np.int64), adj.indices.astype(np.int64),
                                 adj.data.astype(np.float64), match, cmap, n_coarse)
    coarse = sp.csr_matrix((dat, ind, indptr), shape=(n_coarse, n_coarse))
    return coarse, np.bincount(cmap, weights=vweights, minlength=n_coarse)


def build_hierarchy(adj: sp.csr_matrix, vweights: np.ndarray | None = None, *, coarsest_size: int = 16,
                    stall_ratio: float = 0.95, max_levels: int = 40, seed: int = 0) -> Hierarchy:
    """Coarsen ``adj`` by repeated HEM until the stopping rule in the module docstring fires.

    The vertex weight cap is 1.5·W/coarsest_size (W the total vertex weight),
    so coarse vertices stay comparable in weight, as METIS does.
    """
    rng = np.random.default_rng(seed)
    vw = np.ones(adj.shape[0]) if vweights is None else np.asarray(vweights, np.float64)
    cap = 1.5 * vw.sum() / coarsest_size
    levels = []
    while len(levels) < max_levels - 1 and adj.shape[0] > coarsest_size:
        match, cmap, nc = heavy_edge_matching(adj, vw, rng, cap)
        if nc > stall_ratio * adj.shape[0]:
            break
        levels.append(Level(adj, vw, cmap))
        adj, vw = contract(adj, vw, match, cmap, nc)
    levels.append(Level(adj, vw, None))
    return Hierarchy(tuple(levels))

