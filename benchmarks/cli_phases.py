"""Where a warm ``jaxsafe partition --method M GRAPH`` call's time goes, step by step, in one process.

Mirrors the CLI (``jaxsafe.graphs.cli.run_partition``): imports (NumPy/SciPy, JAX, flax.nnx,
jaxsafe.graphs), reading the graph file, turning on the kept programs and the compilation
cache under ``~/.cache/jaxsafe``, loading the weights, then the partition call twice — the
first is what a warm CLI process pays, the second the computation alone. Run the CLI
command once before (same HOME) so the caches are warm; ``programs`` counts the programs
compiled (should be 0 when warm) and loaded from ``~/.cache/jaxsafe/programs``.

    jaxsafe partition d100000.graph --method rl > /dev/null       # warms ~/.cache/jaxsafe
    python benchmarks/cli_phases.py --method rl d100000.graph

Prints wall and process CPU seconds per step (docs/graphs.md, "Command-line latency").
"""

import argparse
import time

T0 = (time.perf_counter(), time.process_time())
MARKS: list[tuple[str, float, float]] = []


def mark(name: str) -> None:
    MARKS.append((name, time.perf_counter(), time.process_time()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("graph")
    ap.add_argument("--method", default="gnn", choices=("gnn", "rl", "gnn+rl", "metis+rl", "metis"))
    args = ap.parse_args()
    import numpy  # noqa: F401
    import scipy.sparse  # noqa: F401
    mark("imports: numpy/scipy")
    import jax  # noqa: F401
    mark("imports: jax")
    from flax import nnx  # noqa: F401
    mark("imports: flax.nnx")
    from jaxsafe.graphs import programs
    from jaxsafe.graphs.cli import RL_METHODS, _enable_compilation_cache
    from jaxsafe.graphs.gnn import GNNBisector
    from jaxsafe.graphs.io import read_graph
    from jaxsafe.graphs.partition import partition
    from jaxsafe.graphs.rl_agents import ActorCritic
    from jaxsafe.graphs.rl_drivers import rl_partition
    mark("imports: jaxsafe.graphs")
    adj = read_graph(args.graph)
    mark("read_graph")
    _enable_compilation_cache()
    model = GNNBisector.load() if args.method in ("gnn", "gnn+rl") else None
    agent = ActorCritic.load() if args.method in RL_METHODS else None
    mark("load weights")
    for call in ("first call", "same call again"):
        seconds: dict = {}
        if args.method in RL_METHODS:
            rl_partition(adj, 2, agent, start=RL_METHODS[args.method], seconds=seconds, gnn_model=model)
        else:
            partition(adj, 2, args.method, model=model, seconds=seconds)
        mark(f"{call}: " + ", ".join(f"{k} {v:.3f}" for k, v in seconds.items()))
    prev = T0
    for name, wall, cpu in MARKS:
        print(f"{wall - prev[0]:7.3f} s wall {cpu - prev[1]:7.3f} s cpu  {name}")
        prev = (wall, cpu)
    print(f"{MARKS[-1][1] - T0[0]:7.3f} s wall in all; programs {programs.counts}")


if __name__ == "__main__":
    main()
