"""Sparse matrix ordering: fill-in against a dense symbolic elimination, separators (König), nested dissection, baselines, CLI."""

import itertools
import json

import numpy as np
import pymetis
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.sparse.csgraph import maximum_bipartite_matching

from jaxsafe.cli import main
from jaxsafe.errors import UserError
from jaxsafe.graphs import ordering, scotch
from jaxsafe.graphs.generators import delaunay, grid2d, grid3d, random_geometric
from jaxsafe.graphs.io import write_metis
from jaxsafe.graphs.ordering import (
    ORDERINGS,
    check_permutation,
    fill_in,
    fill_matrix,
    minimum_degree,
    nested_dissection,
    order,
    pattern,
    separator,
    vertex_separator_from_bisection,
)
from jaxsafe.graphs.partition import bisect

needs_scotch = pytest.mark.skipif(not scotch.available(), reason="Scotch library not installed (libscotch-7.0)")


def dense_symbolic_fill(adj, perm) -> int:
    """Reference: eliminate vertices in ``perm`` order on a dense boolean matrix; |L| + |U| with both diagonals."""
    a = pattern(adj).toarray()[np.ix_(perm, perm)] != 0
    n = len(perm)
    filled = a | np.eye(n, dtype=bool)
    for k in range(n):
        later = np.flatnonzero(filled[k + 1:, k]) + k + 1
        filled[np.ix_(later, later)] = True
    return int(np.count_nonzero(filled)) + n  # L has the unit diagonal, U the pivots


def path(n):
    i = np.arange(n - 1)
    return pattern(sp.coo_matrix((np.ones(n - 1), (i, i + 1)), shape=(n, n)))


def star(leaves):
    return pattern(sp.coo_matrix((np.ones(leaves), (np.zeros(leaves, int), np.arange(1, leaves + 1))),
                                 shape=(leaves + 1, leaves + 1)))


# -- fill-in -----------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ordering.ENGINES)
def test_fill_in_known_answers(engine):
    n = 9
    assert fill_in(path(n), np.arange(n), engine=engine) == 2 * (2 * n - 1)  # tridiagonal: no fill
    assert fill_in(star(8), np.arange(9), engine=engine) == 81 + 9  # centre first: dense factors, 2 diagonals
    assert fill_in(star(8), np.r_[1:9, 0], engine=engine) == 2 * (9 + 8)  # centre last: no fill
    # k×k grid, row-major: the first grid row is a path (rows of L: 1, then 2 entries); below it each
    # row of L fills the whole band from the vertex above to the diagonal (k + 1 entries)
    k = 6
    grid, _ = grid2d(k, k)
    lower = 1 + 2 * (k - 1) + (k * k - k) * (k + 1)
    assert fill_in(grid, np.arange(k * k), engine=engine) == 2 * lower


@pytest.mark.parametrize("engine", ordering.ENGINES)
def test_fill_in_matches_dense_symbolic_elimination(engine):
    rng = np.random.default_rng(0)
    graphs = [grid2d(5, 4)[0], delaunay(40, seed=1)[0], random_geometric(50, seed=2)[0], star(6), path(12)]
    for adj in graphs:
        n = adj.shape[0]
        for perm in (np.arange(n), rng.permutation(n), rng.permutation(n)):
            assert fill_in(adj, perm, engine=engine) == dense_symbolic_fill(adj, perm)


def test_engines_agree_on_real_orderings():
    adj, _ = delaunay(1500, seed=4)
    for perm in (np.random.default_rng(1).permutation(1500), order(adj, "metis"), order(adj, "mmd"),
                 order(adj, "nd-metis-bisect")):
        assert fill_in(adj, perm) == fill_in(adj, perm, engine="symbolic")


def test_fill_in_is_structural(monkeypatch):
    # entry (1, 2) of U is 1 − 1·1/1 = 0 exactly after eliminating vertex 0: it still counts
    tri = pattern(np.ones((3, 3)))
    cancelling = sp.csc_matrix(np.array([[1.0, 1, 1], [1, 4, 1], [1, 1, 4]]))
    lu = spla.splu(cancelling, permc_spec="NATURAL", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    assert lu.L.nnz + lu.U.nnz == 10  # SciPy's L/U drop the exact zero: not a structural count
    monkeypatch.setattr(ordering, "fill_matrix", lambda adj: cancelling)
    assert fill_in(tri, np.arange(3)) == 12 == dense_symbolic_fill(tri, np.arange(3))


def test_fill_matrix_is_laplacian_plus_identity():
    m = fill_matrix(path(3)).toarray()
    assert np.array_equal(m, [[2, -1, 0], [-1, 3, -1], [0, -1, 2]])


def test_fill_in_rejects_non_permutations():
    adj = path(5)
    for bad, match in (([0, 1, 2, 3], "shape"), ([0, 1, 2, 3, 3], "appears 2 times"), ([0, 1, 2, 3, 5], "outside"),
                       ([0, 1, 2, 3, -1], "outside"), (np.arange(5.0), "integers"), (np.zeros((5, 1), int), "shape")):
        with pytest.raises(UserError, match=match):
            fill_in(adj, bad)
    with pytest.raises(UserError, match="engine"):
        fill_in(adj, np.arange(5), engine="dense")
    assert check_permutation([4, 3, 2, 1, 0], 5).dtype == np.int64


# -- vertex separators ---------------------------------------------------------------------

def check_separator(adj, parts, labels):
    p = pattern(adj)
    coo = p.tocoo()
    assert set(np.unique(labels)) <= {0, 1, 2}
    assert not np.any((labels[coo.row] == 0) & (labels[coo.col] == 1)), "an edge joins A and B"
    cut = (parts[coo.row] == 0) & (parts[coo.col] == 1)
    endpoints = np.zeros(len(parts), bool)
    endpoints[coo.row[cut]] = endpoints[coo.col[cut]] = True
    s = labels == 2
    assert not np.any(s & ~endpoints), "S holds a vertex that is no endpoint of a cut edge"
    assert np.array_equal(labels[~s], parts[~s])
    # König: a cover as large as a matching is minimum (every cover has ≥ one vertex per matching edge)
    ua, ia = np.unique(coo.row[cut], return_inverse=True)
    vb, jb = np.unique(coo.col[cut], return_inverse=True)
    if len(ua):
        match = maximum_bipartite_matching(sp.csr_matrix((np.ones(len(ia)), (ia, jb)), shape=(len(ua), len(vb))),
                                           perm_type="column")
        assert np.count_nonzero(s) == np.count_nonzero(match >= 0)
    else:
        assert not s.any()


def test_separator_from_bisection_is_a_minimum_cover():
    rng = np.random.default_rng(0)
    graphs = [delaunay(n, seed=s)[0] for n, s in ((200, 0), (700, 1), (1500, 2))]
    graphs += [grid2d(20, 15)[0], random_geometric(400, seed=3)[0], star(30), path(40)]
    for adj in graphs:
        n = adj.shape[0]
        for parts in (rng.integers(0, 2, n), (np.arange(n) >= n // 2).astype(int), bisect(adj, "metis")):
            check_separator(adj, parts, vertex_separator_from_bisection(adj, parts))


def test_separator_size_matches_brute_force_minimum_cover():
    rng = np.random.default_rng(1)
    for trial in range(20):
        adj = pattern(sp.random(10, 10, density=0.35, random_state=trial))
        parts = rng.integers(0, 2, 10)
        labels = vertex_separator_from_bisection(adj, parts)
        coo = adj.tocoo()
        cut = [(u, v) for u, v in zip(coo.row, coo.col) if parts[u] == 0 and parts[v] == 1]
        verts = sorted({x for e in cut for x in e})
        best = next(k for k in range(len(verts) + 1) for c in itertools.combinations(verts, k)
                    if all(u in c or v in c for u, v in cut))
        assert np.count_nonzero(labels == 2) == best


def test_separator_prefers_the_cover_that_balances():
    # star with its centre on side A: covering the centre (1 vertex) beats covering the 9 leaves; then A is empty
    labels = vertex_separator_from_bisection(star(9), np.r_[0, np.ones(9, int)])
    assert labels.tolist() == [2] + [1] * 9
    # path 0-1-2-3 | 4-5-6: cut edge 3-4, either endpoint is a minimum cover; A = {0..3} is larger, so S = {3}
    labels = vertex_separator_from_bisection(path(7), np.array([0, 0, 0, 0, 1, 1, 1]))
    assert labels.tolist() == [0, 0, 0, 2, 1, 1, 1]


def test_separator_rejects_bad_bisections():
    with pytest.raises(UserError, match="shape"):
        vertex_separator_from_bisection(path(4), [0, 1, 0])
    with pytest.raises(UserError, match="0 or 1"):
        vertex_separator_from_bisection(path(4), [0, 1, 2, 1])
    with pytest.raises(UserError, match="unknown method"):
        separator(path(4), "kahip")


@pytest.mark.parametrize("method", ["metis", "spectral", pytest.param("scotch", marks=needs_scotch)])
def test_separator_methods(method):
    adj, _ = delaunay(1000, seed=5)
    labels = separator(adj, method)
    coo = adj.tocoo()
    assert not np.any((labels[coo.row] == 0) & (labels[coo.col] == 1))
    sizes = np.bincount(labels, minlength=3)
    assert sizes[2] < 60 and min(sizes[:2]) > 350, sizes  # ~√n separator, balanced sides


def test_gnn_separator(random_model):
    adj, _ = delaunay(300, seed=6)
    labels = separator(adj, "gnn", model=random_model)
    coo = adj.tocoo()
    assert not np.any((labels[coo.row] == 0) & (labels[coo.col] == 1)) and np.count_nonzero(labels == 2) > 0


# -- nested dissection ------------------------------------------------------------------------

def middle_vertex(sub):
    """Separator of a path whose vertices are in path order: its middle vertex."""
    labels = (np.arange(sub.shape[0]) > sub.shape[0] // 2).astype(int)
    labels[sub.shape[0] // 2] = 2
    return labels


def test_nested_dissection_order_on_a_path():
    # path 0..6, separators {3}, then {1} and {5}; leaves of 1 vertex: [A-subtree, B-subtree, S]
    assert nested_dissection(path(7), middle_vertex, leaf_size=2).tolist() == [0, 2, 1, 4, 6, 5, 3]
    # eliminating 2 joins 1–3, eliminating 4 joins 3–5: two fill edges
    assert fill_in(path(7), [0, 2, 1, 4, 6, 5, 3]) == 2 * (7 + 6 + 2)


def test_nested_dissection_puts_the_top_separator_last():
    adj, _ = delaunay(2000, seed=7)
    calls = []

    def recording(sub):
        labels = separator(sub, "metis")
        calls.append(labels)
        return labels

    perm = nested_dissection(adj, recording)
    check_permutation(perm, 2000)
    top = calls[0]  # the whole (connected) graph
    assert set(perm[-np.count_nonzero(top == 2):]) == set(np.flatnonzero(top == 2))
    a = np.count_nonzero(top == 0)
    assert set(perm[:a]) == set(np.flatnonzero(top == 0))
    assert all(len(labels) >= 100 for labels in calls)  # leaves below 100 vertices get no separator


def test_nested_dissection_components_empty_sides_and_fallback():
    big, _ = delaunay(300, seed=8)
    adj = sp.block_diag([big, path(150), star(20), sp.csr_matrix((5, 5))], format="csr")
    n = adj.shape[0]
    perm = nested_dissection(adj, lambda sub: separator(sub, "metis"), leaf_size=50)
    check_permutation(perm, n)
    # every vertex in A (no progress): that block falls back to minimum degree, still a permutation
    perm = nested_dissection(big, lambda sub: np.zeros(sub.shape[0], int))
    assert np.array_equal(perm, minimum_degree(big))
    # empty side A: a star split as {centre} = S, leaves = B
    perm = nested_dissection(star(120), lambda sub: np.r_[2, np.ones(sub.shape[0] - 1, int)])
    assert perm[-1] == 0 and fill_in(star(120), perm) == 2 * (121 + 120)


def test_nested_dissection_is_recursion_depth_safe():
    # peel one vertex per level: 1,500 levels, deeper than Python's default recursion limit
    def peel(sub):
        labels = np.zeros(sub.shape[0], int)
        labels[-1] = 2
        return labels

    n = 1500
    perm = nested_dissection(path(n), peel, leaf_size=2)
    assert perm.tolist() == list(range(n))


def test_nested_dissection_rejects_bad_separators():
    adj, _ = delaunay(200, seed=9)
    with pytest.raises(UserError, match="edge between A and B"):
        nested_dissection(adj, lambda sub: np.arange(sub.shape[0]) % 2)
    with pytest.raises(UserError, match="labels 0/1/2"):
        nested_dissection(adj, lambda sub: np.full(sub.shape[0], 3))


# -- orderings ---------------------------------------------------------------------------------

def test_every_ordering_is_a_permutation(random_model):
    connected, _ = delaunay(400, seed=10)
    disconnected = sp.block_diag([connected, path(130), sp.csr_matrix((3, 3))], format="csr")
    for adj in (connected, disconnected):
        for method in ORDERINGS:
            if method == "scotch" and not scotch.available():
                continue
            perm = order(adj, method, model=random_model)
            assert np.array_equal(np.sort(perm), np.arange(adj.shape[0])), method
    assert order(sp.csr_matrix((1, 1)), "metis").tolist() == [0]
    with pytest.raises(UserError, match="unknown ordering"):
        order(connected, "amd")


def test_fill_reducing_orderings_beat_natural():
    adj, _ = delaunay(2000, seed=0)
    natural = fill_in(adj, order(adj, "natural"), engine="symbolic")
    fills = {m: fill_in(adj, order(adj, m)) for m in ("metis", "colamd", "mmd", "nd-metis-bisect", "nd-spectral")}
    assert all(f < natural / 8 for f in fills.values()), (natural, fills)
    # our nested dissection with METIS bisections is within 20 % of METIS's own NodeND
    assert fills["nd-metis-bisect"] < 1.2 * fills["metis"] and fills["nd-spectral"] < 1.2 * fills["metis"], fills


def test_metis_perm_is_the_elimination_order_not_iperm():
    adj, _ = delaunay(2000, seed=1)
    perm, iperm = pymetis.nested_dissection(adjacency=pymetis.CSRAdjacency(adj.indptr, adj.indices))
    assert np.array_equal(np.asarray(iperm)[np.asarray(perm)], np.arange(2000))  # inverses of each other
    assert fill_in(adj, perm) * 10 < fill_in(adj, iperm)
    assert np.array_equal(order(adj, "metis"), order(adj, "metis"))  # seeded: deterministic


@needs_scotch
def test_scotch_ordering_is_peritab():
    adj, _ = delaunay(2000, seed=2)
    peritab = order(adj, "scotch")
    permtab = np.argsort(peritab)
    assert fill_in(adj, peritab) * 5 < fill_in(adj, permtab)
    assert np.array_equal(peritab, order(adj, "scotch"))  # deterministic context


def test_minimum_degree_is_superlus_mmd_order():
    graphs = [delaunay(1500, seed=3)[0], grid3d(9, 9, 9)[0], random_geometric(800, seed=1)[0],
              sp.block_diag([path(40), star(9), sp.csr_matrix((3, 3))], format="csr"), sp.csr_matrix((1, 1))]
    for adj in graphs:
        assert np.array_equal(minimum_degree(adj), order(adj, "mmd"))


@pytest.mark.parametrize("method,spec", [("colamd", "COLAMD"), ("mmd", "MMD_AT_PLUS_A")])
def test_superlu_orderings_give_superlus_own_fill(method, spec):
    adj, _ = delaunay(1500, seed=3)
    lu = spla.splu(fill_matrix(adj), permc_spec=spec, diag_pivot_thresh=0.0, options={"SymmetricMode": True, "Relax": 1})
    assert np.array_equal(lu.perm_r, lu.perm_c)  # symmetric permutation: no pivoting happened
    assert fill_in(adj, order(adj, method)) == lu.nnz


# -- command line -------------------------------------------------------------------------------

def test_cli_order(tmp_path, capsys):
    adj, _ = delaunay(500, seed=11)
    write_metis(tmp_path / "g.graph", adj)
    out = tmp_path / "perm.txt"
    assert main(["order", str(tmp_path / "g.graph"), "--method", "mmd", "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    perm = np.loadtxt(out, dtype=int)
    assert result["n"] == 500 and result["nnz"] == adj.nnz + 500 and result["method"] == "mmd"
    assert result["fill_in"] == fill_in(adj, perm) and result["seconds"] >= 0
    assert main(["order", str(tmp_path / "g.graph"), "--engine", "symbolic"]) == 0
    assert json.loads(capsys.readouterr().out)["fill_in"] == fill_in(adj, order(adj, "metis"))


def test_cli_order_bad_input(tmp_path, capsys):
    (tmp_path / "bad.graph").write_text("3 1\n2\n1 3\n\n")
    for argv in (["order", str(tmp_path / "missing.graph")], ["order", str(tmp_path / "bad.graph")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("jaxsafe: error:")
    with pytest.raises(SystemExit) as exit_info:
        main(["order", str(tmp_path / "bad.graph"), "--method", "amd"])
    assert exit_info.value.code == 2 and capsys.readouterr().err.count("\n") == 1
