"""``jaxsafe partition``, ``jaxsafe order`` and ``jaxsafe graphs train`` (and the demo step).

``jaxsafe partition GRAPH [--parts K] [--method gnn|metis|spectral|scotch] [--out PARTS.txt]``
prints one JSON object: ``n``, ``parts``, ``cut``, ``normalized_cut``,
``balance``, ``seconds`` (end to end after reading the file) and the time
breakdown. ``jaxsafe order GRAPH [--method M] [--out PERM.txt]`` prints ``n``,
``nnz`` (of the factored matrix ``L + I``), ``method``, ``fill_in`` and ``seconds``
(see :mod:`jaxsafe.graphs.ordering`). ``jaxsafe graphs train --out DIR [--resume] [--config YAML] [key=value ...]``
trains both GNN modules (see :mod:`jaxsafe.graphs.train`).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

from jaxsafe.cli import add_run_arguments, nonnegative_int, positive_int
from jaxsafe.errors import UserError

# The choices of the partition/order options, spelled out here so that building the
# parser imports nothing heavy; tests/cli/test_fast.py checks them against
# graphs.io.FORMATS, graphs.partition.METHODS/REFINEMENTS and graphs.ordering.ORDERINGS/ENGINES.
FORMATS = ("mtx", "metis", "edgelist")
METHODS = ("gnn", "metis", "spectral", "scotch")
REFINEMENTS = ("none", "sweep", "fm")
ORDERINGS = ("natural", "metis", "scotch", "colamd", "mmd", "nd-gnn", "nd-metis-bisect", "nd-spectral", "nd-rl")
# paper B's RL refinement (jaxsafe.graphs.rl_drivers): the start partition of each method
RL_METHODS = {"rl": "metis", "gnn+rl": "gnn", "metis+rl": "metis-fine"}
ENGINES = ("superlu", "symbolic")


def register(subparsers) -> None:
    p = subparsers.add_parser("partition", help="partition a graph file (GNN of paper A, METIS, spectral or Scotch)")
    p.add_argument("graph", type=Path, help="graph file: .mtx, .graph/.metis (METIS), .edges/.el/.txt (0-based edge list)")
    p.add_argument("--parts", type=positive_int, default=2,
                   help="number of parts K (default 2; K > 2: metis/scotch k-way, others by recursive bisection)")
    p.add_argument("--method", choices=METHODS + tuple(RL_METHODS), default="gnn",
                   help="partitioner (default gnn; scotch needs the Scotch 7 library: Debian/Ubuntu libscotch-7.0); "
                        "rl: METIS on the coarsest graph + RL refinement at every level, gnn+rl / metis+rl: "
                        "RL refinement of the GNN / METIS bisection")
    p.add_argument("--refine", choices=REFINEMENTS, default="sweep",
                   help="refinement for gnn/spectral: none (gnn network alone), sweep (default), fm (sweep + boundary passes)")
    p.add_argument("--format", choices=FORMATS, default=None, help="file format (default: from the suffix)")
    p.add_argument("--unweighted", action="store_true", help="ignore stored values, unit edge weights")
    p.add_argument("--weights", type=Path, default=None, help="GNN weights file (default: the shipped weights)")
    p.add_argument("--agent", type=Path, default=None, help="RL refinement agent weights (default: the shipped ones)")
    p.add_argument("--coarsest", choices=("metis", "agent"), default="metis",
                   help="rl: who bisects the coarsest graph, METIS (default) or paper B's coarsest-graph agent")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write one part id per line to this file")
    p.set_defaults(func=run_partition)

    o = subparsers.add_parser("order", help="fill-reducing ordering of a sparse matrix's graph and its SuperLU fill-in")
    o.add_argument("graph", type=Path, help="graph file (formats as for partition)")
    o.add_argument("--method", choices=ORDERINGS, default="metis", help="ordering (default metis: METIS NodeND)")
    o.add_argument("--engine", choices=ENGINES, default="superlu",
                   help="fill-in count: superlu (spec recipe, default) or symbolic (same number, no factorization)")
    o.add_argument("--format", choices=FORMATS, default=None, help="file format (default: from the suffix)")
    o.add_argument("--weights", type=Path, default=None, help="GNN weights file for nd-gnn (default: the shipped weights)")
    o.add_argument("--agent", type=Path, default=None, help="RL separator agent weights for nd-rl (default: the shipped ones)")
    o.add_argument("--seed", type=nonnegative_int, default=0)
    o.add_argument("--out", type=Path, default=None, help="write the order, one vertex id per line (position order)")
    o.set_defaults(func=run_order)

    g = subparsers.add_parser("graphs", help="graph-partitioning tools (train the GNN bisector)")
    gsub = g.add_subparsers(dest="graphs_command", metavar="COMMAND")
    t = gsub.add_parser("train", help="train paper A's embedding and partitioning modules on Delaunay graphs")
    add_run_arguments(t, config_help="YAML config (default: built-in, = configs/graphs/train.yaml)",
                      out_help="run directory", overrides_help="key=value overrides, e.g. embedding.epochs=5")
    t.set_defaults(func=run_train)
    r = gsub.add_parser("train-rl", help="train paper B's RL agent (refinement, separator or coarsest-graph) with A2C")
    add_run_arguments(r, config_help="YAML config (default: built-in RLTrainConfig)", out_help="run directory",
                      overrides_help="key=value overrides, e.g. agent.task=separator steps=50", overwrite=False)
    r.set_defaults(func=run_train_rl)
    g.set_defaults(func=lambda args: (g.print_help(), 2)[1])


def _enable_compilation_cache() -> None:
    """Reuse XLA compilations and compiled programs across CLI invocations.

    Per-level GNN functions and RL rollouts take seconds to compile; a warm process
    would still trace and lower each before the compilation cache can serve it, so
    their compiled executables are kept and loaded directly (:mod:`jaxsafe.graphs.programs`).
    """
    from jaxsafe.cli import enable_compilation_cache
    from jaxsafe.graphs import programs

    programs.set_directory(enable_compilation_cache() / "programs")


def _preflight(args: argparse.Namespace) -> None:
    from jaxsafe.io import check_input_file, check_output_file

    check_input_file(args.graph, "graph file")
    if args.weights is not None:
        check_input_file(args.weights, "--weights")
    if getattr(args, "agent", None) is not None:
        check_input_file(args.agent, "--agent")
    check_output_file(args.out, "--out")


def run_partition(args: argparse.Namespace) -> int:
    _preflight(args)
    from jaxsafe.graphs.gnn import GNNBisector
    from jaxsafe.graphs.io import read_graph, write_partition
    from jaxsafe.graphs.partition import DIRECT, evaluate, partition

    adj = read_graph(args.graph, args.format, pattern=args.unweighted)
    if args.parts > adj.shape[0]:
        raise UserError(f"--parts {args.parts}: the graph has only {adj.shape[0]} vertices; use at most {adj.shape[0]}")
    model = agent = None
    if args.method in ("gnn", "gnn+rl") or args.method in RL_METHODS:
        _enable_compilation_cache()
    if args.method in ("gnn", "gnn+rl"):
        model = GNNBisector.load(args.weights)
    if args.method in RL_METHODS:
        from jaxsafe.graphs.rl_agents import ActorCritic
        from jaxsafe.graphs.rl_drivers import rl_partition

        agent = ActorCritic.load(args.agent)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()  # "seconds": the call alone, after reading the file and loading the weights
    if args.method in RL_METHODS:
        parts = rl_partition(adj, args.parts, agent, start=RL_METHODS[args.method], seed=args.seed,
                             seconds=seconds, gnn_model=model, coarsest=args.coarsest)
    else:
        parts = partition(adj, args.parts, args.method, refine=args.refine, model=model, seed=args.seed,
                          seconds=seconds)
    elapsed = time.perf_counter() - t0
    result = {**evaluate(adj, parts), "method": args.method,
              "refine": "rl" if args.method in RL_METHODS else args.refine if args.method not in DIRECT else None,
              "seconds": elapsed,
              "seconds_breakdown": seconds}
    if result["parts"] > 1 and result["normalized_cut"] is None:
        result["note"] = "a part has no edges (volume 0, e.g. only isolated vertices): normalized cut and balance are undefined"
    if args.out is not None:
        write_partition(args.out, parts)
        result["out"] = str(args.out)
    print(json.dumps(result))
    return 0


def run_order(args: argparse.Namespace) -> int:
    _preflight(args)
    from jaxsafe.graphs.gnn import GNNBisector
    from jaxsafe.graphs.io import read_graph, write_partition
    from jaxsafe.graphs.ordering import fill_in, order, pattern

    adj = pattern(read_graph(args.graph, args.format, pattern=True))
    model = None
    if args.method == "nd-gnn":
        _enable_compilation_cache()
        model = GNNBisector.load(args.weights)
    if args.method == "nd-rl":
        from jaxsafe.graphs.rl_agents import ActorCritic

        _enable_compilation_cache()
        model = ActorCritic.load(args.agent, task="separator")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    perm = order(adj, args.method, args.seed, model=model, seconds=seconds)
    elapsed = time.perf_counter() - t0
    result = {"n": adj.shape[0], "nnz": adj.nnz + adj.shape[0], "method": args.method,
              "fill_in": fill_in(adj, perm, engine=args.engine), "seconds": elapsed}
    if seconds:
        result["seconds_breakdown"] = seconds
    if args.out is not None:
        write_partition(args.out, perm)  # the same one-integer-per-line format
        result["out"] = str(args.out)
    print(json.dumps(result))
    return 0


def run_train(args: argparse.Namespace) -> int:
    from jaxsafe.config import load_config
    from jaxsafe.graphs.config import TrainConfig
    from jaxsafe.io import StagedDir, atomic_write_json

    cfg = load_config(TrainConfig, args.config, args.overrides)
    stage = StagedDir(args.out, cfg, resume=args.resume, overwrite=args.overwrite, what="run")
    if stage.done:
        print((stage.out / "results.json").read_text().strip())
        return 0

    from jaxsafe.graphs.train import WEIGHTS_FILE, train

    work = stage.start()
    for name in ("embedding", "partition"):
        phase = getattr(cfg, name)
        print(f"{name}: {phase.graphs} graphs ({', '.join(phase.families)}; n {phase.n_min}-{phase.n_max}), {phase.epochs} epochs, "
              f"~{phase.epochs * -(-phase.graphs // phase.accumulate)} steps", file=sys.stderr, flush=True)
    with _Progress(work):
        results = train(cfg, work, resume=stage.resuming)
    stage.commit()
    results["weights"] = str(args.out / WEIGHTS_FILE)  # the run was built under a temporary name
    atomic_write_json(args.out / "results.json", results)
    print(json.dumps(results))
    return 0


def run_train_rl(args: argparse.Namespace) -> int:
    from jaxsafe.config import load_config
    from jaxsafe.graphs.rl_config import RLTrainConfig

    cfg = load_config(RLTrainConfig, args.config, args.overrides)
    from jaxsafe.graphs.rl_train import train

    print(f"rl {cfg.agent.task} agent ({cfg.agent.kind}): {cfg.graphs} graphs ({', '.join(cfg.families)}; "
          f"n {cfg.n_min}-{cfg.n_max}), "
          f"{cfg.steps} A2C steps of {cfg.episodes} episodes", file=sys.stderr, flush=True)
    print(json.dumps(train(cfg, args.out, resume=args.resume)))
    return 0


class _Progress(threading.Thread):
    """Prints the newest metrics row of each phase of a graphs training run every ``every`` seconds."""

    def __init__(self, run: Path, every: float = 15.0):
        super().__init__(daemon=True)
        self.run_dir, self.every, self.stopped = run, every, threading.Event()
        self.t0 = time.perf_counter()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()

    def run(self) -> None:
        seen: dict[str, str] = {}
        while not self.stopped.wait(self.every):
            for phase in ("embedding", "partition"):
                path = self.run_dir / phase / "metrics.jsonl"
                try:
                    lines = path.read_text().splitlines()
                except OSError:
                    continue
                if lines and lines[-1] != seen.get(phase):
                    seen[phase] = lines[-1]
                    try:
                        row = json.loads(lines[-1])
                    except ValueError:
                        continue
                    print(f"{phase}: step {row.get('step')}, loss {row.get('loss', float('nan')):.4g} "
                          f"({time.perf_counter() - self.t0:.0f} s)", file=sys.stderr, flush=True)


def demo(out_dir: Path) -> None:
    """Bisect a generated Delaunay graph (n = 2,000) with the shipped GNN, METIS, spectral and RL agents; order it.

    ``rl`` is METIS on the coarsest graph refined by the shipped agent at every level,
    ``metis+rl`` METIS's own bisection refined on the finest level (paper B, :mod:`jaxsafe.graphs.rl_drivers`).
    """
    from jaxsafe.graphs.generators import delaunay
    from jaxsafe.graphs.gnn import GNNBisector
    from jaxsafe.graphs.io import write_partition
    from jaxsafe.graphs.partition import bisect, evaluate
    from jaxsafe.graphs.plot import plot_partitions
    from jaxsafe.graphs.rl_agents import ActorCritic
    from jaxsafe.graphs.rl_drivers import rl_partition

    adj, points = delaunay(2000, seed=7)
    model, agent = GNNBisector.load(), ActorCritic.load()
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"   Delaunay graph: n = {adj.shape[0]}, edges = {adj.nnz // 2}")
    first_call = {"gnn": "compiling the per-level functions", "rl": "compiling the agent's rollout"}
    partitions, titles = {}, {}
    for method in ("gnn", "metis", "spectral", *RL_METHODS):
        t0 = time.perf_counter()
        if method in RL_METHODS:
            parts = rl_partition(adj, 2, agent, start=RL_METHODS[method], gnn_model=model)
        else:
            parts = bisect(adj, method, model=model)
        seconds = time.perf_counter() - t0
        partitions[method] = parts
        r = evaluate(adj, parts)
        titles[method] = f"{method}: normalized cut {r['normalized_cut']:.4f}, balance {r['balance']:.2f}"
        write_partition(out_dir / f"{method.replace('+', '_')}.part", parts)
        note = f", first call: includes {first_call[method]}" if method in first_call else ""
        print(f"   {method:8s} normalized cut {r['normalized_cut']:.4f}  cut {r['cut']:.0f}  "
              f"balance {r['balance']:.3f}  ({seconds:.2f} s{note})")
    print(f"   picture: {plot_partitions(adj, points, partitions, out_dir / 'partitions.png', titles)}")
    from jaxsafe.graphs.ordering import fill_in, order

    print("   sparse ordering of the same graph (fill-in nnz(L)+nnz(U), SuperLU):")
    for method in ("natural", "metis", "nd-metis-bisect", "nd-rl"):
        t0 = time.perf_counter()
        perm = order(adj, method)
        seconds = time.perf_counter() - t0
        note = ", first call: includes loading the separator agent, compiling its rollout" if method == "nd-rl" else ""
        print(f"   {method:16s} fill-in {fill_in(adj, perm):>9,d}  ({seconds:.2f} s{note})")
