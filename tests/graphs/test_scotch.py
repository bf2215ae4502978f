"""Scotch baseline: valid partitions, k-way, quality near METIS, weights, components, determinism, absence."""

import ctypes.util
import json

import numpy as np
import pytest
import scipy.sparse as sp

from jaxsafe.cli import main
from jaxsafe.errors import UserError
from jaxsafe.graphs import scotch
from jaxsafe.graphs.baselines import integer_edge_weights
from jaxsafe.graphs.generators import delaunay, grid2d
from jaxsafe.graphs.io import clean_adjacency, write_metis
from jaxsafe.graphs.partition import bisect, evaluate, partition

needs_scotch = pytest.mark.skipif(not scotch.available(),
                                  reason="Scotch library not installed (Debian/Ubuntu: apt-get install libscotch-7.0)")


@needs_scotch
def test_bisection_and_kway_are_valid():
    adj, _ = delaunay(2000, seed=3)
    seconds = {}
    parts = bisect(adj, "scotch", seconds=seconds)
    assert parts.shape == (2000,) and set(parts.tolist()) == {0, 1}
    assert evaluate(adj, parts)["balance"] < 1.1
    assert set(seconds) == {"components", "scotch"}
    for k in (3, 4, 7):
        seconds = {}
        parts = partition(adj, k, "scotch", seconds=seconds)
        r = evaluate(adj, parts)
        assert parts.shape == (2000,) and set(parts.tolist()) == set(range(k)) and r["parts"] == k
        assert r["balance"] < 1.2 and set(seconds) == {"components", "scotch"}  # k-way directly: one Scotch call


@needs_scotch
def test_bisection_quality_close_to_metis():
    ratios = []
    for n, width, seed in ((1000, 1.0, 1), (2000, 1.0, 2), (3000, 5.0, 3), (5000, 1.0, 4)):
        adj, _ = delaunay(n, width, 1.0, seed=seed)
        nc_metis = evaluate(adj, bisect(adj, "metis"))["normalized_cut"]
        nc_scotch = evaluate(adj, bisect(adj, "scotch"))["normalized_cut"]
        ratios.append(nc_scotch / nc_metis)
    # measured here (Scotch 7.0.3, METIS 5.2.1): 1.014, 0.870, 1.000, 1.061
    assert max(ratios) < 1.15 and np.median(ratios) < 1.05, ratios


def test_integer_edge_weights_rule():
    assert integer_edge_weights(np.array([1.0, 3.0, 7.0])).tolist() == [1, 3, 7]
    w = integer_edge_weights(np.array([0.5, 2.0, 1e-9]), top=1000)
    assert w.tolist() == [250, 1000, 1]  # scaled to the top, rounded, never 0


@needs_scotch
def test_non_integer_weights_steer_the_cut():
    # 20×20 grid; the seam between columns 9 and 10 is light, every other edge heavy (non-integral weights)
    adj, xy = grid2d(20, 20)
    coo = sp.triu(adj, 1).tocoo()
    x = xy[:, 0]
    seam = (np.minimum(x[coo.row], x[coo.col]) == 9) & (x[coo.row] != x[coo.col])
    w = np.where(seam, 0.01, 1.3)
    weighted = clean_adjacency(sp.coo_matrix((w, (coo.row, coo.col)), shape=adj.shape))
    r = evaluate(weighted, bisect(weighted, "scotch"))
    assert r["cut"] == pytest.approx(20 * 0.01) and r["balance"] == pytest.approx(1.0)


@needs_scotch
def test_disconnected_graph_through_bisect():
    big, _ = delaunay(1000, seed=5)
    small, _ = delaunay(60, seed=6)
    adj = sp.block_diag([big, small, sp.csr_matrix((3, 3))], format="csr")  # plus 3 isolated vertices
    n = adj.shape[0]
    seconds = {}
    parts = bisect(adj, "scotch", seconds=seconds)
    assert parts.shape == (n,) and set(parts.tolist()) == {0, 1} and "scotch" in seconds
    # the small component and the isolated vertices are packed whole onto one side each
    assert len(set(parts[1000:1060].tolist())) == 1
    assert evaluate(adj, parts)["balance"] < 1.2
    parts3 = partition(adj, 3, "scotch")
    assert set(parts3.tolist()) == {0, 1, 2}


@needs_scotch
def test_same_seed_same_partition():
    adj, _ = delaunay(3000, seed=1)
    for k in (2, 5):
        first = partition(adj, k, "scotch", seed=3)
        assert all(np.array_equal(first, partition(adj, k, "scotch", seed=3)) for _ in range(3))


@needs_scotch
def test_found_without_the_dev_package(monkeypatch):
    """The runtime package has only the versioned soname; find_library needs -dev's libscotch.so."""
    if not any(p for p in scotch._candidates() if "libscotch-" in p):
        pytest.skip("no versioned libscotch-*.so on the default library paths (not a Debian layout)")
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    scotch._library.cache_clear()
    try:
        assert scotch.available()
    finally:
        scotch._library.cache_clear()


@needs_scotch
def test_cli_scotch(tmp_path, capsys):
    adj, _ = delaunay(300, seed=0)
    write_metis(tmp_path / "g.graph", adj)
    assert main(["partition", str(tmp_path / "g.graph"), "--parts", "3", "--method", "scotch"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["parts"] == 3 and result["method"] == "scotch" and result["refine"] is None
    assert set(result["seconds_breakdown"]) == {"components", "scotch"}


def test_missing_library_is_a_user_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(scotch, "_library", lambda: None)
    assert not scotch.available()
    adj, _ = delaunay(100, seed=0)
    with pytest.raises(UserError, match="apt-get install libscotch-7.0"):
        bisect(adj, "scotch")
    write_metis(tmp_path / "g.graph", adj)
    assert main(["partition", str(tmp_path / "g.graph"), "--method", "scotch"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "libscotch-7.0" in err
