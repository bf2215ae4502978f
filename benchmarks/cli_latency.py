"""Command-line latency of ``jaxsafe partition``: cold and warm first-call time (issue 14).

For each n of ``--sizes``, ``d<n>.graph`` = ``write_metis(delaunay(n, seed=n))``. Per
method, an empty HOME gives the cold run (no ``~/.cache/jaxsafe``); the same command in
new processes gives the warm runs: the CLI keeps the compiled executables of the GNN's
per-level functions and of the RL rollouts in ``~/.cache/jaxsafe/programs``
(:mod:`jaxsafe.graphs.programs`) and jax's other compilations in ``~/.cache/jaxsafe/xla``.
The warm runs of the methods alternate in ``--rounds`` interleaved rounds
(benchmarks/_protocol.py). Reported per run: the CLI's ``seconds``
(the first call, after reading the file and loading the weights), ``load_seconds``
(from the process's start to the call: Python and JAX imports, reading the file, loading
the weights; measured as wall minus the call), and ``wall`` (the whole process). Warm
figures are medians over the rounds.

    python benchmarks/cli_latency.py                          # n = 1e3, 1e4, 1e5; gnn, rl, metis
    python benchmarks/cli_latency.py --sizes 1000 --rounds 2  # a quick look

Writes the key ``latency`` of benchmarks/results/graphs_rl_latency.json (the file's other
keys stay; only on an idle machine, or with --allow-load, marked "loaded").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _protocol import Monitor, add_arguments, interleaved, spread, write_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "graphs_rl_latency.json"
METHODS = ("gnn", "rl", "metis")


def run_cli(graph: Path, method: str, home: Path) -> dict:
    """One ``jaxsafe partition`` process; its JSON plus the process's wall time."""
    env = {**os.environ, "HOME": str(home)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", "import sys; from jaxsafe.cli import main; sys.exit(main())",
                           "partition", str(graph), "--method", method], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"jaxsafe partition {graph.name} --method {method} failed:\n{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"seconds": out["seconds"], "wall_s": wall, "load_seconds": wall - out["seconds"],
            "normalized_cut": out["normalized_cut"], "balance": out["balance"],
            "breakdown": out["seconds_breakdown"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--rounds", type=int, default=3, help="warm runs per method, interleaved (default 3)")
    add_arguments(ap)
    args = ap.parse_args()
    monitor = Monitor()
    from jaxsafe.graphs.generators import delaunay
    from jaxsafe.graphs.io import write_metis

    rows = []
    with tempfile.TemporaryDirectory(prefix="cli_latency_") as tmp:
        tmp = Path(tmp)
        for n in args.sizes:
            graph = tmp / f"d{n}.graph"
            write_metis(graph, delaunay(n, seed=n)[0])
            homes = {m: tmp / f"home_{m}_{n}" for m in args.methods}
            cold = {}
            for m in args.methods:
                homes[m].mkdir()
                cold[m] = run_cli(graph, m, homes[m])
            warm = {m: [] for m in args.methods}
            interleaved({m: (lambda m=m: warm[m].append(run_cli(graph, m, homes[m]))) for m in args.methods},
                        args.rounds)
            for m in args.methods:
                w = warm[m]
                row = {"n": n, "method": m, "normalized_cut": cold[m]["normalized_cut"], "balance": cold[m]["balance"],
                       "cold": cold[m],
                       "warm_seconds": spread([r["seconds"] for r in w]),
                       "warm_wall_s": spread([r["wall_s"] for r in w]),
                       "warm_load_seconds": spread([r["load_seconds"] for r in w]),
                       "warm_breakdown": {k: float(np.median([r["breakdown"][k] for r in w])) for k in w[0]["breakdown"]},
                       "warm_runs": w}
                rows.append(row)
                print(f"n={n:7d} {m:6s} NC {row['normalized_cut']:.5f}  cold {cold[m]['seconds']:6.2f} s "
                      f"(wall {cold[m]['wall_s']:5.1f})  warm {row['warm_seconds']['median']:6.3f} s "
                      f"({row['warm_seconds']['min']:.3f}-{row['warm_seconds']['max']:.3f}; wall "
                      f"{row['warm_wall_s']['median']:4.1f}, before the call {row['warm_load_seconds']['median']:4.2f})  "
                      f"{ {k: round(v, 3) for k, v in row['warm_breakdown'].items()} }", flush=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    previous.pop("loaded", None)
    previous.pop("protocol", None)
    command = "python benchmarks/cli_latency.py" + (
        f" --sizes {' '.join(map(str, args.sizes))}" if args.sizes != [1000, 10_000, 100_000] else "") + (
        f" --rounds {args.rounds}" if args.rounds != 3 else "")
    previous["commands"] = {**previous.get("commands", {}), "latency": command}
    previous["latency"] = rows
    write_results(RESULTS, previous, monitor, allow_load=args.allow_load)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
