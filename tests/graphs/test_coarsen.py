"""Heavy-edge matching and contraction invariants."""

import numpy as np
import scipy.sparse as sp

from jaxsafe.graphs.coarsen import _heavy_edge_matching, build_hierarchy, contract, heavy_edge_matching
from jaxsafe.graphs.generators import delaunay, random_geometric
from jaxsafe.graphs.io import clean_adjacency


def _weighted_delaunay(n, seed):
    adj, _ = delaunay(n, seed=seed)
    rng = np.random.default_rng(seed)
    upper = sp.triu(adj, 1).tocoo()
    w = sp.coo_matrix((rng.integers(1, 10, upper.nnz).astype(float), (upper.row, upper.col)), shape=adj.shape)
    return clean_adjacency(w + w.T)


def test_matching_is_valid_and_heaviest_available():
    adj = _weighted_delaunay(400, 0)
    vw = np.random.default_rng(1).integers(1, 4, 400).astype(float)
    match, cmap, nc = heavy_edge_matching(adj, vw, np.random.default_rng(2))
    assert np.array_equal(match[match], np.arange(400))  # an involution: pairs or singletons
    paired = np.flatnonzero(match != np.arange(400))
    assert np.all(adj[paired, match[paired]].A1 > 0)  # pairs are edges
    assert nc == 400 - len(paired) // 2
    assert np.array_equal(cmap[paired], cmap[match[paired]]) and len(np.unique(cmap)) == nc
    # a singleton has no unmatched neighbour left (otherwise it would have been matched)
    single = np.flatnonzero(match == np.arange(400))
    for u in single:
        assert np.all(match[adj.indices[adj.indptr[u]:adj.indptr[u + 1]]] != adj.indices[adj.indptr[u]:adj.indptr[u + 1]])


def _match(adj, vw, order, cap=np.inf):
    return _heavy_edge_matching(adj.indptr.astype(np.int64), adj.indices.astype(np.int64), adj.data,
                                np.asarray(vw, float), np.asarray(order, np.int64), cap)[0]


def test_heavy_edge_is_chosen_ties_lighter_cap_respected():
    # star: centre 0, edges to 1, 2, 3 with weights 1, 5, 2
    a = np.zeros((4, 4))
    a[0, 1], a[0, 2], a[0, 3] = 1, 5, 2
    adj = clean_adjacency(a + a.T)
    assert _match(adj, np.ones(4), [0, 1, 2, 3]).tolist() == [2, 1, 0, 3]
    assert _match(adj, np.ones(4), [1, 0, 2, 3]).tolist() == [1, 0, 2, 3]  # 1's only neighbour is 0
    assert _match(adj, [1, 1, 5, 1], [0, 1, 2, 3], cap=3).tolist() == [3, 1, 2, 0]  # 0+2 too heavy
    # equal edge weights: the lighter neighbour wins
    b = np.zeros((3, 3))
    b[0, 1] = b[0, 2] = 1
    assert _match(clean_adjacency(b + b.T), [1, 3, 2], [0, 1, 2]).tolist() == [2, 1, 0]


def test_contraction_conserves_weights_and_cuts():
    adj = _weighted_delaunay(500, 3)
    vw = np.ones(500)
    match, cmap, nc = heavy_edge_matching(adj, vw, np.random.default_rng(0))
    coarse, cvw = contract(adj, vw, match, cmap, nc)
    assert cvw.sum() == vw.sum()
    assert (coarse != coarse.T).nnz == 0 and coarse.diagonal().sum() == 0
    internal = sum(adj[u, match[u]] for u in range(500) if match[u] > u)
    assert np.isclose(coarse.sum() / 2 + internal, adj.sum() / 2)
    # any coarse partition has the same cut as its interpolation on the fine graph
    side = np.random.default_rng(1).integers(0, 2, nc)
    fine_side = side[cmap]

    def cut(a, s):
        c = a.tocoo()
        return c.data[s[c.row] != s[c.col]].sum() / 2

    assert np.isclose(cut(coarse, side), cut(adj, fine_side))


def test_hierarchy_levels_and_totals():
    adj, _ = delaunay(3000, seed=4)
    h = build_hierarchy(adj, coarsest_size=16)
    assert h.coarsest.n <= 16 and h.depth >= 8
    for fine, coarse in zip(h.levels[:-1], h.levels[1:]):
        assert coarse.n < fine.n and fine.cmap.max() == coarse.n - 1
        assert np.isclose(coarse.vweights.sum(), 3000)
    x = np.arange(h.coarsest.n)
    assert np.array_equal(np.sort(np.unique(h.interpolate_to_finest(x))), x)


def test_disconnected_and_tiny_graphs_stop():
    adj, _ = random_geometric(300, radius=0.03, seed=0)  # many components and isolated vertices
    h = build_hierarchy(adj, coarsest_size=2)
    assert h.coarsest.n >= 2 and h.depth < 40
    from scipy.sparse.csgraph import connected_components
    assert h.coarsest.n >= connected_components(adj)[0]  # HEM never merges across components
    one = build_hierarchy(sp.csr_matrix((1, 1)))
    assert one.depth == 1 and one.coarsest.n == 1
