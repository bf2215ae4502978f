"""Sparse matrix ordering (paper B's evaluation): fill-in, vertex separators, nested dissection, baselines.

The deterministic parts that paper B's RL agents plug into (spec
``graph_partitioning.md``, "Paper B", "Measuring fill-in with SciPy's SuperLU",
"Baselines available here"). An ordering is a permutation ``perm`` of the
vertices: ``perm[k]`` is the vertex eliminated ``k``-th, i.e. the matrix is
permuted symmetrically as ``M[perm][:, perm]`` (METIS's ``perm``, Scotch's
``peritab``; the inverse — METIS's ``iperm`` — is the position of each vertex).

* :func:`fill_in` — ``nnz(L) + nnz(U)`` of SuperLU on ``M = L_graph + I`` (the
  pattern's Laplacian plus the identity: diagonally dominant, so no pivoting is
  needed) permuted by ``perm``, counted structurally; ``engine="symbolic"``
  gives the same number from an elimination-tree count, without values.
* :func:`vertex_separator_from_bisection` — a minimum vertex cover of the cut
  edges of a bisection (König's theorem), so that no edge joins the two sides.
* :func:`separator` — bisection by any :mod:`jaxsafe.graphs.partition` method,
  then that cover.
* :func:`nested_dissection` — the spec's recursion with any separator function
  (the hook for an RL separator agent).
* :func:`order` — every ordering behind one name: ``natural``, ``metis``
  (METIS NodeND), ``scotch`` (``SCOTCH_graphOrder``), ``colamd`` and ``mmd``
  (SuperLU's own column orderings), and our nested dissection with separators
  from GNN, METIS or spectral bisections.

Orderings depend on the pattern only: edge weights are ignored throughout, and
every function first reduces its input to the symmetric pattern without the
diagonal (:func:`pattern`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numba
import numpy as np
import pymetis
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.sparse.csgraph import breadth_first_order, maximum_bipartite_matching

from jaxsafe.errors import UserError
from jaxsafe.graphs.partition import METHODS, bisect, components
from jaxsafe.graphs.scotch import scotch_order

ENGINES = ("superlu", "symbolic")
# The adaptive rule leaves blocks above this size dissected: on Delaunay n = 10⁵ (seed 1)
# MMD won no such block, and skipping them took a third off the adaptive step.
ADAPTIVE_MAX_VERTICES = 10_000
LEAF_SIZE = 100  # spec: subgraphs with fewer vertices are ordered by minimum degree
ND_SEPARATORS = {"nd-gnn": "gnn", "nd-metis-bisect": "metis", "nd-spectral": "spectral"}
ORDERINGS = ("natural", "metis", "scotch", "colamd", "mmd", *ND_SEPARATORS, "nd-rl")
_SUPERLU_ORDERINGS = {"colamd": "COLAMD", "mmd": "MMD_AT_PLUS_A"}
A_SIDE, B_SIDE, SEPARATOR = 0, 1, 2


def pattern(adj: sp.spmatrix | np.ndarray) -> sp.csr_matrix:
    """Symmetric 0/1 pattern of ``adj`` without the diagonal (float64 CSR, sorted indices)."""
    a = sp.csr_matrix(adj)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise UserError(f"adjacency must be square, got shape {a.shape}")
    coo = a.tocoo()
    keep = (coo.row != coo.col) & (coo.data != 0)
    i, j = coo.row[keep], coo.col[keep]
    p = sp.csr_matrix((np.ones(2 * len(i)), (np.concatenate([i, j]), np.concatenate([j, i]))), shape=a.shape)
    p.data[:] = 1.0  # duplicates were summed
    p.sort_indices()
    return p


def check_permutation(perm, n: int) -> np.ndarray:
    """``perm`` as int64 after checking that it is a permutation of ``0..n-1`` (UserError otherwise)."""
    p = np.asarray(perm)
    if p.shape != (n,):
        raise UserError(f"ordering must have shape ({n},), got {p.shape}")
    if n and p.dtype.kind not in "iu":
        raise UserError(f"ordering must hold integers, got dtype {p.dtype}")
    p = p.astype(np.int64)
    if n and (p.min() < 0 or p.max() >= n):
        bad = int(p[(p < 0) | (p >= n)][0])
        raise UserError(f"ordering holds vertex {bad}, outside 0..{n - 1}")
    counts = np.bincount(p, minlength=n)
    if n and counts.max() > 1:
        raise UserError(f"ordering is not a permutation: vertex {int(np.argmax(counts > 1))} appears "
                        f"{int(counts.max())} times")
    return p


def fill_matrix(adj) -> sp.csc_matrix:
    """``M = L + I`` of the pattern: ``deg + 1`` on the diagonal, ``−1`` per edge (spec's fill-in recipe)."""
    p = pattern(adj)
    deg = np.asarray(p.sum(axis=1)).ravel()
    return (sp.diags(deg + 1.0) - p).tocsc()


def fill_in(adj, perm, *, engine: str = "superlu") -> int:
    """``nnz(L) + nnz(U)`` of the LU factorization of ``M[perm][:, perm]``, ``M = L_graph + I``, counted structurally.

    ``engine="superlu"`` (default) is the spec's recipe: ``splu(M_p,
    permc_spec="NATURAL", diag_pivot_thresh=0, options={"SymmetricMode": True})``;
    ``perm_r`` and ``perm_c`` must come back as the identity (RuntimeError
    otherwise; ``M`` is diagonally dominant, so it does not happen).

    Why the count is structural: ``lu.L.nnz + lu.U.nnz`` is *not* — SciPy's
    conversion of the factors to CSC drops every entry whose value is exactly 0
    (``LU_to_csc`` in ``_superluobject.c``), so an underflowed fill entry would
    vanish from the count (entries of ``L_graph + I`` factors decay roughly like
    ``e^{-distance}``; cancellation cannot happen here: ``M`` is an M-matrix, all
    off-diagonal updates have one sign). We count ``lu.nnz`` instead, SuperLU's
    own ``nnz(L) + nnz(U)`` from its symbolic factorization (``countnz``: both
    factors with their diagonals), which never looks at values. For it to be
    exact, ``Relax=1`` turns off relaxed supernodes, which pad small
    elimination subtrees with explicit zeros (default relaxation counted 95,352
    instead of 95,196 on the spec's Delaunay n = 3,000 METIS order); relaxation
    changes storage only, not pivoting. Tests check ``lu.nnz`` against a dense
    symbolic elimination and against ``engine="symbolic"``, and that it counts
    entries that are numerically zero.

    ``engine="symbolic"``: the same number from the elimination tree and the row
    subtrees of the Cholesky factor (``2·|L_chol|``: the pattern is symmetric and
    no pivoting happens), O(|L|) time and O(n) memory — for orderings whose
    numeric factorization is too slow (natural order at n ≥ 10⁴) and for
    repeated rewards.
    """
    if engine not in ENGINES:
        raise UserError(f"unknown fill-in engine '{engine}' (choose from {', '.join(ENGINES)})")
    p = pattern(adj)
    n = p.shape[0]
    perm = check_permutation(perm, n)
    if n == 0:
        return 0
    if engine == "symbolic":
        inv = np.empty(n, np.int64)
        inv[perm] = np.arange(n)
        return 2 * (n + int(_strict_lower_count(p.indptr.astype(np.int64), p.indices.astype(np.int64), perm, inv)))
    lu = spla.splu(fill_matrix(p)[perm][:, perm].tocsc(), permc_spec="NATURAL", diag_pivot_thresh=0.0,
                   options={"SymmetricMode": True, "Relax": 1})
    ident = np.arange(n)
    if not (np.array_equal(lu.perm_r, ident) and np.array_equal(lu.perm_c, ident)):
        raise RuntimeError("SuperLU permuted rows or columns of a diagonally dominant matrix (expected identity)")
    return int(lu.nnz)


@numba.njit(cache=True)
def _strict_lower_count(indptr, indices, perm, inv):
    """Off-diagonal entries of the Cholesky factor of the pattern permuted by ``perm``.

    Row ``i`` of ``L`` is the union of the elimination-tree paths from each
    ``j < i`` adjacent to ``i`` up to ``i`` (its row subtree). The tree is built
    row by row (Liu's algorithm, path compression through ``ancestor``) before
    the row's paths are walked, so every parent the walk needs is known.
    """
    n = perm.shape[0]
    parent = np.full(n, -1, np.int64)
    ancestor = np.full(n, -1, np.int64)
    mark = np.full(n, -1, np.int64)
    count = 0
    for i in range(n):
        v = perm[i]
        for k in range(indptr[v], indptr[v + 1]):
            r = inv[indices[k]]
            if r >= i:
                continue
            while ancestor[r] != -1 and ancestor[r] != i:
                nxt = ancestor[r]
                ancestor[r] = i
                r = nxt
            if ancestor[r] == -1:
                ancestor[r] = i
                parent[r] = i
        mark[i] = i
        for k in range(indptr[v], indptr[v + 1]):
            x = inv[indices[k]]
            if x >= i:
                continue
            while mark[x] != i:
                mark[x] = i
                count += 1
                x = parent[x]
    return count


def _superlu_order(p: sp.csr_matrix, permc_spec: str) -> np.ndarray:
    """SuperLU's column ordering of ``L + I`` as an elimination order.

    SciPy exposes ``perm_c`` only through a factorization: ``lu.perm_c[v]`` is
    the new position of column ``v`` (after SuperLU's etree postorder), so the
    order is its inverse. With this symmetric permutation :func:`fill_in`
    equals the fill of SuperLU's own factorization with that ``permc_spec``
    (tested).
    """
    if p.shape[0] <= 1:
        return np.arange(p.shape[0], dtype=np.int64)
    lu = spla.splu(fill_matrix(p), permc_spec=permc_spec, diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    return np.argsort(lu.perm_c).astype(np.int64)


def minimum_degree(adj) -> np.ndarray:
    """Minimum-degree elimination order: SuperLU's ``MMD_AT_PLUS_A`` (multiple minimum degree on ``A + Aᵀ``).

    The spec's leaf ordering (paper B uses AMD; SciPy ships MMD, not AMD). The
    same order as ``order(adj, "mmd")`` (tested), obtained through an incomplete
    factorization that drops every fill entry: SciPy returns SuperLU's ``perm_c``
    only with a factorization, and the complete one costs about half the time at
    n = 10⁵.
    """
    return _minimum_degree_of_pattern(pattern(adj))


def _minimum_degree_of_pattern(p: sp.csr_matrix) -> np.ndarray:
    if p.shape[0] <= 1:
        return np.arange(p.shape[0], dtype=np.int64)
    deg = np.diff(p.indptr).astype(np.float64)
    m = (sp.diags(deg + 1.0) - p).tocsc()
    lu = spla.spilu(m, drop_tol=np.inf, fill_factor=1, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                    options={"SymmetricMode": True})
    return np.argsort(lu.perm_c).astype(np.int64)


def _symbolic_fill_of_pattern(p: sp.csr_matrix, perm: np.ndarray) -> int:
    """``fill_in(p, perm, engine="symbolic")`` for a pattern and a valid permutation (no checks, no copies)."""
    n = p.shape[0]
    inv = np.empty(n, np.int64)
    inv[perm] = np.arange(n)
    return 2 * (n + int(_strict_lower_count(p.indptr.astype(np.int64), p.indices.astype(np.int64), perm, inv)))


def vertex_separator_from_bisection(adj, parts) -> np.ndarray:
    """Labels 0 = A, 1 = B, 2 = S from a 0/1 bisection: S is a minimum vertex cover of the cut edges.

    The cut edges form a bipartite graph between the A-side and B-side
    endpoints; König's theorem turns a maximum matching (Hopcroft–Karp,
    ``scipy.sparse.csgraph.maximum_bipartite_matching``) into a minimum vertex
    cover: with ``Z`` the vertices reachable from unmatched A endpoints by
    alternating paths (any edge A→B, matching edges B→A), the cover is
    ``(A endpoints ∖ Z) ∪ (B endpoints ∩ Z)``, one vertex per matching edge.
    Every cut edge has an endpoint in S, so no edge joins A and B, and |S| is
    the smallest possible for this bisection. Minimum covers are not unique:
    the same construction from the B side gives another of the same size; we
    keep the one whose larger side is smaller (ties: the A-side construction).
    """
    p = pattern(adj)
    n = p.shape[0]
    parts = np.asarray(parts)
    if parts.shape != (n,):
        raise UserError(f"bisection must have shape ({n},), got {parts.shape}")
    if n and not np.isin(parts, (0, 1)).all():
        raise UserError("bisection labels must be 0 or 1")
    parts = parts.astype(np.int64)
    coo = p.tocoo()
    cut = (parts[coo.row] == A_SIDE) & (parts[coo.col] == B_SIDE)
    ua, ia = np.unique(coo.row[cut], return_inverse=True)
    vb, jb = np.unique(coo.col[cut], return_inverse=True)
    out = parts.copy()
    if len(ua) == 0:
        return out
    bi = sp.csr_matrix((np.ones(len(ia)), (ia, jb)), shape=(len(ua), len(vb)))
    best = None
    for rows, cols, graph in ((ua, vb, bi), (vb, ua, bi.T.tocsr())):
        cover_rows, cover_cols = _konig_cover(graph)
        labels = parts.copy()
        labels[rows[cover_rows]] = SEPARATOR
        labels[cols[cover_cols]] = SEPARATOR
        larger = max(np.count_nonzero(labels == A_SIDE), np.count_nonzero(labels == B_SIDE))
        if best is None or larger < best[0]:
            best = (larger, labels)
    return best[1]


def _konig_cover(bi: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Minimum vertex cover of a bipartite graph (rows, columns) as boolean masks over rows and columns."""
    nr, nc = bi.shape
    match = maximum_bipartite_matching(bi, perm_type="column")  # column matched to each row, or -1
    matched = match >= 0
    # directed graph: rows 0..nr-1, columns nr..nr+nc-1, source nr+nc -> unmatched rows;
    # row -> its columns, column -> its matched row
    coo = bi.tocoo()
    src = np.concatenate([coo.row, nr + match[matched], np.full(np.count_nonzero(~matched), nr + nc)])
    dst = np.concatenate([nr + coo.col, np.flatnonzero(matched), np.flatnonzero(~matched)])
    g = sp.csr_matrix((np.ones(len(src)), (src, dst)), shape=(nr + nc + 1, nr + nc + 1))
    reached = np.zeros(nr + nc + 1, bool)
    reached[breadth_first_order(g, nr + nc, directed=True, return_predecessors=False)] = True
    return ~reached[:nr], reached[nr: nr + nc]


def separator(adj, method: str = "metis", seed: int = 0, *, model=None, refine: str = "sweep") -> np.ndarray:
    """Vertex separator (labels 0 = A, 1 = B, 2 = S): :func:`~jaxsafe.graphs.partition.bisect` then the cover.

    ``method``: ``gnn``, ``metis``, ``spectral`` or ``scotch``; the bisection
    runs on the unit-weight pattern.
    """
    if method not in METHODS:
        raise UserError(f"unknown method '{method}' (choose from {', '.join(METHODS)})")
    p = pattern(adj)
    if p.shape[0] == 0:
        raise UserError("graph has no vertices")
    return vertex_separator_from_bisection(p, bisect(p, method, refine=refine, model=model, seed=seed))


def nested_dissection(adj, separator_fn: Callable[[sp.csr_matrix], np.ndarray],
                      leaf_size: int = LEAF_SIZE) -> np.ndarray:
    """Nested-dissection order (spec, "Paper B"): ``[A-subtree, B-subtree, S]`` recursively.

    A block with fewer than ``leaf_size`` vertices is ordered by
    :func:`minimum_degree`. A disconnected block needs no separator: its
    components are independent blocks, ordered one after the other (the
    components below ``leaf_size`` together as one minimum-degree block — the
    same fill as ordering each alone). A connected block gets labels from
    ``separator_fn(block_pattern)`` (0 = A, 1 = B, 2 = S; checked: no A–B
    edge); S takes the block's last positions, in vertex-id order. A split
    that leaves every vertex on one side (no progress) falls back to minimum
    degree for that block. Either side may be empty. Runs with an explicit
    stack (no recursion limit): each block owns a fixed range of positions.
    """
    if leaf_size < 1:
        raise UserError(f"leaf_size must be at least 1, got {leaf_size}")
    p = pattern(adj)
    n = p.shape[0]
    perm = np.empty(n, np.int64)
    stack = [(np.arange(n), 0)] if n else []
    while stack:
        idx, lo = stack.pop()
        sub = p[idx][:, idx]
        if len(idx) < leaf_size:
            perm[lo: lo + len(idx)] = idx[_minimum_degree_of_pattern(sub)]
            continue
        ncomp, labels = components(sub)
        if ncomp > 1:
            sizes = np.bincount(labels)
            small = sizes[labels] < leaf_size
            if small.any():
                perm[lo: lo + np.count_nonzero(small)] = idx[small][_minimum_degree_of_pattern(sub[small][:, small])]
                lo += np.count_nonzero(small)
            for c in np.flatnonzero(sizes >= leaf_size):
                stack.append((idx[labels == c], lo))
                lo += sizes[c]
            continue
        parts = _checked_separator(sub, separator_fn(sub))
        a, b, s = (idx[parts == label] for label in (A_SIDE, B_SIDE, SEPARATOR))
        if max(len(a), len(b)) == len(idx):
            perm[lo: lo + len(idx)] = idx[_minimum_degree_of_pattern(sub)]
            continue
        perm[lo + len(a) + len(b): lo + len(idx)] = s
        stack.extend(block for block in ((a, lo), (b, lo + len(a))) if len(block[0]))
    return perm


def nested_dissection_batched(adj, separators_fn: Callable[[list[sp.csr_matrix]], list[np.ndarray]],
                               leaf_size: int = LEAF_SIZE, seconds: dict | None = None,
                               adaptive: bool = False) -> np.ndarray:
    """:func:`nested_dissection` processed depth by depth: all blocks of one depth get their
    separators from ONE call ``separators_fn([block patterns]) -> [labels]``.

    Same rules as :func:`nested_dissection` (leaves below ``leaf_size`` by minimum degree,
    components split, ``[A, B, S]``, no-progress fallback); with a separator function that
    does not depend on the other blocks of its call, the order is the same (tested). Batching
    lets a compiled separator (the RL agent) run all small subgraphs of a depth in a few calls
    instead of one per subgraph. ``seconds`` accumulates ``extract`` (subgraph extraction and
    components), ``separators`` (inside ``separators_fn``), ``leaves`` (minimum degree) and
    ``separator_calls``/``blocks`` (counts).

    ``adaptive``: after the dissection, every split block is revisited bottom-up
    (deepest first) and ordered by minimum degree instead when that lowers the fill
    of *its own columns* of the factor. That count is exact, not a proxy: a block's
    vertices sit contiguously and are adjacent, outside the block, only to separator
    vertices of its ancestors, which come later; so the structure of its columns
    depends only on its internal order, and that of every other column does not
    depend on it (the later columns see only which boundary vertices the block
    connects). It is the symbolic fill of the subgraph of the block and its
    boundary neighbours (ordered last), less the boundary's share, which both
    candidates have in common. The bottom-up choice is therefore the best mix of
    dissection and minimum degree over the dissection tree, never worse than the
    plain dissection (tested). MMD beats METIS NodeND on mid-sized Delaunay graphs
    and grids (docs), so this keeps dissection where it pays and minimum degree
    where it does not. Blocks above ``ADAPTIVE_MAX_VERTICES`` (10⁴) stay dissected
    without the test (still never worse than the plain dissection).
    ``seconds["adaptive"]`` is its time,
    ``seconds["adaptive_mmd_blocks"]`` the blocks switched.
    """
    import time

    if leaf_size < 1:
        raise UserError(f"leaf_size must be at least 1, got {leaf_size}")
    seconds = {} if seconds is None else seconds
    for key in ("extract", "separators", "leaves", "separator_calls", "blocks"):
        seconds.setdefault(key, 0.0)
    p = pattern(adj)
    n = p.shape[0]
    perm = np.empty(n, np.int64)
    frontier = [(np.arange(n), 0)] if n else []
    split_blocks = []
    while frontier:
        todo = []
        for idx, lo in frontier:
            t0 = time.perf_counter()
            sub = p[idx][:, idx]
            if len(idx) < leaf_size:
                t1 = time.perf_counter()
                perm[lo: lo + len(idx)] = idx[_minimum_degree_of_pattern(sub)]
                seconds["extract"] += t1 - t0
                seconds["leaves"] += time.perf_counter() - t1
                continue
            ncomp, labels = components(sub)
            seconds["extract"] += time.perf_counter() - t0
            if ncomp > 1:
                sizes = np.bincount(labels)
                small = sizes[labels] < leaf_size
                if small.any():
                    t1 = time.perf_counter()
                    perm[lo: lo + np.count_nonzero(small)] = idx[small][_minimum_degree_of_pattern(sub[small][:, small])]
                    seconds["leaves"] += time.perf_counter() - t1
                    lo += np.count_nonzero(small)
                nxt = []
                for c in np.flatnonzero(sizes >= leaf_size):
                    nxt.append((idx[labels == c], lo))
                    lo += sizes[c]
                frontier.extend(nxt)  # same depth: handled in this round's later iterations
                continue
            todo.append((idx, lo, sub))
        frontier = []
        if not todo:
            break
        t0 = time.perf_counter()
        results = separators_fn([sub for _, _, sub in todo])
        seconds["separators"] += time.perf_counter() - t0
        seconds["separator_calls"] += 1
        seconds["blocks"] += len(todo)
        for (idx, lo, sub), labels in zip(todo, results):
            parts = _checked_separator(sub, labels)
            a, b, s_ = (idx[parts == label] for label in (A_SIDE, B_SIDE, SEPARATOR))
            if max(len(a), len(b)) == len(idx):
                t1 = time.perf_counter()
                perm[lo: lo + len(idx)] = idx[_minimum_degree_of_pattern(sub)]
                seconds["leaves"] += time.perf_counter() - t1
                continue
            perm[lo + len(a) + len(b): lo + len(idx)] = s_
            frontier.extend(block for block in ((a, lo), (b, lo + len(a))) if len(block[0]))
            split_blocks.append((idx, lo, sub))
    if adaptive:
        t0 = time.perf_counter()
        position = np.empty(n, np.int64)
        switched = 0
        for idx, lo, sub in reversed(split_blocks):
            if len(idx) > ADAPTIVE_MAX_VERTICES:
                continue
            boundary = np.setdiff1d(p[idx].indices, idx, assume_unique=False)
            ext_idx = np.concatenate([idx, boundary])
            ext = p[ext_idx][:, ext_idx]
            position[ext_idx] = np.arange(len(ext_idx))
            tail = np.arange(len(idx), len(ext_idx))
            nd_order = np.concatenate([position[perm[lo: lo + len(idx)]], tail])
            md_local = _minimum_degree_of_pattern(sub)
            if (_symbolic_fill_of_pattern(ext, np.concatenate([md_local, tail]))
                    < _symbolic_fill_of_pattern(ext, nd_order)):
                perm[lo: lo + len(idx)] = idx[md_local]
                switched += 1
        seconds["adaptive"] = seconds.get("adaptive", 0.0) + time.perf_counter() - t0
        seconds["adaptive_mmd_blocks"] = seconds.get("adaptive_mmd_blocks", 0) + switched
    return perm


def _checked_separator(sub: sp.csr_matrix, labels) -> np.ndarray:
    n = sub.shape[0]
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.isin(labels, (A_SIDE, B_SIDE, SEPARATOR)).all():
        raise UserError(f"separator function must return labels 0/1/2 of shape ({n},)")
    coo = sub.tocoo()
    if np.any((labels[coo.row] == A_SIDE) & (labels[coo.col] == B_SIDE)):
        raise UserError("separator function returned a split with an edge between A and B")
    return labels.astype(np.int64)


def order(adj, method: str = "metis", seed: int = 0, *, model=None, leaf_size: int = LEAF_SIZE,
          seconds: dict | None = None, adaptive: bool = True) -> np.ndarray:
    """Elimination order ``perm`` of the graph by ``method`` (see :data:`ORDERINGS`).

    * ``natural``: the vertex ids.
    * ``metis``: METIS NodeND (``pymetis.nested_dissection``, options seed); its ``perm``.
    * ``scotch``: ``SCOTCH_graphOrder``, default strategy (:func:`~jaxsafe.graphs.scotch.scotch_order`).
    * ``colamd``, ``mmd``: SuperLU's ``COLAMD`` / ``MMD_AT_PLUS_A`` column orderings (the
      timing includes a SuperLU factorization: SciPy returns ``perm_c`` only with one).
    * ``nd-gnn``, ``nd-metis-bisect``, ``nd-spectral``: :func:`nested_dissection` with
      :func:`separator` from GNN (``model``, default the shipped weights), METIS or spectral bisections.
    * ``nd-rl``: :func:`nested_dissection_batched` with paper B's separator agent
      (:func:`jaxsafe.graphs.rl_drivers.rl_separators`: METIS's vertex separator — METIS bisection
      + König cover without libmetis — refined by the agent on blocks of at least
      ``AGENT_MIN_VERTICES``; ``model`` = an agent, default the shipped ``rl_separator`` weights), all
      blocks of one depth in one call; ``seconds`` gets the time breakdown; ``adaptive``
      (default) switches split blocks to minimum degree where that lowers their own fill.
    """
    if method not in ORDERINGS:
        raise UserError(f"unknown ordering '{method}' (choose from {', '.join(ORDERINGS)})")
    p = pattern(adj)
    n = p.shape[0]
    if n == 0:
        raise UserError("graph has no vertices")
    if method == "natural":
        return np.arange(n, dtype=np.int64)
    if method == "metis":
        perm, _ = pymetis.nested_dissection(
            adjacency=pymetis.CSRAdjacency(p.indptr.astype(np.int64), p.indices.astype(np.int64)),
            options=pymetis.Options(seed=seed))
        return np.asarray(perm, dtype=np.int64)
    if method == "scotch":
        return scotch_order(p, seed)
    if method in _SUPERLU_ORDERINGS:
        return _superlu_order(p, _SUPERLU_ORDERINGS[method])
    if method == "nd-rl":
        from jaxsafe.graphs.rl_agents import ActorCritic
        from jaxsafe.graphs.rl_drivers import rl_separators

        if not isinstance(model, ActorCritic):  # e.g. the GNN given for nd-gnn: the shipped agent
            model = ActorCritic.load(task="separator")  # once, not once per depth
        stats = {} if seconds is None else seconds
        agent_stats: dict = {}
        perm = nested_dissection_batched(p, functools.partial(rl_separators, agent=model, seed=seed,
                                                              stats=agent_stats), leaf_size, stats,
                                         adaptive=adaptive)
        stats.update({f"agent_{k}" if not k.endswith("seconds") else k: v for k, v in agent_stats.items()})
        return perm
    bisector = ND_SEPARATORS[method]
    if bisector == "gnn" and model is None:
        from jaxsafe.graphs.gnn import GNNBisector

        model = GNNBisector.load()
    return nested_dissection(p, functools.partial(separator, method=bisector, seed=seed, model=model), leaf_size)
