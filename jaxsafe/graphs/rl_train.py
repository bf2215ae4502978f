"""A2C training of paper B's agents through the shared training core (``jaxsafe graphs train-rl``).

The loss :func:`a2c_loss` is a ``loss_fn(params, batch, frozen)`` for
:func:`jaxsafe.train.make_step`: it plays ``episodes`` episodes of the
environment side by side (``vmap``; one padded shape for the whole pool, so one
compilation), each a warm-up of up to ``warmup`` policy moves without gradient
and then ``rollout`` sampled moves, and returns the A2C loss with n-step
returns bootstrapped by the critic (see :class:`~jaxsafe.graphs.rl_config.RLTrainConfig`).
The batch of step ``k`` (episode indices, warm-up lengths and the sampling
key) is a pure function of ``k``, so :func:`jaxsafe.runs.train_loop` resumes a
killed run exactly. The optimizer comes from the ``optimizer:`` section
(:func:`jaxsafe.optim.factory.make_optimizer`).
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsafe.graphs import rl_env as E
from jaxsafe.graphs.baselines import metis_parts
from jaxsafe.graphs.coarsen import build_hierarchy
from jaxsafe.graphs.generators import delaunay, family_graph
from jaxsafe.graphs.rl_agents import WEIGHTS, ActorCritic, num_params
from jaxsafe.graphs.rl_config import RLTrainConfig
from jaxsafe.graphs.rl_drivers import env_fns, policy, start_separator, state_objective
from jaxsafe.optim.factory import make_optimizer
from jaxsafe.runs import RunDir, train_loop
from jaxsafe.train import init_state, make_step


# ---------------------------------------------------------------- the episode pool
def _random_graph(cfg: RLTrainConfig, rng: np.random.Generator, family: str = "delaunay"):
    """A connected graph of about n ∈ [n_min, n_max] vertices of ``family`` (see the config's docstring)."""
    n = int(rng.integers(cfg.n_min, cfg.n_max + 1))
    seed = int(rng.integers(2**31))
    width = 2.0 if family == "delaunay" and rng.random() < cfg.wide_fraction else 1.0
    return family_graph(family, n, seed, rng, width)


def _gnn_parts(adj, gnn):
    from jaxsafe.graphs.partition import bisect

    return bisect(adj, "gnn", model=gnn)


def build_pool(cfg: RLTrainConfig, seed: int, graphs: int, gnn=None) -> tuple[list[dict], dict]:
    """Start episodes (dicts) from ``graphs`` generated graphs; see the config's docstring."""
    from jaxsafe.graphs.ordering import pattern, vertex_separator_from_bisection

    rng = np.random.default_rng(seed)
    eps: list[dict] = []
    info = {"graphs": graphs, "from_metis": 0, "from_gnn": 0, "dropped": 0,
            "families": {f: 0 for f in cfg.families}}

    def add(ep, key):
        if ep["movable"].sum() == 0:
            return
        if ep["nbr"].shape[0] > cfg.max_nodes:
            info["dropped"] += 1
            return
        eps.append(ep)
        info[key] += 1

    for i in range(graphs):
        family = cfg.families[i % len(cfg.families)]
        info["families"][family] += 1
        adj = _random_graph(cfg, rng, family)
        use_gnn = gnn is not None and rng.random() < cfg.gnn_fraction
        if cfg.agent.task == "separator":
            p = pattern(adj)
            add(E.extract_episode(p, start_separator(p, i, cfg.separator_start == "metis"), hops=2,
                                  separator=True)[0], "from_metis")
            if use_gnn:
                add(E.extract_episode(p, vertex_separator_from_bisection(p, _gnn_parts(adj, gnn)), hops=2,
                                      separator=True)[0], "from_gnn")
            continue
        h = build_hierarchy(adj, coarsest_size=cfg.coarsest_size, seed=i)
        deg = np.asarray(adj.sum(axis=1)).ravel()
        for level in range(h.depth - 1):
            lv, up = h.levels[level], h.levels[level + 1]
            if cfg.agent.task == "refine":
                coarse = metis_parts(up.adj, 2, i)
                if np.bincount(coarse, minlength=2).min() > 0:
                    add(E.extract_episode(lv.adj, coarse[lv.cmap], hops=cfg.hops, deg=deg, vw=lv.vweights)[0],
                        "from_metis")
            deg = np.bincount(lv.cmap, weights=deg, minlength=up.n)
        if cfg.agent.task == "coarsest":
            c = h.coarsest
            for v in rng.choice(c.n, size=min(cfg.starts, c.n), replace=False):
                add(E.coarsest_episode(c.adj, int(v), deg=deg, vw=c.vweights), "from_metis")
        elif use_gnn:
            add(E.extract_episode(adj, _gnn_parts(adj, gnn), hops=cfg.hops)[0], "from_gnn")
    return eps, info


# ---------------------------------------------------------------- A2C
def a2c_loss(graphdef, cfg: RLTrainConfig):
    """The ``loss_fn(params, batch, frozen)`` of A2C; ``batch = (episodes, key_data, warmup_lengths)``."""
    task = cfg.agent.task
    reset, step, _, _ = env_fns(task, cfg.objective)

    def one(params, ep, key, warm):
        model = nnx.merge(graphdef, params)
        frozen_model = nnx.merge(graphdef, jax.lax.stop_gradient(params))
        k_warm, k_roll = jax.random.split(key)
        st = reset(ep)
        scale = cfg.reward_scale / jnp.maximum(state_objective(task, ep, st, cfg.objective), 1e-12)

        def lock(locked, a, go):
            return locked.at[a].set(locked[a] | (go & cfg.lock))

        def warm_body(c, xs):
            st, locked = c
            t, k = xs
            logits, _, ok = policy(frozen_model, task, ep, st, locked=locked)
            a = jax.random.categorical(k, jnp.where(ok, logits, -1e30))
            new, _ = step(ep, st, a)
            go = (t < warm) & ok.any()
            return (jax.tree.map(lambda x, y: jnp.where(go, y, x), st, new), lock(locked, a, go)), None

        locked = jnp.zeros(ep.movable.shape, bool)
        if cfg.warmup:
            (st, locked), _ = jax.lax.scan(warm_body, (st, locked),
                                           (jnp.arange(cfg.warmup), jax.random.split(k_warm, cfg.warmup)))

        def body(c, k):
            st, locked, alive = c
            logits, value, ok = policy(model, task, ep, st, locked=locked)
            logp = jax.nn.log_softmax(jnp.where(ok, logits, -1e30))
            a = jax.random.categorical(k, jax.lax.stop_gradient(logp))
            live = alive & ok.any()
            p = jnp.exp(logp)
            entropy = -jnp.sum(jnp.where(ok, p * logp, 0.0))
            new, r = step(ep, st, a)
            st = jax.tree.map(lambda x, y: jnp.where(live, y, x), st, new)
            r = jnp.where(live & jnp.isfinite(r), r * scale, 0.0)
            return (st, lock(locked, a, live), live), (logp[a], value, r, entropy, live)

        (st, locked, alive), (logpa, values, rewards, entropy, live) = jax.lax.scan(
            body, (st, locked, jnp.bool_(True)), jax.random.split(k_roll, cfg.rollout))
        _, v_last, ok = policy(frozen_model, task, ep, st, locked=locked)
        boot = jnp.where(alive & ok.any(), v_last, 0.0)

        def ret(R, x):
            r, m = x
            R = jnp.where(m, r + cfg.gamma * R, 0.0)
            return R, R

        _, returns = jax.lax.scan(ret, boot, (rewards, live), reverse=True)
        mask = live.astype(jnp.float32)
        count = jnp.maximum(mask.sum(), 1.0)
        adv = returns - values
        actor = -jnp.sum(mask * logpa * jax.lax.stop_gradient(adv)) / count
        critic = jnp.sum(mask * adv**2) / count
        ent = jnp.sum(mask * entropy) / count
        return actor, critic, ent, jnp.sum(rewards) / cfg.reward_scale

    def loss_fn(params, batch, _frozen):
        eps, key_data, warm = batch
        keys = jax.random.split(jax.random.wrap_key_data(key_data), warm.shape[0])
        actor, critic, ent, gain = jax.vmap(lambda e, k, w: one(params, e, k, w))(eps, keys, warm)
        loss = actor.mean() + cfg.value_coef * critic.mean() - cfg.entropy_coef * ent.mean()
        return loss, {"actor": actor.mean(), "critic": critic.mean(), "entropy": ent.mean(),
                      "relative_gain": gain.mean()}

    return loss_fn


# ---------------------------------------------------------------- training
def train(cfg: RLTrainConfig, out: str | Path, resume: bool = False, gnn=None) -> dict:
    """Train one agent into ``out`` (a run directory); weights to ``out/rl_<task>.safetensors``."""
    out = Path(out)
    t_start = time.perf_counter()
    run = RunDir(out, resume=resume)
    run.save_config(cfg)
    if gnn is None and cfg.gnn_fraction > 0:
        from jaxsafe.graphs.gnn import GNNBisector

        gnn = GNNBisector.load()
    eps, info = build_pool(cfg, cfg.seed, cfg.graphs, gnn)
    if not eps:
        raise ValueError("no training episodes (all regions larger than max_nodes?)")
    pool = E.stack_episodes(eps)
    t_pool = time.perf_counter() - t_start
    model = ActorCritic(cfg.agent, rngs=nnx.Rngs(cfg.seed))
    graphdef, params = nnx.split(model, nnx.Param)
    optimizer = make_optimizer(cfg.optimizer, cfg.steps)
    step = jax.jit(make_step(a2c_loss(graphdef, cfg), optimizer), donate_argnums=0)
    P = len(eps)

    def batch_fn(k: int):
        rng = np.random.default_rng([cfg.seed, k])
        idx = rng.integers(0, P, cfg.episodes)
        warm = rng.integers(0, cfg.warmup + 1, cfg.episodes).astype(np.int32)
        key = rng.integers(0, 2**32, 2, dtype=np.uint64).astype(np.uint32)
        return jax.tree.map(lambda a: a[idx], pool), key, warm

    state = init_state(params, optimizer)
    state = train_loop(run, state, lambda s, b: step(s, b, None), batch_fn, cfg.steps,
                       checkpoint_every=cfg.checkpoint_every, fetch_every=10, desc=f"rl-{cfg.agent.task}")
    model = nnx.merge(graphdef, state.params)
    weights = out / WEIGHTS[cfg.agent.task]
    t_train = time.perf_counter() - t_start
    results = {"task": cfg.agent.task, "kind": cfg.agent.kind, "params": num_params(model),
               "episodes": P, "padded_shape": list(pool.nbr.shape[1:]), "pool": info,
               "pool_seconds": t_pool, "train_seconds": t_train, "weights": str(weights),
               **held_out(model, cfg)}
    model.save(weights, extra={"train": {"steps": cfg.steps, "graphs": cfg.graphs, "episodes": P,
                                         "seconds": round(t_train, 1)}})
    run.write_results(results)
    return results


def held_out(model: ActorCritic, cfg: RLTrainConfig) -> dict:
    """Median objective ratios on ``eval_graphs`` fresh Delaunay graphs (n 500..5000).

    Refinement: NC of ``rl`` / ``metis+rl`` over METIS's bisection. Separator: NS of
    the agent's separator over its start's. Coarsest-graph agent: NC over METIS's
    on the coarsest graph (fine degrees as volumes) and, after refinement by the
    shipped refinement agent, on the finest graph.
    """
    if cfg.eval_graphs == 0:
        return {}
    from jaxsafe.graphs.ordering import pattern
    from jaxsafe.graphs.partition import evaluate
    from jaxsafe.graphs.rl_drivers import objective_np, coarsest_bisect, refine_separators, rl_bisect

    rng = np.random.default_rng(cfg.seed + 4242)
    rows: dict[str, list] = {}
    for i in range(cfg.eval_graphs):
        adj, _ = delaunay(int(rng.integers(500, 5001)), 5.0 if i % 2 else 1.0, 1.0, seed=int(rng.integers(2**31)))
        base = metis_parts(adj, 2, 0)
        metis = evaluate(adj, base)["normalized_cut"]
        if cfg.agent.task == "refine":
            for start in ("metis", "metis-fine"):
                nc = evaluate(adj, rl_bisect(adj, model, start=start))["normalized_cut"]
                rows.setdefault(f"median_nc_ratio_to_metis_rl_{start}", []).append(nc / metis)
        elif cfg.agent.task == "coarsest":
            h = build_hierarchy(adj, coarsest_size=cfg.coarsest_size, seed=0)
            deg = np.asarray(adj.sum(axis=1)).ravel()
            for lv in h.levels[:-1]:
                deg = np.bincount(lv.cmap, weights=deg)
            c = h.coarsest
            ours = objective_np(c.adj, coarsest_bisect(c.adj, model, deg=deg, vw=c.vweights), deg, (1.0, 1.0))
            theirs = objective_np(c.adj, metis_parts(c.adj, 2, 0), deg, (1.0, 1.0))
            rows.setdefault("median_coarsest_nc_ratio_to_metis", []).append(ours / theirs)
            nc = evaluate(adj, rl_bisect(adj, coarsest="agent", coarsest_agent=model))["normalized_cut"]
            rows.setdefault("median_nc_ratio_to_metis_rl_coarsest_agent", []).append(nc / metis)
        else:
            p = pattern(adj)
            lab0 = start_separator(p, 0, cfg.separator_start == "metis")
            lab = refine_separators([p], [lab0], model)[0]
            ns = lambda x: np.sum(x == 2) * (1 / np.sum(x == 0) + 1 / np.sum(x == 1))  # noqa: E731
            rows.setdefault(f"median_ns_ratio_to_{cfg.separator_start}_start", []).append(ns(lab) / ns(lab0))
    return {k: float(np.median(v)) for k, v in rows.items()}


def plot_training(runs: dict[str, str | Path], path: str | Path, window: int = 10) -> Path:
    """Training curves (moving average of the rollout's relative objective gain and the entropy) of run directories."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxsafe.io import atomic_save_figure

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, run in runs.items():
        rows = RunDir(run, resume=True).metrics()
        steps = np.array([r["step"] for r in rows])
        for ax, key in zip(axes, ("relative_gain", "entropy")):
            y = np.array([r[key] for r in rows])
            k = min(window, len(y))
            smooth = np.convolve(y, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1:], smooth, label=label)
    axes[0].axhline(0.0, color="gray", lw=0.8)
    axes[0].set(xlabel="A2C step", ylabel="objective gain / start objective",
                title="rollout gain per episode (moving avg.)")
    axes[1].set(xlabel="A2C step", ylabel="policy entropy (nats)", title="entropy")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    out = atomic_save_figure(fig, path)
    plt.close(fig)
    return out


def export_checkpoint(run: str | Path, step: int | None = None, path: str | Path | None = None) -> Path:
    """Weights of checkpoint ``step`` (default: the latest) of an A2C run directory, as a safetensors file."""
    from jaxsafe.config import load_config

    run = Path(run)
    cfg = load_config(RLTrainConfig, run / "config.yaml")
    model = ActorCritic(cfg.agent, rngs=nnx.Rngs(cfg.seed))
    graphdef, params = nnx.split(model, nnx.Param)
    target = init_state(params, make_optimizer(cfg.optimizer, cfg.steps))
    rd = RunDir(run, resume=True)
    step = rd.latest_step() if step is None else step
    state = rd.restore(step, target)
    out = Path(path) if path is not None else run / f"step{step}_{WEIGHTS[cfg.agent.task]}"
    nnx.merge(graphdef, state.params).save(out, extra={"train": {"checkpoint_step": int(step)}})
    return out
