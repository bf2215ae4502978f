"""Paper A's benchmark: GNN bisection vs METIS vs spectral, side by side in one run.

Test set (spec): 50 Delaunay graphs, n from 100 to 10,000 (geometric spacing), half in
the unit square and half in [0,5]×[0,1]; plus n = 1e5 and 1e6 in the unit square for
runtime. Rows: gnn network alone (argmax), gnn + sweep, gnn + sweep + boundary passes
(fm), METIS (pymetis defaults), spectral (Fiedler vector of L_rw by ARPACK shift-invert up to
n = 2e5, plain LOBPCG above — the issue's scipy baseline — and by AMG-preconditioned LOBPCG, + sweep
at minimum NC), Scotch (default strategy) when its library is installed.

Timing follows benchmarks/_protocol.py: on each graph every row runs once untimed (the
GNN compiles new padded sizes there; the partition it returns gives the quality numbers,
every row being deterministic), then ``--rounds`` interleaved rounds time every row once
each, in rotating order. A row's time is its median over the rounds, its speed against
METIS the median of the per-round ratios (row / METIS) with their min–max. A row whose
untimed run took over ``SLOW_S`` seconds (plain LOBPCG at 1e6) is not repeated: its time is
that one run. Prints a table, writes benchmarks/results/partitioning.json (only on an idle
machine, or with --allow-load, marked "loaded") and docs/img/graphs_time_vs_n.png.

    python benchmarks/partitioning.py                # full run
    python benchmarks/partitioning.py --quick        # 10 graphs, n = 1e5 only
    python benchmarks/partitioning.py --large-only   # re-run n = 1e5 and 1e6, keep the test set of the JSON
    python benchmarks/partitioning.py --rl           # paper B: RL refinement vs METIS on graph families

``--rl`` (quality first; writes benchmarks/results/partitioning_rl.json): normalized cut
of METIS (pymetis k-way bisection), ``rl`` (METIS on the coarsest graph of a heavy-edge
hierarchy, then greedy RL refinement with rollback at every level), ``metis+rl`` (RL
refinement of METIS's own bisection) and ``gnn+rl`` (of the GNN + sweep bisection) on
the REPORT half of the Delaunay test set (odd positions; the even half is the tuning half,
used while choosing the agent's settings) and on other families: 2D and 3D grids, Delaunay
meshes with holes, random geometric graphs. Times as above: one untimed run per row and
graph (compiles new padded shapes), then interleaved rounds with METIS.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import time
from pathlib import Path

import numpy as np

from jaxsafe.graphs import scotch
from jaxsafe.graphs.generators import delaunay
from jaxsafe.graphs.gnn import GNNBisector
from jaxsafe.graphs.partition import bisect, evaluate
from _protocol import Monitor, add_arguments, format_ratio, fresh_breakdown, interleaved, ratio, spread, write_results

ROOT = Path(__file__).resolve().parents[1]
SPECTRAL = "spectral (scipy eigsh/lobpcg + sweep)"  # the baseline: the faster scipy solver by size
SPECTRAL_AMG = "spectral (lobpcg + AMG + sweep)"  # the strongest spectral baseline we have (pyamg preconditioner)
ROWS = (("gnn (network alone)", "gnn", "none"), ("gnn + sweep", "gnn", "sweep"), ("gnn + sweep + fm", "gnn", "fm"),
        ("metis", "metis", None), (SPECTRAL, "spectral", "sweep"), (SPECTRAL_AMG, "spectral", "sweep")) + (
    (("scotch", "scotch", None),) if scotch.available() else ())  # optional baseline (spec)


def solver_for(name: str, n: int) -> str:
    """Eigensolver of a spectral row: ARPACK shift-invert up to 2·10⁵ vertices, plain LOBPCG above; or AMG."""
    if name == SPECTRAL_AMG:
        return "amg"
    return "arpack" if n <= 200_000 else "lobpcg"


ROUNDS = 3
SLOW_S = 20.0  # a row whose untimed run takes longer is not repeated (plain LOBPCG at 1e6: ~100 s)


def compare(adj, n: int, model, rounds: int) -> dict:
    """Quality and interleaved timing of every row of ``ROWS`` on one graph (see the module docstring).

    Returns {row: evaluate(...) + seconds (median over rounds), seconds_rounds,
    first_seconds (the untimed run), breakdown (of the last run), time_ratio_to_metis
    (spread of the per-round ratios row / METIS)}.
    """
    out, sides, breakdowns = {}, {}, {}
    for name, method, refine in ROWS:
        solver = solver_for(name, n)
        breakdowns[name] = {}
        call = fresh_breakdown(functools.partial(bisect, adj, method, refine=refine or "sweep", model=model,
                                                 solver=solver), breakdowns[name])
        t0 = time.perf_counter()
        parts = call()
        first = time.perf_counter() - t0
        out[name] = {**evaluate(adj, parts), "first_seconds": first}
        if first > SLOW_S and method != "gnn":  # the GNN's first run includes compiling
            out[name].update(seconds=first, seconds_rounds=[first])
        else:
            sides[name] = call
    times = interleaved(sides, rounds)
    for name, ts in times.items():
        out[name].update(seconds=float(np.median(ts)), seconds_rounds=ts)
    for name, r in out.items():
        r["breakdown"] = breakdowns[name]
        metis = times["metis"]
        r["time_ratio_to_metis"] = (ratio(times[name], metis) if name in times
                                    else spread([r["seconds"] / float(np.median(metis))]))
    return out


RL_ROWS = (("rl", "metis"), ("metis+rl", "metis-fine"), ("gnn+rl", "gnn"))


def rl_families(quick: bool):
    """(family, name, adj) of the --rl run: Delaunay report/tune halves and four other families."""
    from jaxsafe.graphs.generators import delaunay_with_holes, grid2d, grid3d, random_geometric

    _, test_set = make_test_set(quick=quick)
    for i, (n, width, seed) in enumerate(test_set):
        yield ("delaunay-tune" if i % 2 == 0 else "delaunay"), f"n={n} w={width:g}", delaunay(n, width, 1.0, seed=seed)[0]
    for nx in ((30, 70) if quick else (30, 70, 100)):
        yield "grid2d", f"{nx}x{nx}", grid2d(nx, nx)[0]
    for nx in ((10, 16) if quick else (10, 16, 22)):
        yield "grid3d", f"{nx}^3", grid3d(nx, nx, nx)[0]
    for n in ((1000, 5000) if quick else (1000, 5000, 20000)):
        yield "holes", f"n={n}", delaunay_with_holes(n, seed=n)[0]
    for n in ((1000, 5000) if quick else (1000, 5000, 20000)):
        yield "random-geometric", f"n={n}", random_geometric(n, seed=n)[0]


def run_rl(args, model) -> None:
    from jaxsafe.graphs.partition import largest_component
    from jaxsafe.graphs.rl_agents import ActorCritic
    from jaxsafe.graphs.rl_drivers import rl_bisect

    monitor = Monitor()
    agent = ActorCritic.load(args.agent)
    rows = []
    for family, name, adj in rl_families(args.quick):
        adj = largest_component(adj)  # refinement compares connected bisections
        calls = {"metis": functools.partial(bisect, adj, "metis")}
        for label, start in RL_ROWS:
            calls[label] = functools.partial(rl_bisect, adj, agent, start=start, gnn_model=model)
        quality = {label: evaluate(adj, call()) for label, call in calls.items()}  # untimed: compiles new shapes
        times = interleaved(calls, args.rounds)
        row = {"family": family, "graph": name, "n": int(adj.shape[0]), "metis": quality["metis"]["normalized_cut"],
               "metis_seconds": float(np.median(times["metis"]))}
        for label, _ in RL_ROWS:
            row[label] = quality[label]["normalized_cut"]
            row[label + "_balance"] = quality[label]["balance"]
            row[label + "_seconds"] = float(np.median(times[label]))
            row[label + "_time_ratio_to_metis"] = ratio(times[label], times["metis"])
        rows.append(row)
        print(f"  {family:17s} {name:14s} n={row['n']:6d} METIS {row['metis']:.5f} " +
              " ".join(f"{k} {row[k] / row['metis']:.3f}" for k, _ in RL_ROWS) + "  time/METIS " +
              " ".join(format_ratio(row[k + "_time_ratio_to_metis"]) for k, _ in RL_ROWS), flush=True)
    summary = {}
    for family in dict.fromkeys(r["family"] for r in rows):
        fam = [r for r in rows if r["family"] == family]
        summary[family] = {k: float(np.median([r[k] / r["metis"] for r in fam])) for k, _ in RL_ROWS}
        summary[family]["graphs"] = len(fam)
        summary[family]["median_seconds"] = {k: float(np.median([r[k + "_seconds"] for r in fam]))
                                             for k in ["metis"] + [k for k, _ in RL_ROWS]}
        summary[family]["time_ratio_to_metis"] = {k: spread([r[k + "_time_ratio_to_metis"]["median"] for r in fam])
                                                  for k, _ in RL_ROWS}
    print(f"\n{'family':18s}" + "".join(f"{k + ' / METIS':>18s}" for k, _ in RL_ROWS) + "  (median NC ratio)")
    for family, s in summary.items():
        print(f"{family:18s}" + "".join(f"{s[k]:18.3f}" for k, _ in RL_ROWS) + f"  ({s['graphs']} graphs)")
    print(f"\n{'family':18s}{'METIS s':>10s}" + "".join(f"{k + ' s':>12s}{'x METIS':>22s}" for k, _ in RL_ROWS)
          + "  (median seconds; time / METIS: median over graphs of the per-graph median ratio, min-max over graphs)")
    for family, s in summary.items():
        print(f"{family:18s}{s['median_seconds']['metis']:10.4f}" + "".join(
            f"{s['median_seconds'][k]:12.4f}{format_ratio(s['time_ratio_to_metis'][k]):>22s}" for k, _ in RL_ROWS))
    results = {"command": "python benchmarks/partitioning.py --rl" + (" --quick" if args.quick else "")
               + (f" --rounds {args.rounds}" if args.rounds != ROUNDS else ""),
               "timing": f"one untimed run per row and graph (compiles new padded shapes; gives the partition), "
                         f"then {args.rounds} interleaved rounds of METIS and the RL rows",
               "agent": str(args.agent) if args.agent else "shipped", "rows": rows, "summary": summary}
    out = ROOT / "benchmarks" / "results" / "partitioning_rl.json"
    write_results(out, results, monitor, allow_load=args.allow_load, speed=False)
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rl", action="store_true", help="paper B: RL refinement vs METIS on graph families")
    ap.add_argument("--agent", type=Path, default=None, help="RL refinement agent weights (default: shipped)")
    ap.add_argument("--weights", type=Path, default=None, help="GNN weights (default: shipped)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "partitioning.json")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "graphs_time_vs_n.png")
    ap.add_argument("--large-only", action="store_true", help="only the large graphs; keep the test set of --out")
    ap.add_argument("--rounds", type=int, default=ROUNDS, help=f"interleaved timing rounds per graph (default {ROUNDS})")
    add_arguments(ap)
    args = ap.parse_args()
    monitor = Monitor()
    model = GNNBisector.load(args.weights)
    if args.rl:
        return run_rl(args, model)
    if args.large_only:
        previous = json.loads(args.out.read_text())
        large = run_large([100_000, 1_000_000], model, args.rounds)
        previous["large"] = {str(n): rows for n, rows in large.items()}
        previous["large_command"] = "python benchmarks/partitioning.py --large-only"
        print_large(large)
        write_results(args.out, previous, monitor, allow_load=args.allow_load)
        ts = previous["test_set"]
        test_set = [(int(n), w, 0) for w in ts["widths"] for n in ts["sizes"]]
        plot(ts["per_graph"], test_set, large, args.plot)
        print(f"\nwrote {args.out} and {args.plot}")
        return

    sizes, test_set = make_test_set(quick=args.quick)
    per_graph = {name: [] for name, _, _ in ROWS}
    for n, width, seed in test_set:
        adj, _ = delaunay(n, width, 1.0, seed=seed)
        for name, r in compare(adj, n, model, args.rounds).items():
            per_graph[name].append({"width": width, **r})
        print(f"n={n:6d} [0,{width:g}]x[0,1]  " + "  ".join(
            f"{name.split(' (')[0]}={per_graph[name][-1]['normalized_cut']:.4f}" for name, _, _ in ROWS), flush=True)

    metis_nc = np.array([r["normalized_cut"] for r in per_graph["metis"]])
    summary = {}
    for name, _, _ in ROWS:
        rs = per_graph[name]
        nc = np.array([r["normalized_cut"] for r in rs])
        summary[name] = {
            "median_normalized_cut": float(np.median(nc)),
            "median_nc_ratio_to_metis": float(np.median(nc / metis_nc)),
            "median_balance": float(np.median([r["balance"] for r in rs])),
            "median_cut": float(np.median([r["cut"] for r in rs])),
            "median_seconds": float(np.median([r["seconds"] for r in rs])),
            # per graph the median of the per-round ratios; here their spread over the graphs
            "time_ratio_to_metis": spread([r["time_ratio_to_metis"]["median"] for r in rs]),
        }

    large = run_large([100_000] if args.quick else [100_000, 1_000_000], model, args.rounds)

    print(f"\nTest set: {len(test_set)} Delaunay graphs, n {sizes[0]}..{sizes[-1]}, unit square and [0,5]x[0,1]")
    print(f"{'method':36s} {'median NC':>10s} {'NC/METIS':>9s} {'balance':>8s} {'cut':>7s} {'seconds':>9s} "
          f"{'time / METIS (min-max over graphs)':>36s}")
    for name, s in summary.items():
        print(f"{name:36s} {s['median_normalized_cut']:10.4f} {s['median_nc_ratio_to_metis']:9.3f} "
              f"{s['median_balance']:8.3f} {s['median_cut']:7.1f} {s['median_seconds']:9.4f} "
              f"{format_ratio(s['time_ratio_to_metis']):>36s}")
    print_large(large)

    results = {
        "command": "python benchmarks/partitioning.py" + (" --quick" if args.quick else "")
                   + (f" --rounds {args.rounds}" if args.rounds != ROUNDS else ""),
        "machine": f"{platform.processor() or platform.machine()}, shared 2-core CPU",
        "weights": str(args.weights) if args.weights else "shipped",
        "runtime": f"per graph: one untimed run per row (compiles; gives the partition), then {args.rounds} interleaved "
                   f"rounds; seconds = median over rounds; time_ratio_to_metis = spread of per-round ratios (large "
                   f"graphs) or of the per-graph medians (test set); rows over {SLOW_S:g} s untimed run once",
        "test_set_summary": summary,
        "test_set": {"sizes": sizes.tolist(), "widths": [1.0, 5.0], "per_graph": per_graph},
        "large": {str(n): rows for n, rows in large.items()},
    }
    write_results(args.out, results, monitor, allow_load=args.allow_load)
    plot(per_graph, test_set, large, args.plot)
    print(f"\nwrote {args.out} and {args.plot}")


def make_test_set(quick: bool = False):
    """The paper's test set: (sizes, [(n, width, seed)]), 25 sizes (5 if quick) × widths 1 and 5."""
    sizes = np.unique(np.round(np.geomspace(100, 10000, 5 if quick else 25)).astype(int))
    return sizes, [(int(n), w, 1000 * i + j) for j, w in enumerate((1.0, 5.0)) for i, n in enumerate(sizes)]


def run_large(sizes, model, rounds: int) -> dict:
    """Bisect Delaunay graphs of the given sizes (unit square) with every row (timing: see module docstring)."""
    large = {}
    for n in sizes:
        t0 = time.perf_counter()
        adj, _ = delaunay(n, seed=n)
        print(f"generated n={n} in {time.perf_counter() - t0:.1f} s", flush=True)
        large[n] = compare(adj, n, model, rounds)
        for name, r in large[n].items():
            print(f"  {name:36s} NC {r['normalized_cut']:.5f}  balance {r['balance']:.3f}  {r['seconds']:8.3f} s  "
                  f"{ {k: round(v, 3) for k, v in r['breakdown'].items()} }", flush=True)
    return large


def print_large(large) -> None:
    for n, rows in large.items():
        spectral_s, amg_s = rows[SPECTRAL]["seconds"], rows[SPECTRAL_AMG]["seconds"]
        print(f"\nn = {n:,} (median seconds over rounds; x METIS: median of per-round ratios, min-max)")
        for name, r in rows.items():
            print(f"{name:36s} NC {r['normalized_cut']:.5f}  balance {r['balance']:.3f}  {r['seconds']:8.3f} s  "
                  f"spectral/this {spectral_s / r['seconds']:6.1f}x  amg/this {amg_s / r['seconds']:5.1f}x  "
                  f"this/metis {format_ratio(r['time_ratio_to_metis'])}")


def plot(per_graph, test_set, large, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ns = np.array([n for n, _, _ in test_set])
    for name, _, _ in ROWS:
        if name not in per_graph:  # --large-only over a JSON written before this row existed
            continue
        xs = list(ns) + [int(n) for n in large]
        ys = [r["seconds"] for r in per_graph[name]] + [large[n][name]["seconds"] for n in large]
        order = np.argsort(xs, kind="stable")
        ax.loglog(np.array(xs)[order], np.array(ys)[order], "o-", ms=3, lw=1, label=name)
    ax.set_xlabel("vertices n (Delaunay)")
    ax.set_ylabel("bisection time, s (median of interleaved rounds)")
    ax.set_title("Runtime vs n on 2 shared CPU cores")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
