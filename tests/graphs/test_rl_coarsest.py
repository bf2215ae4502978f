"""Paper B's coarsest-graph agent: its environment against recomputation, its bisection, the driver and CLI end to end."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsafe.graphs import rl_env as E
from jaxsafe.graphs.baselines import metis_parts
from jaxsafe.graphs.coarsen import build_hierarchy
from jaxsafe.graphs.generators import delaunay
from jaxsafe.graphs.partition import evaluate
from jaxsafe.graphs.rl_agents import ActorCritic
from jaxsafe.graphs.rl_config import AgentConfig, RLTrainConfig
from jaxsafe.graphs.rl_drivers import coarsest_bisect, objective_np, policy, rl_bisect


def _coarsest(n=1500, seed=3):
    """The coarsest level of a Delaunay hierarchy and its fine degrees (sums over merged fine vertices)."""
    adj, _ = delaunay(n, seed=seed)
    h = build_hierarchy(adj, coarsest_size=100, seed=0)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    for lv in h.levels[:-1]:
        deg = np.bincount(lv.cmap, weights=deg)
    return adj, h, deg


def test_coarsest_episode_moves_equal_recomputation():
    _, h, deg = _coarsest()
    c = h.coarsest
    assert 2 < c.n <= 100 and c.adj.data.max() > 1  # a weighted coarse graph
    start = 7
    ep = E.to_jax(E.coarsest_episode(c.adj, start, deg=deg, vw=c.vweights))
    assert bool(np.all(np.asarray(ep.movable)[:c.n])) and not np.any(np.asarray(ep.real)[c.n:])
    st = E.refine_reset(ep)
    parts = np.asarray(st.parts)[:c.n]
    assert parts.sum() == 1 and parts[start] == 1  # every vertex in A but the start vertex
    prev = objective_np(c.adj, parts.astype(np.int64), deg)
    rng = np.random.default_rng(0)
    w = c.adj.toarray()
    allowed, step = jax.jit(E.refine_allowed), jax.jit(E.refine_step)
    features, refine_features = jax.jit(E.coarsest_features), jax.jit(E.refine_features)
    for _ in range(40):  # random allowed moves: cut, volumes, sizes, reward and features against recomputation
        ok = np.asarray(allowed(ep, st))
        st, r = step(ep, st, jnp.int32(rng.choice(np.flatnonzero(ok))))
        parts = np.asarray(st.parts)[:c.n].astype(np.int64)
        nc = objective_np(c.adj, parts, deg)
        np.testing.assert_allclose(float(E.partition_objective(st.cut, st.vol, st.size, ep.targets)), nc, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(st.vol), np.bincount(parts, weights=deg, minlength=2), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(st.size[:2]), np.bincount(parts, weights=c.vweights, minlength=2))
        np.testing.assert_allclose(float(r), prev - nc, atol=1e-6 * max(1.0, prev))
        prev = nc
        f = np.asarray(features(ep, st))[:c.n]
        to_b = w @ (parts == 1) / w.sum(axis=1)
        np.testing.assert_allclose(f[:, 6], to_b, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(f[:, 5] + f[:, 6], 1.0, rtol=1e-6)
        np.testing.assert_allclose(f[:, :5], np.asarray(refine_features(ep, st))[:c.n])


def test_locked_vertices_are_not_allowed():
    _, h, deg = _coarsest(900, 1)
    c = h.coarsest
    agent = ActorCritic(AgentConfig(task="coarsest", kind="gat", hidden=4, layers=1), rngs=nnx.Rngs(0))
    ep = E.to_jax(E.coarsest_episode(c.adj, 0, deg=deg, vw=c.vweights))
    st = E.refine_reset(ep)
    _, _, ok = policy(agent, "coarsest", ep, st)
    locked = jnp.zeros_like(ok).at[jnp.argmax(ok)].set(True)
    logits, _, ok2 = policy(agent, "coarsest", ep, st, locked=locked)
    np.testing.assert_array_equal(np.asarray(ok2), np.asarray(ok & ~locked))
    assert np.isneginf(float(logits[jnp.argmax(ok)]))


def test_coarsest_bisect_returns_its_best_state_never_worse_than_the_starts():
    _, h, deg = _coarsest()
    c = h.coarsest
    agent = ActorCritic(AgentConfig(task="coarsest", kind="gat", hidden=30, layers=4), rngs=nnx.Rngs(1))
    parts = coarsest_bisect(c.adj, agent, deg=deg, vw=c.vweights, tries=4, seed=5)
    assert parts.shape == (c.n,) and set(np.unique(parts)) == {0, 1}
    starts = np.random.default_rng(5).choice(c.n, size=4, replace=False)
    start_obj = min(objective_np(c.adj, (np.arange(c.n) == v).astype(np.int64), deg) for v in starts)
    assert objective_np(c.adj, parts, deg) < start_obj  # the rollout kept a better state than every start


def test_shipped_coarsest_agent_in_the_driver_and_cli(tmp_path, capsys, monkeypatch):
    adj, _ = delaunay(600, seed=77)
    metis = evaluate(adj, metis_parts(adj, 2, 0))["normalized_cut"]
    seconds = {}
    r = evaluate(adj, rl_bisect(adj, coarsest="agent", seconds=seconds))
    assert r["parts"] == 2 and r["normalized_cut"] < 1.3 * metis and "coarsest" in seconds
    # on the coarsest graph itself: the shipped agent within 1.5x METIS's normalized cut (fine volumes)
    _, h, deg = _coarsest(600, 77)
    c = h.coarsest
    ours = objective_np(c.adj, coarsest_bisect(c.adj, ActorCritic.load(task="coarsest"), deg=deg, vw=c.vweights), deg)
    assert ours < 1.5 * objective_np(c.adj, metis_parts(c.adj, 2, 0), deg)
    with pytest.raises(ValueError, match="coarsest"):
        rl_bisect(adj, coarsest="spectral")

    from jaxsafe.cli import main
    from jaxsafe.graphs.io import write_metis

    monkeypatch.setenv("HOME", str(tmp_path))
    write_metis(tmp_path / "g.graph", adj)
    assert main(["partition", str(tmp_path / "g.graph"), "--method", "rl", "--coarsest", "agent"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["parts"] == 2 and out["normalized_cut"] < 1.3 * metis and "coarsest" in out["seconds_breakdown"]


def test_a2c_trains_the_coarsest_agent_with_locking(tmp_path):
    from jaxsafe.graphs.rl_train import build_pool, train

    cfg = RLTrainConfig(agent=AgentConfig(task="coarsest", kind="gat", hidden=8, layers=2), graphs=2, n_min=300,
                        n_max=400, starts=2, episodes=2, rollout=3, warmup=0, steps=2, eval_graphs=0,
                        gnn_fraction=0.0, families=("delaunay", "grid2d"))
    eps, info = build_pool(cfg, 0, 2)
    assert len(eps) == 4 and info["families"] == {"delaunay": 1, "grid2d": 1}
    for ep in eps:  # whole coarsest graphs, one vertex in B
        assert ep["movable"].sum() == ep["real"].sum() and ep["labels0"].sum() == 1
    out = train(cfg, tmp_path / "c")
    rows = [json.loads(x) for x in (tmp_path / "c" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(np.isfinite(r["loss"]) for r in rows)
    assert ActorCritic.load(out["weights"]).cfg.task == "coarsest"
