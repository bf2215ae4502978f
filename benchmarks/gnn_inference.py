"""GNN inference layouts side by side: what each inference change buys at n = 1e5 and 1e6.

Rows (same graph, same shipped weights, outputs equal within float32 rounding):
  * ``pow2``      — ELL layout, power-of-two node buckets, input vertex order;
  * ``steps4``    — ELL layout, 4 buckets per octave (``bucket(n, steps=4)``), input order;
  * ``steps4+locality`` — the shipped path: as ``steps4`` with ``locality_ranks`` row order.
Times are the network (both modules, from padded levels to probabilities) and the padding,
best of ``--repeats`` interleaved rounds (the layouts alternate, benchmarks/_protocol.py)
after one compiling call; the load average before and after is printed (no results file). Delaunay graphs number vertices randomly
(worst case for memory locality).

    python benchmarks/gnn_inference.py [--sizes 100000 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _protocol import Monitor, interleaved
from jaxsafe.graphs.batching import bucket, locality_ranks, pad_levels
from jaxsafe.graphs.generators import delaunay
from jaxsafe.graphs.gnn import GNNBisector


def run(model, h, sizes, ranks):
    t0 = time.perf_counter()
    levels = pad_levels(h, sizes, ell=True, ranks=ranks)
    t1 = time.perf_counter()
    f = model.fiedler(h, levels, ranks)
    y = model.probabilities(levels, f, ranks)
    return y, t1 - t0, time.perf_counter() - t1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    args = ap.parse_args()
    monitor = Monitor()
    model = GNNBisector.load()
    for n in args.sizes:
        adj, _ = delaunay(n, seed=n)
        h = model.hierarchy(adj)
        pow2 = [(bucket(lv.n + 1), 0) for lv in h.levels]
        steps4 = [(bucket(lv.n + 1, steps=4), 0) for lv in h.levels]
        rows = {"pow2": (pow2, None), "steps4": (steps4, None), "steps4+locality": (steps4, locality_ranks(h))}
        print(f"\nn = {n:,} (depth {h.depth}, padded top level: pow2 {pow2[0][0]:,}, steps4 {steps4[0][0]:,})")
        outputs = {name: run(model, h, sizes, ranks)[0] for name, (sizes, ranks) in rows.items()}  # compiles
        parts = {name: [] for name in rows}  # (padding, network) seconds per round

        def side(name):
            return lambda: parts[name].append(run(model, h, *rows[name])[1:])

        interleaved({name: side(name) for name in rows}, args.repeats)
        for name in rows:
            best = min(parts[name], key=lambda t: t[1])
            print(f"  {name:16s} network {best[1]:7.3f} s   padding {best[0]:6.3f} s   "
                  f"max |Δy| vs pow2 {np.abs(outputs[name] - outputs['pow2']).max():.1e}", flush=True)
    record = monitor.finish()
    print(f"\nload average {record['load_average_before'][0]:.2f} before, {record['load_average_after'][0]:.2f} after"
          + (" — LOADED: these times are not speed figures" if record["loaded"] else ""))


if __name__ == "__main__":
    main()
