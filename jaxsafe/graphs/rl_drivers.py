"""Paper B's drivers: greedy RL refinement with rollback, multilevel bisection, k-way, RL separators.

* :func:`greedy` — the test-time rollout, one compiled ``lax.while_loop`` per
  padded episode shape (params are arguments, so every graph of a bucket shares
  the program; ``vmap``ped over several episodes at once): at each step the
  agent's most likely allowed vertex moves and is locked; stop after ``max_steps``
  moves (the cut, paper B; the separator's ``2|S|``), after ``patience`` moves in a
  row without a new best state, or when no move is allowed; return the best state
  seen (rollback).
* :func:`refine_partition` — passes of ``greedy`` on the region around the
  current cut (re-extracted each pass) while a pass improves the objective.
* :func:`coarsest_bisect` — paper B's coarsest-graph agent: from every vertex
  in A but one, greedy moves (at most n, locked) and the best state seen, for
  several start vertices at once (one ``vmap``ped call), keeping the best.
* :func:`rl_bisect` — ``start="metis"``: coarsen (heavy-edge matching) to
  ``coarsest_size`` vertices, bisect the coarsest graph (``coarsest="metis"``,
  or ``"agent"``: :func:`coarsest_bisect`), then project and
  refine level by level (volumes of coarse vertices = sums of fine degrees, so
  every level optimizes the fine normalized cut); ``start="gnn"``: paper A's
  GNN bisection refined on the finest level; ``start="metis-fine"``: METIS's own
  bisection refined on the finest level.
* :func:`rl_partition` — recursive k-way with target-weighted objectives.
* :func:`rl_separators` — vertex separators of many subgraphs at once: METIS's
  vertex separator (or METIS bisection + König cover without libmetis), then the
  separator agent's greedy rollout on those with at least ``agent_min_vertices``
  vertices, grouped by padded shape, one call per shape (nested dissection
  batches the blocks of one depth through this).
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from flax import nnx

from jaxsafe.graphs import rl_env as E
from jaxsafe.graphs.baselines import metis_parts
from jaxsafe.graphs.batching import bucket
from jaxsafe.graphs.coarsen import build_hierarchy
from jaxsafe.graphs.programs import Program
from jaxsafe.graphs.rl_agents import ActorCritic

# Greedy rollouts stop after this many moves in a row without a new best state. On
# Delaunay graphs (seed 2, n 10³–10⁵) 20 gave the same normalized cut as no limit up
# to 3·10⁴ (1.045 vs 1.039× METIS at 10⁵) in 1/3–1/10 of the time (docs/graphs.md).
PATIENCE = 20
# The separator agent improved none of METIS's vertex separators at patience 20, 5 or 1
# (nested dissection of Delaunay n = 5·10⁴, 642 blocks); 5 costs a third of 20's moves.
SEPARATOR_PATIENCE = 5
# Nested dissection: blocks below this size keep METIS's separator (no agent rollout). At
# 10⁵ (Delaunay, seed 1) the agent improved 1 of 1,248 blocks; with 1,000 the order and
# fill were the same and the agent's time fell from 1.7 s to 0.5 s (docs/graphs.md).
AGENT_MIN_VERTICES = 1000
# Refinement episodes have at least this many rows: the small levels of every hierarchy
# then share one padded shape, so a fresh process traces and loads fewer programs.
REFINE_MIN_ROWS = 512

# Start vertices the coarsest-graph agent tries (one vmapped rollout each; the best is kept). On 10
# Delaunay coarsest graphs (seeds 100-109, not the benchmark's) the median NC over METIS's was 1.07 and 1.15
# with 8 (checkpoints 125 and 225 of the shipped run), 0.95, 0.93 and 0.93 with 32 (125, 225, final 400).
COARSEST_TRIES = 32

ENVS = {
    "refine": (E.refine_reset, E.refine_step, E.refine_allowed, E.refine_features),
    "coarsest": (E.refine_reset, E.refine_step, E.refine_allowed, E.coarsest_features),
    "separator": (E.separator_reset, E.separator_step, E.separator_allowed, E.separator_features),
}


def env_fns(task: str, objective: str = "nc"):
    reset, step, allowed, features = ENVS[task]
    if task != "separator":
        step = functools.partial(step, kind=objective)
    return reset, step, allowed, features


def state_objective(task: str, ep: E.Episode, st, objective: str = "nc"):
    if task != "separator":
        return E.partition_objective(st.cut, st.vol, st.size, ep.targets, objective)
    return E.separator_objective(st.size)


def state_labels(st):
    return st.parts if isinstance(st, E.RefineState) else st.labels


def policy(model: ActorCritic, task: str, ep: E.Episode, st, locked: jax.Array | None = None, edges=None):
    """``(masked logits, value, allowed)`` of the agent in state ``st``; ``locked`` vertices are not allowed.

    ``edges``: the region's compact edge list (:func:`~jaxsafe.graphs.rl_env.region_edges`, or
    :func:`~jaxsafe.graphs.rl_env.region_ell` for a SAGE agent), given by the unbatched greedy
    rollout; otherwise the agent sees all ``N·K`` slots.
    """
    _, _, allowed, features = ENVS[task]
    logits, value = model(E.region_graph(ep, edges), features(ep, st), ep.movable)
    ok = allowed(ep, st)
    if locked is not None:
        ok = ok & ~locked
    return jnp.where(ok, logits, -jnp.inf), value, ok


def _greedy(graphdef, params, ep: E.Episode, max_steps, patience, task: str, objective: str, edges=None,
            lock: bool = True):
    model = nnx.merge(graphdef, params)
    reset, step, _, _ = env_fns(task, objective)
    st0 = reset(ep)
    obj0 = state_objective(task, ep, st0, objective)

    def cond(c):
        return (c[3] < max_steps) & ~c[4] & (c[6] < patience)

    def body(c):
        st, best, best_obj, i, _, locked, since = c
        logits, _, ok = policy(model, task, ep, st, locked if lock else None, edges)
        a = jnp.argmax(logits).astype(jnp.int32)
        stop = ~ok.any() | (a == st.last)
        new, _ = step(ep, st, a)
        obj = state_objective(task, ep, new, objective)
        better = ~stop & (obj < best_obj - 1e-9 * jnp.abs(best_obj))
        st = jax.tree.map(lambda x, y: jnp.where(stop, x, y), st, new)
        best = jnp.where(better, state_labels(new), best)
        return (st, best, jnp.where(better, obj, best_obj), i + jnp.where(stop, 0, 1), stop,
                locked.at[a].set(True), jnp.where(better, 0, since + 1))

    _, best, best_obj, steps, _, _, _ = jax.lax.while_loop(
        cond, body, (st0, state_labels(st0), obj0, jnp.int32(0), jnp.bool_(False), jnp.zeros(ep.movable.shape, bool),
                     jnp.int32(0)))
    return best, best_obj, obj0, steps


def _greedy_one(graphdef, params, ep, edges, max_steps, patience, task, objective):
    return _greedy(graphdef, params, ep, max_steps, patience, task, objective, edges)


def _greedy_many(graphdef, params, eps, max_steps, patience, task, objective):
    return jax.vmap(lambda e, m: _greedy(graphdef, params, e, m, patience, task, objective))(eps, max_steps)


# kept on disk by the CLI (jaxsafe.graphs.programs): a warm process does not trace the rollout
_greedy_one = Program(_greedy_one, "greedy_one", static_argnums=(0, 6, 7))
_greedy_many = Program(_greedy_many, "greedy_many", static_argnums=(0, 5, 6))


def greedy(agent: ActorCritic, ep: E.Episode, max_steps: int | np.ndarray, objective: str = "nc",
           patience: int | None = None):
    """Greedy rollout with rollback; a batched ``ep`` (leading axis) runs under ``vmap``.

    ``patience``: stop after this many moves in a row without a new best state
    (default: never; Fiduccia–Mattheyses-style early stop). Returns
    ``(best labels, best objective, start objective, moves made)``.
    """
    graphdef, params = nnx.split(agent, nnx.Param)
    task = agent.cfg.task
    # NumPy scalars, not jnp ones: jnp.int32(x) compiles a conversion program in a fresh process
    p = np.int32(np.iinfo(np.int32).max if patience is None else patience)
    nbr = ep["nbr"] if isinstance(ep, dict) else ep.nbr
    if np.ndim(nbr) == 3:
        m = np.broadcast_to(np.asarray(max_steps, np.int32), np.shape(nbr)[:1])
        return _greedy_many(graphdef, params, E.to_jax(ep), m, p, task, objective)
    # one episode: the agent aggregates over the region's real edges only. At 10⁵ Delaunay vertices
    # (6,144 rows × 32 slots, 16,384 edges) a move took 2.1 ms, against 9 ms scattering all N·K
    # slots and 2.3 ms gathering them (loaded machine); a SAGE agent gathers them in ELL slots
    edges = jax.device_put(E.region_ell(ep) if agent.cfg.kind == "sage" else E.region_edges(ep))
    return _greedy_one(graphdef, params, E.to_jax(ep), edges, np.int32(max_steps), p, task, objective)


# ---------------------------------------------------------------- partitions
def objective_np(adj: sp.csr_matrix, parts: np.ndarray, deg: np.ndarray, targets=(1.0, 1.0)) -> float:
    """``cut·(t₀/vol A + t₁/vol B)`` of a 0/1 partition recomputed in NumPy (volumes from ``deg``)."""
    coo = adj.tocoo()
    cut = coo.data[parts[coo.row] != parts[coo.col]].sum() / 2
    vol = np.bincount(parts, weights=deg, minlength=2)
    return np.inf if vol.min() <= 0 else cut * (targets[0] / vol[0] + targets[1] / vol[1])


def refine_partition(adj: sp.csr_matrix, parts: np.ndarray, agent: ActorCritic, *, deg=None, vw=None,
                     targets=(1.0, 1.0), hops: int = 3, passes: int = 3, max_steps: int | None = None,
                     objective: str = "nc", stats: dict | None = None, patience: int | None = PATIENCE) -> np.ndarray:
    """Greedy RL passes on the region around the cut; never returns a worse partition than ``parts``."""
    parts = np.asarray(parts).astype(np.int64)
    for _ in range(passes):
        ep, sub = E.extract_episode(adj, parts, hops=hops, deg=deg, vw=vw, targets=targets, min_rows=REFINE_MIN_ROWS)
        if not ep["movable"].any():
            break
        steps = int(np.ceil(ep["cut0"])) if max_steps is None else max_steps
        best, best_obj, obj0, moves = jax.device_get(greedy(agent, ep, max(steps, 1), objective, patience))
        if stats is not None:
            stats["moves"] = stats.get("moves", 0) + int(moves)
            stats["calls"] = stats.get("calls", 0) + 1
        if not best_obj < obj0:
            break
        parts = E.scatter_back(parts, sub, best)
    return parts


def _two_sided(adj, parts, seed):
    if np.bincount(parts, minlength=2).min() == 0:  # METIS leaves a side empty on tiny graphs
        from jaxsafe.graphs.partition import sweep_cut
        from jaxsafe.graphs.baselines import fiedler_vector

        parts = sweep_cut(adj, fiedler_vector(adj, "auto", seed=seed))
    return parts


def coarsest_bisect(adj: sp.csr_matrix, agent: ActorCritic, *, deg=None, vw=None, targets=(1.0, 1.0),
                    tries: int = COARSEST_TRIES, seed: int = 0, objective: str = "nc") -> np.ndarray:
    """Bisection of a small graph by the coarsest-graph agent (paper B), without METIS.

    ``tries`` start vertices (drawn with ``seed``) each give an episode with
    every other vertex in A (:func:`~jaxsafe.graphs.rl_env.coarsest_episode`);
    one ``vmap``ped greedy rollout moves up to n vertices (each once) and keeps
    the best state seen. Returns the best of those states (minimum
    ``cut·(t₀/vol A + t₁/vol B)``, with ``deg`` as volumes: the fine degrees on a
    coarse level). Paper B keeps the minimum cut within a ±1 % balance window;
    we keep the minimum normalized cut, the objective every level refines.
    """
    n = adj.shape[0]
    starts = np.random.default_rng(seed).choice(n, size=min(tries, n), replace=False)
    eps = [E.coarsest_episode(adj, int(v), deg=deg, vw=vw, targets=targets) for v in starts]
    width = bucket(len(eps), 1)
    batch = E.stack_episodes(eps + [eps[0]] * (width - len(eps)))
    best, best_obj, _, _ = jax.device_get(greedy(agent, batch, n, objective))
    return np.asarray(best[int(np.argmin(best_obj[:len(eps)]))][:n]).astype(np.int64)


def rl_bisect(adj: sp.csr_matrix, agent: ActorCritic | None = None, *, start: str = "metis", seed: int = 0,
              targets=(1.0, 1.0), coarsest_size: int = 100, hops: int = 3, gnn_model=None,
              seconds: dict | None = None, objective: str = "nc", patience: int | None = PATIENCE,
              coarsest: str = "metis", coarsest_agent: ActorCritic | None = None) -> np.ndarray:
    """Bisection of a connected graph: a start partition refined by the agent (see module docstring).

    ``coarsest`` (with ``start="metis"``): who bisects the coarsest graph, ``"metis"`` or
    ``"agent"`` (``coarsest_agent``, default the shipped coarsest-graph agent).
    """
    if coarsest not in ("metis", "agent"):
        raise ValueError(f"coarsest must be 'metis' or 'agent', got {coarsest!r}")
    agent = ActorCritic.load() if agent is None else agent
    seconds = {} if seconds is None else seconds
    adj = sp.csr_matrix(adj)
    n = adj.shape[0]
    if n <= 2:
        return np.arange(n, dtype=np.int64) % 2
    _greedy_one.prefetch()  # its executables load while the start partition is computed
    w = (targets[0] / targets[1], targets[1] / targets[0])
    t0 = time.perf_counter()
    if start in ("gnn", "metis-fine"):
        if start == "gnn":
            from jaxsafe.graphs.partition import bisect

            parts = bisect(adj, "gnn", model=gnn_model, seed=seed, targets=targets, seconds=seconds)
        else:
            parts = _two_sided(adj, metis_parts(adj, 2, seed), seed)
        t1 = time.perf_counter()
        seconds["start"] = seconds.get("start", 0.0) + t1 - t0
        parts = refine_partition(adj, parts, agent, targets=w, hops=hops, objective=objective, patience=patience)
        seconds["rl_refinement"] = seconds.get("rl_refinement", 0.0) + time.perf_counter() - t1
        return parts
    h = build_hierarchy(adj, coarsest_size=coarsest_size, seed=seed)
    degs = [np.asarray(adj.sum(axis=1)).ravel()]
    for lv in h.levels[:-1]:
        degs.append(np.bincount(lv.cmap, weights=degs[-1], minlength=int(lv.cmap.max()) + 1))
    t1 = time.perf_counter()
    seconds["hierarchy"] = seconds.get("hierarchy", 0.0) + t1 - t0
    coarse = h.coarsest
    if coarsest == "agent":
        coarsest_agent = ActorCritic.load(task="coarsest") if coarsest_agent is None else coarsest_agent
        parts = coarsest_bisect(coarse.adj, coarsest_agent, deg=degs[-1], vw=coarse.vweights, targets=w, seed=seed,
                                objective=objective)
    else:
        parts = _two_sided(coarse.adj, metis_parts(coarse.adj, 2, seed), seed)
    t2 = time.perf_counter()
    seconds["coarsest"] = seconds.get("coarsest", 0.0) + t2 - t1
    for level in range(h.depth - 1, -1, -1):
        lv = h.levels[level]
        if level < h.depth - 1:
            parts = parts[lv.cmap]
        parts = refine_partition(lv.adj, parts, agent, deg=degs[level], vw=lv.vweights, targets=w, hops=hops,
                                 objective=objective, patience=patience)
    seconds["rl_refinement"] = seconds.get("rl_refinement", 0.0) + time.perf_counter() - t2
    return parts


def rl_partition(adj: sp.csr_matrix, k: int = 2, agent: ActorCritic | None = None, *, start: str = "metis",
                 seed: int = 0, seconds: dict | None = None, gnn_model=None, coarsest: str = "metis",
                 coarsest_agent: ActorCritic | None = None) -> np.ndarray:
    """k-way by recursive RL bisection (sides weighted ``⌊k/2⌋ : ⌈k/2⌉``); components packed as in ``bisect``."""
    from jaxsafe.graphs.partition import components

    agent = ActorCritic.load() if agent is None else agent
    if coarsest == "agent" and coarsest_agent is None:
        coarsest_agent = ActorCritic.load(task="coarsest")
    seconds = {} if seconds is None else seconds
    n = adj.shape[0]
    if k == 1 or n == 1:
        return np.zeros(n, np.int64)
    k0 = k // 2
    ncomp, labels = components(adj)
    if ncomp == 1:
        sides = rl_bisect(adj, agent, start=start, seed=seed, targets=(k0, k - k0), seconds=seconds,
                          gnn_model=gnn_model, coarsest=coarsest, coarsest_agent=coarsest_agent)
    else:  # largest component refined, the others packed (as partition.bisect does)
        from jaxsafe.graphs.partition import bisect

        sides = bisect(adj, "metis", seed=seed, targets=(k0, k - k0), seconds=seconds)
    parts = np.empty(n, np.int64)
    offset = 0
    for s, ks in ((0, k0), (1, k - k0)):
        idx = np.flatnonzero(sides == s)
        if len(idx) == 0:
            continue
        parts[idx] = offset + rl_partition(adj[idx][:, idx], ks, agent, start=start, seed=seed, seconds=seconds,
                                           gnn_model=gnn_model, coarsest=coarsest, coarsest_agent=coarsest_agent)
        offset += ks
    return parts


# ---------------------------------------------------------------- separators
def refine_separators(subs: list[sp.csr_matrix], labels: list[np.ndarray], agent: ActorCritic, *, hops: int = 2,
                      passes: int = 2, stats: dict | None = None, patience: int | None = SEPARATOR_PATIENCE
                      ) -> list[np.ndarray]:
    """Separator agent on many (graph, labels) pairs: one vmapped greedy call per padded shape and pass."""
    labels = [np.asarray(x).astype(np.int64) for x in labels]
    active = list(range(len(subs)))
    for _ in range(passes):
        groups: dict[tuple[int, int], list] = {}
        for i in active:
            if not np.any(labels[i] == E.SEP):
                continue
            ep, sub = E.extract_episode(subs[i], labels[i], hops=hops, separator=True)
            groups.setdefault(ep["nbr"].shape, []).append((i, ep, sub))
        improved = []
        for items in groups.values():
            # batch padded to a power of two (copies of the first episode with 0 steps): few compiled shapes
            eps = [ep for _, ep, _ in items]
            steps = [max(2 * int(ep["size0"][2]), 1) for ep in eps]
            width = bucket(len(eps), 1)
            batch = E.stack_episodes(eps + [eps[0]] * (width - len(eps)))
            steps = np.array(steps + [0] * (width - len(eps)), np.int32)
            best, best_obj, obj0, moves = jax.device_get(greedy(agent, batch, steps, patience=patience))
            if stats is not None:
                stats["calls"] = stats.get("calls", 0) + 1
                stats["moves"] = stats.get("moves", 0) + int(np.sum(moves))
            for j, (i, _, sub) in enumerate(items):
                if best_obj[j] < obj0[j]:
                    labels[i] = E.scatter_back(labels[i], sub, best[j])
                    improved.append(i)
        if stats is not None:
            stats["improved"] = stats.get("improved", 0) + len(improved)
        active = improved
        if not active:
            break
    return labels


def start_separator(p: sp.csr_matrix, seed: int = 0, metis: bool = True) -> np.ndarray:
    """The separator agent's start on the pattern ``p``: METIS's vertex separator when libmetis is installed
    (and ``metis``), else (or when it leaves a side empty) the König cover of a METIS bisection."""
    from jaxsafe.graphs import metis_separator
    from jaxsafe.graphs.ordering import vertex_separator_from_bisection

    labels = metis_separator.metis_vertex_separator(p, seed) if metis and metis_separator.available() else None
    if labels is None or min(np.sum(labels == 0), np.sum(labels == 1)) == 0:
        labels = vertex_separator_from_bisection(p, _two_sided(p, metis_parts(p, 2, seed), seed))
    return labels


def rl_separators(subs: list[sp.csr_matrix], agent: ActorCritic | None = None, *, seed: int = 0,
                  stats: dict | None = None, patience: int | None = SEPARATOR_PATIENCE,
                  agent_min_vertices: int = AGENT_MIN_VERTICES) -> list[np.ndarray]:
    """Separators (0 = A, 1 = B, 2 = S) of connected subgraphs, refined by the agent.

    Start: METIS's own vertex separator (``METIS_ComputeVertexSeparator``) when
    libmetis is installed, else a METIS bisection + König cover. Subgraphs with
    fewer than ``agent_min_vertices`` vertices keep the start separator.
    """
    from jaxsafe.graphs.ordering import pattern

    agent = ActorCritic.load(task="separator") if agent is None else agent
    t0 = time.perf_counter()
    subs = [pattern(s) for s in subs]
    start = [start_separator(p, seed) for p in subs]
    t1 = time.perf_counter()
    big = [i for i, p in enumerate(subs) if p.shape[0] >= agent_min_vertices]
    out = list(start)
    for i, labels in zip(big, refine_separators([subs[i] for i in big], [start[i] for i in big], agent, stats=stats,
                                                patience=patience)):
        out[i] = labels
    if stats is not None:
        stats["metis_cover_seconds"] = stats.get("metis_cover_seconds", 0.0) + t1 - t0
        stats["agent_seconds"] = stats.get("agent_seconds", 0.0) + time.perf_counter() - t1
    return out
