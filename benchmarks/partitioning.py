"""Paper A's benchmark: GNN bisection vs METIS vs spectral, side by side in one run.

Test set (spec): 50 Delaunay graphs, n from 100 to 10,000 (geometric spacing), half in
the unit square and half in [0,5]×[0,1]; plus n = 1e5 and 1e6 in the unit square for
runtime. Rows: gnn network alone (argmax), gnn + sweep, gnn + sweep + boundary passes
(fm), METIS (pymetis defaults), spectral (Fiedler vector of L_rw by ARPACK shift-invert up to
n = 2e5, plain LOBPCG above — the issue's scipy baseline — and by AMG-preconditioned LOBPCG, + sweep
at minimum NC), Scotch (default strategy) when its library is installed. Runtime is best of 2 runs (the first includes
one-time compilation); on the large graphs best of 3 runs after the GNN's compiling run, except runs over
20 s (plain LOBPCG at 1e6), which run once. Prints a table,
writes benchmarks/results/partitioning.json and docs/img/graphs_time_vs_n.png.

    python benchmarks/partitioning.py                # full run
    python benchmarks/partitioning.py --quick        # 10 graphs, n = 1e5 only
    python benchmarks/partitioning.py --large-only   # re-run n = 1e5 and 1e6, keep the test set of the JSON
    python benchmarks/partitioning.py --rl           # paper B: RL refinement vs METIS on graph families

``--rl`` (quality, not speed; writes benchmarks/results/partitioning_rl.json): normalized cut
of METIS (pymetis k-way bisection), ``rl`` (METIS on the coarsest graph of a heavy-edge
hierarchy, then greedy RL refinement with rollback at every level), ``metis+rl`` (RL
refinement of METIS's own bisection) and ``gnn+rl`` (of the GNN + sweep bisection) on
the REPORT half of the Delaunay test set (odd positions; the even half is the tuning half,
used while choosing the agent's settings) and on other families: 2D and 3D grids, Delaunay
meshes with holes, random geometric graphs.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from jaxsafe.graphs import scotch
from jaxsafe.graphs.generators import delaunay
from jaxsafe.graphs.gnn import GNNBisector
from jaxsafe.graphs.partition import bisect, evaluate
from _protocol import Monitor, add_arguments, write_results

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


def run_once(adj, method, refine, model, solver):
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    parts = bisect(adj, method, refine=refine or "sweep", model=model, seconds=seconds, solver=solver)
    return parts, time.perf_counter() - t0, seconds


def measure(adj, method, refine, model, solver="auto", repeats=2, repeat_below=None):
    """Best of ``repeats`` runs; with ``repeat_below`` (s), runs that take longer are not repeated."""
    best = None
    for i in range(repeats):
        parts, sec, breakdown = run_once(adj, method, refine, model, solver)
        if best is None or sec < best[1]:
            best = (parts, sec, breakdown)
        if repeat_below is not None and sec > repeat_below and (method != "gnn" or i > 0):
            break
    parts, sec, breakdown = best
    return {**evaluate(adj, parts), "seconds": sec, "breakdown": breakdown}


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
    from jaxsafe.graphs.partition import components
    from jaxsafe.graphs.rl_agents import ActorCritic
    from jaxsafe.graphs.rl_drivers import rl_bisect

    monitor = Monitor()
    agent = ActorCritic.load(args.agent)
    rows = []
    for family, name, adj in rl_families(args.quick):
        ncomp, labels = components(adj)
        if ncomp > 1:  # the largest component (refinement compares connected bisections)
            big = np.flatnonzero(labels == np.argmax(np.bincount(labels)))
            adj = adj[big][:, big]
        metis = measure(adj, "metis", None, model, repeats=1)
        row = {"family": family, "graph": name, "n": int(adj.shape[0]), "metis": metis["normalized_cut"],
               "metis_seconds": metis["seconds"]}
        for label, start in RL_ROWS:
            t0 = time.perf_counter()
            seconds: dict = {}
            r = evaluate(adj, rl_bisect(adj, agent, start=start, gnn_model=model, seconds=seconds))
            row[label] = r["normalized_cut"]
            row[label + "_balance"] = r["balance"]
            row[label + "_seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(f"  {family:17s} {name:14s} n={row['n']:6d} METIS {row['metis']:.5f} " +
              " ".join(f"{k} {row[k] / row['metis']:.3f}" for k, _ in RL_ROWS), flush=True)
    summary = {}
    for family in dict.fromkeys(r["family"] for r in rows):
        fam = [r for r in rows if r["family"] == family]
        summary[family] = {k: float(np.median([r[k] / r["metis"] for r in fam])) for k, _ in RL_ROWS}
        summary[family]["graphs"] = len(fam)
    print(f"\n{'family':18s}" + "".join(f"{k + ' / METIS':>18s}" for k, _ in RL_ROWS) + "  (median NC ratio)")
    for family, s in summary.items():
        print(f"{family:18s}" + "".join(f"{s[k]:18.3f}" for k, _ in RL_ROWS) + f"  ({s['graphs']} graphs)")
    results = {"command": "python benchmarks/partitioning.py --rl" + (" --quick" if args.quick else ""),
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
    add_arguments(ap)
    args = ap.parse_args()
    monitor = Monitor()
    model = GNNBisector.load(args.weights)
    if args.rl:
        return run_rl(args, model)
    if args.large_only:
        previous = json.loads(args.out.read_text())
        large = run_large([100_000, 1_000_000], model)
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
        for name, method, refine in ROWS:
            per_graph[name].append({"width": width, **measure(adj, method, refine, model, solver_for(name, n))})
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
        }

    large = run_large([100_000] if args.quick else [100_000, 1_000_000], model)

    print(f"\nTest set: {len(test_set)} Delaunay graphs, n {sizes[0]}..{sizes[-1]}, unit square and [0,5]x[0,1]")
    print(f"{'method':36s} {'median NC':>10s} {'NC/METIS':>9s} {'balance':>8s} {'cut':>7s} {'seconds':>9s}")
    for name, s in summary.items():
        print(f"{name:36s} {s['median_normalized_cut']:10.4f} {s['median_nc_ratio_to_metis']:9.3f} "
              f"{s['median_balance']:8.3f} {s['median_cut']:7.1f} {s['median_seconds']:9.4f}")
    print_large(large)

    results = {
        "command": "python benchmarks/partitioning.py" + (" --quick" if args.quick else ""),
        "machine": f"{platform.processor() or platform.machine()}, shared 2-core CPU",
        "weights": str(args.weights) if args.weights else "shipped",
        "runtime": "test set: best of 2 runs (excludes one-time compilation); n>=1e5: best of 3 (gnn: after a compiling run), runs over 20 s once",
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


def run_large(sizes, model) -> dict:
    """Bisect Delaunay graphs of the given sizes (unit square) with every method (timing: see module docstring)."""
    large = {}
    for n in sizes:
        t0 = time.perf_counter()
        adj, _ = delaunay(n, seed=n)
        print(f"generated n={n} in {time.perf_counter() - t0:.1f} s", flush=True)
        large[n] = {}
        for name, method, refine in ROWS:
            large[n][name] = measure(adj, method, refine, model, solver_for(name, n), repeats=4 if method == "gnn" else 3,
                                     repeat_below=20.0)
            r = large[n][name]
            print(f"  {name:28s} NC {r['normalized_cut']:.5f}  balance {r['balance']:.3f}  {r['seconds']:8.3f} s  "
                  f"{ {k: round(v, 3) for k, v in r['breakdown'].items()} }", flush=True)
    return large


def print_large(large) -> None:
    for n, rows in large.items():
        spectral_s, amg_s = rows[SPECTRAL]["seconds"], rows[SPECTRAL_AMG]["seconds"]
        metis_s = rows["metis"]["seconds"]
        print(f"\nn = {n:,}")
        for name, r in rows.items():
            print(f"{name:36s} NC {r['normalized_cut']:.5f}  balance {r['balance']:.3f}  {r['seconds']:8.3f} s  "
                  f"spectral/this {spectral_s / r['seconds']:6.1f}x  amg/this {amg_s / r['seconds']:5.1f}x  "
                  f"this/metis {r['seconds'] / metis_s:6.2f}x")


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
    ax.set_ylabel("bisection time, s (best of 2-3 runs)")
    ax.set_title("Runtime vs n on 2 shared CPU cores")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
