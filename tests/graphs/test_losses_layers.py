"""Losses against hand-computed values; layers against dense formulas; padding changes nothing."""

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest
from flax import nnx

from jaxsafe.graphs.batching import _ell_graph, ell_slots
from jaxsafe.graphs.coarsen import Level
from jaxsafe.graphs.generators import delaunay
from jaxsafe.graphs.io import clean_adjacency, to_graphs_tuple
from jaxsafe.graphs.layers import GATConv, SAGEConv
from jaxsafe.graphs.losses import expected_normalized_cut, laplacian_apply, rayleigh_loss


def _graph(edges, n, weights=None):
    a = np.zeros((n, n))
    for k, (i, j) in enumerate(edges):
        a[i, j] = a[j, i] = 1.0 if weights is None else weights[k]
    adj = clean_adjacency(a)
    return adj, to_graphs_tuple(adj)


CYCLE4 = [(0, 1), (1, 2), (2, 3), (3, 0)]
PATH4 = [(0, 1), (1, 2), (2, 3)]


def test_expected_normalized_cut_hand_values():
    _, g = _graph(CYCLE4, 4)
    hard = jnp.array([[1, 0], [1, 0], [0, 1], [0, 1]], jnp.float32)
    assert float(expected_normalized_cut(hard, g)) == pytest.approx(2 * (1 / 4 + 1 / 4))  # cut 2, vols 4, 4
    assert float(expected_normalized_cut(jnp.full((4, 2), 0.5), g)) == pytest.approx(1.0)  # E[cut] 2, Γ (4, 4)
    _, p = _graph(PATH4, 4)
    assert float(expected_normalized_cut(hard, p)) == pytest.approx(1 * (1 / 3 + 1 / 3))  # cut 1, vols 3, 3
    uneven = jnp.array([[1, 0], [0, 1], [0, 1], [0, 1]], jnp.float32)
    assert float(expected_normalized_cut(uneven, p)) == pytest.approx(1 / 1 + 1 / 5)
    # weighted path 0-1 (w 3), 1-2 (w 1), 2-3 (w 2): cut {0,1}|{2,3} = 1, vols 3+4, 3+2
    _, w = _graph(PATH4, 4, [3, 1, 2])
    assert float(expected_normalized_cut(hard, w)) == pytest.approx(1 / 7 + 1 / 5)


def test_rayleigh_loss_hand_values():
    _, g = _graph(CYCLE4, 4)
    # L_sym = I - A/2 on the 4-cycle: eigenvalues 0, 1, 1, 2
    eig = jnp.array([[0.5, 1 / np.sqrt(2)], [0.5, 0.0], [0.5, -1 / np.sqrt(2)], [0.5, 0.0]], jnp.float32)
    assert float(rayleigh_loss(eig, g, 4, "sym")) == pytest.approx(0.0 + 1.0, abs=1e-6)
    # x = e0: L x = (1, -1/2, 0, -1/2), rho = 1, residual ||(0,-1/2,0,-1/2)||^2 / 4 = 1/8
    e = jnp.eye(4, 2, dtype=jnp.float32)
    assert float(rayleigh_loss(e, g, 4, "sym")) == pytest.approx(2 * (1 + 1 / 8))
    _, p = _graph(PATH4, 4)
    # L_rw e0 = (1, -1/2, 0, 0): rho 1, residual 1/4 / 4 = 1/16
    assert float(rayleigh_loss(e[:, :1], p, 4, "rw")) == pytest.approx(1 + 1 / 16)


def test_laplacians_match_dense():
    adj, _ = delaunay(50, seed=0)
    adj = adj.multiply(adj) * 2.0  # weights 2
    g = to_graphs_tuple(adj)
    x = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    a = adj.toarray()
    d = a.sum(1)
    sym = np.eye(50) - a / np.sqrt(np.outer(d, d))
    rw = np.eye(50) - a / d[:, None]
    np.testing.assert_allclose(laplacian_apply(g, x, "sym"), sym @ x, atol=1e-5)
    np.testing.assert_allclose(laplacian_apply(g, x, "rw"), rw @ x, atol=1e-5)


def _pad(g, n, e):
    return jraph.pad_with_graphs(g, n, e)


def test_sage_matches_dense_and_ignores_padding():
    adj, g = _graph(PATH4, 4, [3, 1, 2])
    x = np.arange(8, dtype=np.float32).reshape(4, 2)
    for weighted in (True, False):
        conv = SAGEConv(2, 3, weighted=weighted, rngs=nnx.Rngs(0))
        a = adj.toarray() if weighted else (adj.toarray() > 0).astype(float)
        mean = (a @ x) / a.sum(1, keepdims=True)
        want = mean @ conv.lin_neigh.kernel[...] + conv.lin_neigh.bias[...] + x @ conv.lin_self.kernel[...]
        np.testing.assert_allclose(conv(g, jnp.asarray(x)), want, rtol=1e-5)
        padded = _pad(g, 9, 13)
        xp = np.concatenate([x, np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32)])
        np.testing.assert_allclose(conv(padded, jnp.asarray(xp))[:4], want, rtol=1e-5)


def test_gat_matches_dense_attention_and_ignores_padding():
    adj, g = _graph(CYCLE4 + [(0, 2)], 4)
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    conv = GATConv(3, 2, heads=2, rngs=nnx.Rngs(0))
    z = (x @ conv.lin.kernel[...]).reshape(4, 2, 2)
    out = np.zeros((4, 2, 2))
    a = adj.toarray() + np.eye(4)
    for i in range(4):
        nb = np.flatnonzero(a[i])
        for h in range(2):
            e = np.array([np.dot(conv.att_dst[...][h], z[i, h]) + np.dot(conv.att_src[...][h], z[j, h]) for j in nb])
            e = np.where(e > 0, e, 0.2 * e)
            alpha = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
            out[i, h] = (alpha[:, None] * z[nb, h]).sum(0)
    want = out.reshape(4, 4) + np.asarray(conv.bias[...])
    np.testing.assert_allclose(conv(g, jnp.asarray(x)), want, rtol=1e-4, atol=1e-6)
    padded = _pad(g, 7, 16)
    xp = np.concatenate([x, np.ones((3, 3), np.float32)])
    np.testing.assert_allclose(jax.jit(conv)(padded, jnp.asarray(xp))[:4], want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("weighted", [True, False])
def test_sage_ell_layout_equals_edge_layout(weighted):
    """SAGEConv on an EllGraph (K slots + overflow edges) equals the GraphsTuple result, with a high-degree hub."""
    rng = np.random.default_rng(0)
    a = (rng.random((30, 30)) < 0.15) * rng.random((30, 30))
    a[0, 1:] = 1 + rng.random(29)  # vertex 0 has 29 neighbours: overflow edges
    adj = clean_adjacency(a)
    k = ell_slots(np.diff(adj.indptr))
    assert k < 29
    conv = SAGEConv(3, 4, weighted=weighted, rngs=nnx.Rngs(0))
    x = jnp.asarray(rng.standard_normal((40, 3)), jnp.float32)
    edge = jraph.pad_with_graphs(to_graphs_tuple(adj), 40, 1024)
    ell = _ell_graph(Level(adj, np.ones(30), None), 40)
    assert ell.neighbours.shape == (40, k)
    np.testing.assert_allclose(conv(ell, x)[:30], conv(edge, x)[:30], atol=1e-5)


def test_ell_slots_cost_model():
    assert ell_slots(np.full(100, 6)) == 8
    assert ell_slots(np.full(100, 3)) == 4
    assert ell_slots(np.array([4] * 99 + [200])) == 4  # one hub goes to the edge list
    assert ell_slots(np.zeros(2, int)) == 4
