"""GNN modules: training and inference drivers agree, weights round-trip, shipped weights work."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsafe.errors import UserError
from jaxsafe.graphs.batching import ELL_MIN_NODES, bucket, group_sizes, locality_ranks, pad_levels
import jaxsafe.graphs.embedding as embedding_module
from jaxsafe.graphs.coarsen import Level
from jaxsafe.graphs.embedding import coarsest_features, embed, fiedler_from_embedding
from jaxsafe.graphs.generators import delaunay
from jaxsafe.graphs.gnn import GNNBisector, partition_input
from jaxsafe.graphs.partition import bisect, evaluate
from jaxsafe.graphs.partition_module import vcycle
from jaxsafe.graphs.train import _methods


def test_parameter_counts_match_paper(random_model):
    def count(m):
        return sum(np.size(v) for v in jax.tree.leaves(nnx.state(m, nnx.Param)))

    assert count(random_model.embedding) == 6514  # paper: ≈ 6.5k
    assert count(random_model.partition) == 3538  # paper: ≈ 3.5k


def test_training_layout_matches_inference(random_model):
    """Group-padded levels with extra inactive levels give the same outputs as per-level buckets."""
    adj, _ = delaunay(120, seed=1)
    h = random_model.hierarchy(adj)
    n = adj.shape[0]
    sizes = [(a + 19, b + 7) for a, b in group_sizes([h])] + [(h.coarsest.n + 5, 400)] * 3
    train_levels, infer_levels = pad_levels(h, sizes), pad_levels(h)
    depth = jnp.int32(h.depth)
    q_train = jax.jit(lambda lv, x0, d: embed(_methods(random_model.embedding), lv, x0, d))(
        train_levels, coarsest_features(h.coarsest, "sym", sizes[-1][0]), depth)
    f = random_model.fiedler(h, infer_levels)
    q_infer = np.asarray(embed(random_model._modules()[0], infer_levels,
                               coarsest_features(h.coarsest, "sym", infer_levels[-1].mask.shape[0])))
    np.testing.assert_allclose(np.abs(np.asarray(q_train)[:n]), np.abs(q_infer[:n]), atol=1e-5)
    f_pad = np.zeros(sizes[0][0], np.float32)
    f_pad[:n] = f
    y_train = jax.jit(lambda lv, x, d: vcycle(_methods(random_model.partition), lv, x, d))(
        train_levels, partition_input(f_pad, train_levels[0].mask, train_levels[0].n), depth)
    y_infer = random_model.probabilities(infer_levels, f)
    np.testing.assert_allclose(np.asarray(y_train)[:n], y_infer, atol=1e-5)
    assert np.allclose(y_infer.sum(1), 1)


def test_weights_round_trip_and_errors(tmp_path, random_model):
    random_model.save(tmp_path / "w.safetensors")
    loaded = GNNBisector.load(tmp_path / "w.safetensors")
    adj, _ = delaunay(120, seed=2)
    _, y0, _ = random_model.predict(adj)
    _, y1, _ = loaded.predict(adj)
    np.testing.assert_array_equal(y0, y1)
    (tmp_path / "bad.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{}xyz")
    with pytest.raises(UserError, match="not a GNN bisector"):
        GNNBisector.load(tmp_path / "bad.safetensors")
    with pytest.raises(UserError, match="not found"):
        GNNBisector.load(tmp_path / "none.safetensors")


def test_shipped_weights_partition_well():
    """The trained weights in the package: NC within 25% of METIS on held-out Delaunay graphs."""
    model = GNNBisector.load()
    ratios = []
    for seed, width in ((11, 1.0), (12, 5.0)):
        adj, _ = delaunay(1500, width, 1.0, seed=seed)
        metis = evaluate(adj, bisect(adj, "metis"))["normalized_cut"]
        ratios.append(evaluate(adj, bisect(adj, "gnn", model=model))["normalized_cut"] / metis)
    assert max(ratios) < 1.25, ratios


def test_ell_layout_matches_edge_layout(random_model):
    """The inference layout (ELL slots + overflow edge list) gives the edge layout's outputs."""
    adj, _ = delaunay(5000, seed=4)
    h = random_model.hierarchy(adj)
    edge_levels, ell_levels = pad_levels(h), pad_levels(h, ell=True)
    assert ell_levels[0].graph.neighbours.shape[1] == 8 and ell_levels[0].graph.senders.shape[0] > 8  # both parts used
    small = [(lv, padded) for lv, padded in zip(h.levels, ell_levels) if lv.n < ELL_MIN_NODES]
    assert len(small) >= 3
    for lv, padded in small:  # ELL_MIN_NODES rows each, every edge in a slot
        assert padded.mask.shape[0] == ELL_MIN_NODES and not np.any(padded.graph.edges)
        assert np.count_nonzero(padded.graph.weights) == lv.adj.nnz
    f_edge, f_ell = random_model.fiedler(h, edge_levels), random_model.fiedler(h, ell_levels)
    np.testing.assert_allclose(f_ell, f_edge, atol=1e-5)
    np.testing.assert_allclose(random_model.probabilities(ell_levels, f_edge),
                               random_model.probabilities(edge_levels, f_edge), atol=1e-5)
    f, y, _ = random_model.predict(adj)  # predict runs on the ELL layout
    np.testing.assert_allclose(f, f_edge, atol=1e-5)


def test_fiedler_starts_at_most_max_up_levels_below_the_top(random_model):
    """Deep hierarchies: the embedding starts from the exact eigenvectors of level max_up_levels."""
    adj, _ = delaunay(2000, seed=5)
    h = random_model.hierarchy(adj)
    levels = pad_levels(h, ell=True)
    model = GNNBisector(dataclasses.replace(random_model.config, max_up_levels=3), random_model.embedding,
                        random_model.partition)
    assert h.depth > 4
    x0 = coarsest_features(h.levels[3], "sym", levels[3].mask.shape[0])
    q = np.asarray(embed(random_model._modules()[0], levels[:4], x0), np.float64)[: adj.shape[0]]
    np.testing.assert_allclose(model.fiedler(h, levels), fiedler_from_embedding(adj, q, "sym"), atol=1e-6)
    deep = GNNBisector(dataclasses.replace(random_model.config, max_up_levels=100), random_model.embedding,
                       random_model.partition)
    assert not np.allclose(np.abs(deep.fiedler(h, levels)), np.abs(model.fiedler(h, levels)), atol=1e-3)


def test_start_features_sparse_solver_matches_dense(monkeypatch):
    """Above DENSE_EIGH_MAX vertices the start eigenvectors come from ARPACK: same subspace as eigh."""
    adj, _ = delaunay(600, seed=6)
    level = Level(adj, np.ones(600), None)
    sparse = coarsest_features(level, "sym", 640)
    monkeypatch.setattr(embedding_module, "DENSE_EIGH_MAX", 10**6)
    dense = coarsest_features(level, "sym", 640)
    for c in range(2):  # eigenvectors up to sign
        assert abs(sparse[:, c] @ dense[:, c]) / (np.linalg.norm(sparse[:, c]) * np.linalg.norm(dense[:, c])) > 1 - 1e-6


def test_fiedler_from_embedding_depends_only_on_the_span():
    """Any basis of the same 2-D span (rotated, scaled, not orthonormal) gives the same estimate up to sign."""
    adj, _ = delaunay(500, seed=7)
    q = np.random.default_rng(0).standard_normal((500, 2))
    mix = np.array([[3.0, 0.5], [-1.0, 0.2]])
    for kind in ("sym", "rw"):
        a, b = fiedler_from_embedding(adj, q, kind), fiedler_from_embedding(adj, q @ mix, kind)
        assert abs(a @ b) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("steps", [1, 4])
def test_buckets_cover_sizes_with_bounded_padding(steps):
    sizes = np.unique(np.geomspace(1, 3e6, 400).astype(int))
    got = np.array([bucket(int(s), steps=steps) for s in sizes])
    assert np.all(got >= np.maximum(sizes, 8))
    assert np.all(got < np.maximum(sizes, 8) * (1 + 1 / steps))  # padding below 1/steps of the size
    assert len(set(bucket(int(s), steps=steps) for s in range(9, 5000))) <= (1 + 4 * steps) * np.log2(5000)
    assert bucket(100_001, steps=4) == 114_688 and bucket(65_536, steps=4) == 65_536 and bucket(100_001) == 131_072


def test_locality_ranks_group_children_and_keep_outputs(random_model):
    """Every level's ranks are a permutation; vertices merged together get consecutive rows; same outputs."""
    adj, _ = delaunay(2500, seed=8)
    h = random_model.hierarchy(adj)
    ranks = locality_ranks(h)
    for i, lv in enumerate(h.levels):
        assert np.array_equal(np.sort(ranks[i]), np.arange(lv.n))
        if lv.cmap is not None:  # children of one coarse vertex: consecutive rows, in coarse-rank order
            parent = ranks[i + 1][lv.cmap]
            assert np.all(np.diff(parent[np.argsort(ranks[i])]) >= 0)
    plain, ordered = pad_levels(h, ell=True), pad_levels(h, ell=True, ranks=ranks)
    f = random_model.fiedler(h, plain)
    np.testing.assert_allclose(random_model.fiedler(h, ordered, ranks), f, atol=1e-5)
    np.testing.assert_allclose(random_model.probabilities(ordered, f, ranks), random_model.probabilities(plain, f),
                               atol=1e-5)


def test_per_level_programs_compile_once_for_nearby_sizes():
    """Graphs whose levels fall in the same padded buckets reuse every compiled per-level program:
    after the first bisection, two more of nearby size compile nothing (jax's own compile cache)."""
    from jaxsafe.graphs.batching import Compiled

    model = GNNBisector.load()
    adj, _ = delaunay(900, seed=21)
    bisect(adj, "gnn", model=model)
    functions = [fn for graphdef in (Compiled(model.embedding).graphdef, Compiled(model.partition).graphdef)
                 for fn in Compiled._cache[graphdef].values()]
    assert functions
    counts = [fn.jitted._cache_size() for fn in functions]
    for n, seed in ((905, 22), (890, 23)):
        bisect(delaunay(n, seed=seed)[0], "gnn", model=model)
    assert [fn.jitted._cache_size() for fn in functions] == counts
