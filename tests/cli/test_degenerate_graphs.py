"""Partition and order on degenerate graphs: a valid answer, every part non-empty, or one clear line."""

import numpy as np
import pytest
import scipy.sparse as sp

from jaxsafe.graphs.partition import evaluate, partition


def graph(edges, n):
    r, c = np.array(edges).T if edges else (np.array([], int), np.array([], int))
    a = sp.coo_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
    return (a + a.T).tocsr()


K4 = graph([(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)], 4)
STAR = graph([(0, i) for i in range(1, 5)], 5)
TAIL = graph([(0, 1), (1, 2), (2, 0), (2, 3)], 4)
ISOLATED = graph([(0, 1), (1, 2), (5, 6)], 7)
EMPTY_EDGES = graph([], 5)
PAIRS = graph([(0, 1), (2, 3)], 4)


@pytest.mark.parametrize("adj", [K4, STAR, TAIL, ISOLATED, EMPTY_EDGES, PAIRS], ids=["k4", "star", "tail", "isolated", "no-edges", "pairs"])
@pytest.mark.parametrize("method", ["metis", "spectral"])
@pytest.mark.parametrize("k", [2, 3, "n"])
def test_every_part_non_empty(adj, method, k):
    n = adj.shape[0]
    k = n if k == "n" else k
    parts = partition(adj, k, method)
    assert sorted(set(parts.tolist())) == list(range(k))
    assert evaluate(adj, parts)["parts"] == k


def test_kway_metis_with_k_near_n_fills_every_part():
    from jaxsafe.graphs.generators import delaunay

    adj, _ = delaunay(300, seed=0)
    parts = partition(adj, 290, "metis")
    assert len(np.unique(parts)) == 290 and evaluate(adj, parts)["parts"] == 290
