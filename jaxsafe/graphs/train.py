"""Training paper A's two modules on generated Delaunay graphs (``jaxsafe graphs train``).

Phase 1 trains the embedding module with the Rayleigh-quotient loss; phase 2
trains the partitioning module with the expected-normalized-cut loss on inputs
produced by the trained embedding module (so it sees at training time what it
sees at inference). Each phase is a :class:`~jaxsafe.runs.RunDir`
(``OUT/embedding``, ``OUT/partition``) driven by :func:`~jaxsafe.runs.train_loop`,
so a killed run resumes exactly; the final weights go to
``OUT/gnn_bisection.safetensors`` and a held-out comparison with METIS to
``OUT/results.json``.

Batching: graphs are grouped by node bucket (power of two above n); a batch is
``accumulate`` graphs of one group, every level padded to the group's sizes
(:func:`~jaxsafe.graphs.batching.group_sizes`), run through ``vmap`` — the mean
of their losses is paper A's gradient accumulation over 5 graphs. One
compilation per group. With ``data_parallel`` > 1 the graphs of a batch are
split over a mesh's ``data`` axis (parameters replicated; the mean of the
losses becomes a cross-device reduction), so ``accumulate`` must be a multiple
of it; the updates equal the single-device ones within float32 rounding (tested
on 8 simulated CPU devices).

The paper's budget (3,000 graphs × 120 epochs, then 30 graphs × 500 epochs,
Adam 1e-4) takes hours here; the defaults (configs/graphs/train.yaml) train in
about a quarter of an hour on 2 CPU cores with a larger learning rate.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from jaxsafe.graphs.batching import PaddedLevel, bucket, group_sizes, pad_levels
from jaxsafe.graphs.coarsen import build_hierarchy
from jaxsafe.graphs.embedding import coarsest_features, embed
from jaxsafe.graphs.generators import delaunay, family_graph
from jaxsafe.graphs.config import ModelConfig, PhaseConfig, TrainConfig  # noqa: F401  (re-exported)
from jaxsafe.graphs.gnn import WEIGHTS_FILE, GNNBisector, partition_input
from jaxsafe.graphs.losses import expected_normalized_cut, rayleigh_loss
from jaxsafe.graphs.partition_module import vcycle
from jaxsafe.graphs.partition import bisect, evaluate
from jaxsafe.errors import UserError
from jaxsafe.io import atomic_write_json
from jaxsafe.optim.factory import make_optimizer
from jaxsafe.parallel import data_parallel_mesh, replicate, shard_batch
from jaxsafe.runs import RunDir, train_loop
from jaxsafe.train import init_state, make_step


@dataclasses.dataclass(frozen=True)
class _Graph:
    adj: object
    hierarchy: object


def generate(phase: PhaseConfig, cfg: TrainConfig, seed: int) -> list[_Graph]:
    """Deterministic training graphs, n uniform in range, from ``phase.families`` in turn.

    Delaunay graphs lie in the unit square or [0,2]×[0,1] (``wide_fraction``); the
    other families are :func:`~jaxsafe.graphs.generators.family_graph`'s. With the
    default (Delaunay only) the draws are those of the shipped weights' run.
    """
    rng = np.random.default_rng(seed)
    out = []
    for i in range(phase.graphs):
        n = int(rng.integers(phase.n_min, phase.n_max + 1))
        width = 2.0 if rng.random() < phase.wide_fraction else 1.0
        adj = family_graph(phase.families[i % len(phase.families)], n, int(rng.integers(2**31)), rng, width)
        h = build_hierarchy(adj, coarsest_size=cfg.model.coarsest_size, max_levels=cfg.max_levels, seed=i)
        out.append(_Graph(adj, h))
    return out


def make_batches(graphs: list[_Graph], phase: PhaseConfig, features) -> list[tuple]:
    """Group by node bucket and stack ``accumulate`` graphs per batch (short groups repeat graphs).

    A batch is ``(levels, depth, features)`` with a leading batch axis on every
    array; ``features(h, levels)`` gives the network input for one graph.
    """
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(graphs):
        groups.setdefault(bucket(g.adj.shape[0] + 1), []).append(i)
    batches = []
    for idx in groups.values():
        sizes = group_sizes([graphs[i].hierarchy for i in idx])
        for start in range(0, len(idx), phase.accumulate):
            items = []
            for j in range(phase.accumulate):
                h = graphs[idx[(start + j) % len(idx)]].hierarchy
                levels = pad_levels(h, sizes)
                items.append((levels, np.int32(h.depth), features(h, levels)))
            batches.append(jax.tree.map(lambda *xs: np.stack(xs), *items))
    return batches


def data_mesh(cfg: TrainConfig) -> Mesh | None:
    """The data-parallel mesh of ``cfg.data_parallel`` devices (None for one device)."""
    mesh = data_parallel_mesh(cfg.data_parallel)
    if mesh is not None:
        count = mesh.shape["data"]
        for name, phase in (("embedding", cfg.embedding), ("partition", cfg.partition)):
            if phase.accumulate % count:
                raise UserError(f"{name}.accumulate={phase.accumulate} is not a multiple of data_parallel={count}")
    return mesh


def _train_phase(run: RunDir, module: nnx.Module, loss_one, batches: list, phase: PhaseConfig,
                 cfg: TrainConfig, desc: str) -> nnx.Module:
    graphdef, params = nnx.split(module, nnx.Param)
    mesh = data_mesh(cfg)
    steps = phase.epochs * len(batches)
    optimizer = make_optimizer(phase.optimizer, steps)

    def loss_fn(params, batch, _frozen):
        return jnp.mean(jax.vmap(lambda b: loss_one(nnx.merge(graphdef, params), *b))(batch)), {}

    step = jax.jit(make_step(loss_fn, optimizer))
    steps_per_epoch = len(batches)

    def batch_fn(k: int):
        order = np.random.default_rng([cfg.seed, k // steps_per_epoch]).permutation(steps_per_epoch)
        batch = batches[order[k % steps_per_epoch]]
        return batch if mesh is None else shard_batch(batch, mesh)

    state = replicate(init_state(params, optimizer), mesh)
    state = train_loop(run, state, lambda s, b: step(s, b, None), batch_fn, steps,
                       checkpoint_every=cfg.checkpoint_every, desc=desc)
    return nnx.merge(graphdef, state.params)


def _methods(model):
    return lambda name, *args: getattr(model, name)(*args)


def _embedding_loss(kind: str):
    def loss(model, levels: list[PaddedLevel], depth, x0):
        q = embed(_methods(model), levels, x0, depth)
        return rayleigh_loss(q, levels[0].graph, levels[0].n, kind)

    return loss


def _partition_loss(model, levels: list[PaddedLevel], depth, f_in):
    return expected_normalized_cut(vcycle(_methods(model), levels, f_in, depth), levels[0].graph)


def train(cfg: TrainConfig, out: str | Path, resume: bool = False) -> dict:
    """Train both phases into ``out``; returns the results dict (also in ``out/results.json``)."""
    out = Path(out)
    data_mesh(cfg)  # fail on a bad data_parallel before generating graphs
    t_start = time.perf_counter()
    model = GNNBisector.init(cfg.model, cfg.seed)

    run = RunDir(out / "embedding", resume=resume)
    run.save_config(cfg)
    graphs = generate(cfg.embedding, cfg, cfg.seed)

    def start_features(h, levels):
        return coarsest_features(h.coarsest, cfg.model.laplacian, levels[-1].mask.shape[0])

    batches = make_batches(graphs, cfg.embedding, start_features)
    model.embedding = _train_phase(run, model.embedding, _embedding_loss(cfg.model.laplacian), batches,
                                   cfg.embedding, cfg, "embedding")
    t_embed = time.perf_counter() - t_start

    run = RunDir(out / "partition", resume=resume)
    run.save_config(cfg)
    graphs = generate(cfg.partition, cfg, cfg.seed + 1)

    def fiedler_input(h, levels):
        f = model.fiedler(h, pad_levels(h))
        f_pad = np.zeros(levels[0].mask.shape[0], np.float32)
        f_pad[: len(f)] = f
        return np.asarray(partition_input(f_pad, levels[0].mask, levels[0].n))

    batches = make_batches(graphs, cfg.partition, fiedler_input)
    model.partition = _train_phase(run, model.partition, _partition_loss, batches, cfg.partition, cfg, "partition")
    model = GNNBisector(cfg.model, model.embedding, model.partition)
    model.save(out / WEIGHTS_FILE)
    results = {"train_seconds": time.perf_counter() - t_start, "embedding_seconds": t_embed,
               "weights": str(out / WEIGHTS_FILE), **held_out_comparison(model, cfg)}
    run.write_results(results)
    atomic_write_json(out / "results.json", results)
    return results


def held_out_comparison(model: GNNBisector, cfg: TrainConfig) -> dict:
    """Median NC ratio to METIS on ``cfg.eval_graphs`` fresh Delaunay graphs (n 500..5000, square and [0,5]×[0,1])."""
    if cfg.eval_graphs == 0:
        return {}
    rng = np.random.default_rng(cfg.seed + 12345)
    rows = {"gnn_network": [], "gnn_sweep": [], "spectral": []}
    for i in range(cfg.eval_graphs):
        adj, _ = delaunay(int(rng.integers(500, 5001)), 5.0 if i % 2 else 1.0, 1.0, seed=int(rng.integers(2**31)))
        metis = evaluate(adj, bisect(adj, "metis"))["normalized_cut"]
        for name, method, refine in (("gnn_network", "gnn", "none"), ("gnn_sweep", "gnn", "sweep"),
                                     ("spectral", "spectral", "sweep")):
            nc = evaluate(adj, bisect(adj, method, refine=refine, model=model))["normalized_cut"]
            rows[name].append(nc / metis)
    return {f"median_nc_ratio_to_metis_{k}": float(np.median(v)) for k, v in rows.items()}
