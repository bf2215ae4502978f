"""Paper B's environments: incremental objectives equal from-scratch recomputations on the whole graph."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from jaxsafe.graphs import rl_env as E
from jaxsafe.graphs.baselines import metis_parts
from jaxsafe.graphs.coarsen import build_hierarchy
from jaxsafe.graphs.generators import delaunay, grid2d, grid3d
from jaxsafe.graphs.ordering import vertex_separator_from_bisection


def _graphs():
    yield "delaunay", delaunay(400, seed=3)[0]
    yield "grid", grid2d(15, 12)[0]
    yield "grid3d", grid3d(6, 5, 5)[0]
    a, _ = delaunay(300, seed=5)
    w = sp.triu(a, 1).tocoo()
    rng = np.random.default_rng(0)
    w.data = rng.integers(1, 5, len(w.data)).astype(float)
    yield "weighted", (w + w.T).tocsr()


def _nc(adj, parts, deg, targets=(1.0, 1.0)):
    coo = adj.tocoo()
    cut = coo.data[parts[coo.row] != parts[coo.col]].sum() / 2
    vol = np.bincount(parts, weights=deg, minlength=2)
    return cut, vol, cut * (targets[0] / vol[0] + targets[1] / vol[1])


def _run(ep, steps, key, pick):
    """``steps`` uniformly random allowed moves in one compiled scan; the state after each move and the rewards."""
    reset, step, allowed = pick

    def body(st, k):
        ok = allowed(ep, st)
        v = jnp.argmax(jnp.where(ok, jax.random.gumbel(k, ok.shape), -jnp.inf))
        new, r = step(ep, st, v)
        return new, (new, r, ok.any())

    _, (states, rewards, any_ok) = jax.jit(lambda e: jax.lax.scan(body, reset(e), jax.random.split(key, steps)))(ep)
    assert bool(np.all(any_ok))
    states = jax.device_get(states)
    return [jax.tree.map(lambda x: x[i], states) for i in range(steps)], [float(r) for r in rewards]


@pytest.mark.parametrize("name,adj", list(_graphs()))
def test_refinement_deltas_equal_recomputation(name, adj):
    deg = np.asarray(adj.sum(axis=1)).ravel()
    parts0 = metis_parts(adj, 2, 0)
    targets = (1.0, 1.0) if name != "grid" else (0.5, 2.0)  # recursive k-way weights
    ep_np, sub = E.extract_episode(adj, parts0, targets=targets)
    ep = E.to_jax(ep_np)
    pick = (E.refine_reset, E.refine_step, E.refine_allowed)
    states, rewards = _run(ep, 60, jax.random.key(len(name)), pick)
    assert len(states) == 60
    prev = _nc(adj, parts0, deg, targets)[2]
    for st, r in zip(states, rewards):
        parts = E.scatter_back(parts0, sub, st.parts)
        cut, vol, nc = _nc(adj, parts, deg, targets)
        np.testing.assert_allclose(st.cut, cut, rtol=1e-5)
        np.testing.assert_allclose(st.vol, vol, rtol=1e-5)
        np.testing.assert_allclose(st.size[:2], np.bincount(parts, minlength=2), rtol=1e-6)
        np.testing.assert_allclose(r, prev - nc, atol=1e-6 * max(1.0, abs(prev)))
        obj = E.partition_objective(st.cut, st.vol, st.size, ep.targets)
        np.testing.assert_allclose(obj, nc, rtol=1e-5)
        prev = nc


def test_refinement_on_coarse_level_uses_fine_volumes():
    adj, _ = delaunay(600, seed=1)
    h = build_hierarchy(adj, coarsest_size=50, seed=0)
    lv = h.levels[1]
    fine_deg = np.asarray(adj.sum(axis=1)).ravel()
    cdeg = np.bincount(h.levels[0].cmap, weights=fine_deg)
    coarse_parts = metis_parts(lv.adj, 2, 0)
    ep_np, sub = E.extract_episode(lv.adj, coarse_parts, deg=cdeg, vw=lv.vweights)
    ep = E.to_jax(ep_np)
    states, _ = _run(ep, 30, jax.random.key(0), (E.refine_reset, E.refine_step, E.refine_allowed))
    for st in states[::5]:
        fine = E.scatter_back(coarse_parts, sub, st.parts)[h.levels[0].cmap]
        cut, vol, nc = _nc(adj, fine, fine_deg)
        np.testing.assert_allclose([st.cut, *st.vol], [cut, *vol], rtol=1e-5)
        np.testing.assert_allclose(st.size[:2], np.bincount(fine, minlength=2), rtol=1e-6)


@pytest.mark.parametrize("name,adj", list(_graphs())[:3])
def test_separator_deltas_equal_recomputation_and_stay_valid(name, adj):
    labels0 = vertex_separator_from_bisection(adj, metis_parts(adj, 2, 0))
    ep_np, sub = E.extract_episode(adj, labels0, separator=True, hops=2)
    ep = E.to_jax(ep_np)
    states, rewards = _run(ep, 80, jax.random.key(7), (E.separator_reset, E.separator_step, E.separator_allowed))
    assert len(states) == 80
    coo = adj.tocoo()
    moved_out = 0
    prev = None
    for st, r in zip(states, rewards):
        labels = E.scatter_back(labels0, sub, st.labels)
        assert not np.any((labels[coo.row] == 0) & (labels[coo.col] == 1)), "an A-B edge appeared"
        size = np.bincount(labels, minlength=3)
        np.testing.assert_allclose(st.size, size)
        ns = size[2] * (1 / size[0] + 1 / size[1])
        if prev is not None:
            np.testing.assert_allclose(r, prev - ns, atol=1e-6)
        prev = ns
        moved_out += int(labels[int(st.last)] != 2)
    assert 0 < moved_out < len(states)  # both kinds of action happened


def test_vmapped_environment_equals_single_runs():
    eps = []
    for seed in range(3):
        adj, _ = delaunay(200 + 50 * seed, seed=seed)
        eps.append(E.extract_episode(adj, metis_parts(adj, 2, 0))[0])
    batch = E.to_jax(E.stack_episodes(eps))

    def greedy_run(ep):  # move the first allowed vertex, 10 times
        def body(st, _):
            v = jnp.argmax(E.refine_allowed(ep, st))
            st, r = E.refine_step(ep, st, v)
            return st, r
        return jax.lax.scan(body, E.refine_reset(ep), None, length=10)

    stv, rv = jax.jit(jax.vmap(greedy_run))(batch)
    for i, e in enumerate(eps):
        big = E.repad(e, batch.nbr.shape[1], batch.nbr.shape[2])
        st1, r1 = jax.jit(greedy_run)(E.to_jax(big))
        np.testing.assert_allclose(rv[i], r1, rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(stv.parts[i], st1.parts)


def test_tiny_known_answer():
    # path 0-1-2-3 split {0} | {1,2,3}: moving 1 to side 0 gives the balanced split, NC 1/3+1/3
    adj = sp.csr_matrix(np.diag(np.ones(3), 1) + np.diag(np.ones(3), -1))
    ep = E.to_jax(E.extract_episode(adj, np.array([0, 1, 1, 1]))[0])
    st = E.refine_reset(ep)
    assert float(E.partition_objective(st.cut, st.vol, st.size, ep.targets)) == pytest.approx(1 / 1 + 1 / 5)
    allowed = np.asarray(E.refine_allowed(ep, st))[:4]
    np.testing.assert_array_equal(allowed, [False, True, False, False])  # moving 0 would empty its side
    st, r = E.refine_step(ep, st, jnp.int32(1))
    assert float(r) == pytest.approx(1.2 - 2 / 3, abs=1e-6)
    assert float(E.partition_objective(st.cut, st.vol, st.size, ep.targets, "qc")) == pytest.approx(1.0)


def test_compact_region_edges_are_the_region_subgraph_and_give_the_same_logits():
    from flax import nnx

    from jaxsafe.graphs.rl_agents import ActorCritic
    from jaxsafe.graphs.rl_config import AgentConfig

    adj, _ = delaunay(1500, seed=5)
    w = adj.copy()
    w.data = np.random.default_rng(0).uniform(0.5, 2.0, w.nnz)
    adj = (w + w.T).tocsr()  # weighted, symmetric
    ep, sub = E.extract_episode(adj, metis_parts(adj, 2, 0))
    senders, receivers, weights = E.region_edges(ep)
    real = weights > 0
    region = sub[: int(ep["movable"].sum())]
    # by hand from scipy: the region's induced subgraph, both directions, its weights
    expected = adj[region][:, region].tocoo()
    got = sp.coo_matrix((weights[real], (receivers[real], senders[real])), shape=(len(region),) * 2)
    assert real.sum() == expected.nnz and abs(got - expected).max() < 1e-6
    assert len(weights) == 4 * ep["nbr"].shape[0] and (senders[~real] == ep["nbr"].shape[0] - 1).all()
    agent = ActorCritic(AgentConfig(kind="sage"), rngs=nnx.Rngs(3))
    jep = E.to_jax(ep)
    x = E.refine_features(jep, E.refine_reset(jep))
    slots, _ = agent(E.region_graph(jep), x, jep.movable)
    compact, _ = agent(E.region_graph(jep, jax.device_put((senders, receivers, weights))), x, jep.movable)
    np.testing.assert_allclose(np.asarray(compact)[: len(region)], np.asarray(slots)[: len(region)], rtol=1e-5, atol=1e-6)
    # the ELL form: the same subgraph (dense slots plus the overflow list) and the same logits
    ell = E.region_ell(ep)
    n = ep["nbr"].shape[0]
    rows = np.repeat(np.arange(n), ell.neighbours.shape[1])
    both = sp.coo_matrix((np.concatenate([ell.weights.ravel(), ell.edges]),
                          (np.concatenate([rows, ell.receivers]), np.concatenate([ell.neighbours.ravel(), ell.senders]))),
                         shape=(n, n)).tocsr()[: len(region)][:, : len(region)]
    assert abs(both - expected).max() < 1e-6 and ell.neighbours.shape[1] == 8 and len(ell.edges) == n // 8
    gathered, _ = agent(E.region_graph(jep, jax.device_put(ell)), x, jep.movable)
    np.testing.assert_allclose(np.asarray(gathered)[: len(region)], np.asarray(slots)[: len(region)], rtol=1e-5, atol=1e-6)
