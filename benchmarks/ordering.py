"""Paper B's ordering benchmark: SuperLU fill-in and time of every ordering, side by side, on Delaunay graphs.

Graphs: Delaunay triangulations of n = 3,000, 10,000 and 50,000 uniform points in the
unit square (seed 0; the spec's reference numbers for n = 3,000 were measured "on a
Delaunay graph": natural 2.28M, METIS NodeND 95k, Scotch 130k, COLAMD 160k,
MMD_AT_PLUS_A 87k). Rows: every method of :data:`jaxsafe.graphs.ordering.ORDERINGS`
(Scotch when its library is installed). Fill-in: ``fill_in`` with the SuperLU engine
(the spec's recipe, structural count), except the natural order above n = 10,000,
whose factor (≈ 6·10⁸ entries at 5·10⁴) is counted by the symbolic engine; the
symbolic count is computed for every row and must agree. Time (benchmarks/_protocol.py):
after a warm-up on a small graph (imports, numba), every ordering runs once untimed on
each graph (its order gives the fill; ``nd-gnn``'s and ``nd-rl``'s first run compiles
new padded sizes — reported as ``seconds_first``), then ``--rounds`` interleaved rounds
time every ordering once each, in rotating order: ``seconds`` is the median over the
rounds, ``time_ratio_to_metis`` the spread of the per-round ratios to METIS NodeND. Also
the top-level vertex separator (bisection + minimum cover) of each bisection method,
timed the same way. Writes benchmarks/results/ordering.json (only on an idle machine, or
with --allow-load, marked "loaded") and prints a table.

    python benchmarks/ordering.py            # n = 3,000, 10,000, 50,000
    python benchmarks/ordering.py --quick    # n = 3,000 only
    python benchmarks/ordering.py --rl       # paper B: nd-rl vs METIS NodeND on graph families
    python benchmarks/ordering.py --rl-large # paper B: nd-rl vs METIS NodeND at Delaunay 5e4, 1e5 (fill, time)

``--rl`` (fill is the headline; writes benchmarks/results/ordering_rl.json): symbolic fill of
METIS NodeND, MMD, nd-metis-bisect and nd-rl (leaf sizes in ``RL_LEAVES``) and the
top-level separator's NS (METIS bisection + König cover, then the RL separator agent), on
Delaunay graphs n = 10³…10⁴ (seeds 1, 2: seed 0 was used while tuning) and 2D/3D grids,
Delaunay meshes with holes and random geometric graphs; nd-rl's time breakdown (separator
calls, blocks, agent and leaf seconds). Each ordering runs once untimed per graph (fill;
compiles nd-rl's new padded shapes), then ``--rounds`` interleaved rounds time them.
``--rl-large``: nd-rl, METIS NodeND and MMD the same way (one untimed run, then rounds).
"""

from __future__ import annotations

import argparse
import functools
import platform
import time
from pathlib import Path

import numpy as np

from jaxsafe.graphs import scotch
from jaxsafe.graphs.generators import delaunay
from jaxsafe.graphs.gnn import GNNBisector
from jaxsafe.graphs.ordering import ORDERINGS, fill_in, order, separator
from _protocol import Monitor, add_arguments, format_ratio, fresh_breakdown, interleaved, ratio, spread, write_results

ROOT = Path(__file__).resolve().parents[1]
SIZES = (3_000, 10_000, 50_000)
ROUNDS = 3
SUPERLU_NATURAL_MAX = 10_000  # natural order above this: symbolic count only (SuperLU took 13 s at 1e4)
METHODS = tuple(m for m in ORDERINGS if m != "scotch" or scotch.available())
SEPARATOR_METHODS = ("gnn", "metis", "spectral") + (("scotch",) if scotch.available() else ())
SPEC_N3000 = {"natural": 2_280_000, "metis": 95_000, "scotch": 130_000, "colamd": 160_000, "mmd": 87_000}


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def timed_rounds(calls: dict, rounds: int, reference: str = "metis") -> dict:
    """Interleaved rounds over ``calls``: {name: {seconds (median), seconds_rounds, time_ratio_to_<reference>}}."""
    times = interleaved(calls, rounds)
    return {name: {"seconds": float(np.median(ts)), "seconds_rounds": ts,
                   f"time_ratio_to_{reference}": ratio(ts, times[reference])} for name, ts in times.items()}


def run_graph(n: int, model, rounds: int) -> dict:
    adj, _ = delaunay(n, seed=0)
    calls = {method: functools.partial(order, adj, method, model=model if method == "nd-gnn" else None)
             for method in METHODS}  # nd-rl: the shipped separator agent
    rows = {}
    for method, call in calls.items():
        perm, first = timed(call)  # untimed: compiles nd-gnn's / nd-rl's new padded sizes
        symbolic, symbolic_s = timed(fill_in, adj, perm, engine="symbolic")
        if method == "natural" and n > SUPERLU_NATURAL_MAX:
            fill, engine, fill_s = symbolic, "symbolic", symbolic_s
        else:
            (fill, fill_s), engine = timed(fill_in, adj, perm), "superlu"
            if fill != symbolic:
                raise RuntimeError(f"{method} n={n}: SuperLU {fill} != symbolic {symbolic}")
        rows[method] = {"fill_in": fill, "engine": engine, "seconds_first": first, "fill_seconds": fill_s,
                        "symbolic_seconds": symbolic_s}
    for method, t in timed_rounds(calls, rounds).items():
        rows[method].update(t)
        r = rows[method]
        print(f"  n={n:6d} {method:16s} fill {r['fill_in']:>11,d} ({r['engine']})  order {r['seconds']:7.3f} s "
              f"({format_ratio(r['time_ratio_to_metis'])} METIS; first run {r['seconds_first']:.2f} s)", flush=True)
    sep_calls = {method: functools.partial(separator, adj, method, model=model) for method in SEPARATOR_METHODS}
    seps = {}
    for method, call in sep_calls.items():
        sizes = np.bincount(call(), minlength=3)
        seps[method] = {"A": int(sizes[0]), "B": int(sizes[1]), "S": int(sizes[2])}
    for method, t in timed_rounds(sep_calls, rounds).items():
        seps[method].update(t)
    return {"n": n, "edges": adj.nnz // 2, "nnz_M": adj.nnz + n, "orderings": rows, "separators": seps}


def print_tables(graphs: list[dict]) -> None:
    header = "".join(f" {'fill n=' + format(g['n'], ','):>16s} {'x METIS':>8s} {'s':>7s}" for g in graphs)
    print(f"\n{'ordering':16s}{header}")
    for method in METHODS:
        line = f"{method:16s}"
        for g in graphs:
            r, metis = g["orderings"][method], g["orderings"]["metis"]["fill_in"]
            line += f" {r['fill_in']:>16,d} {r['fill_in'] / metis:8.2f} {r['seconds']:7.2f}"
        print(line)
    print(f"\n{'ordering':16s}" + "".join(f" {'time / METIS n=' + format(g['n'], ','):>26s}" for g in graphs)
          + "  (median of per-round ratios, min-max)")
    for method in METHODS:
        print(f"{method:16s}" + "".join(f" {format_ratio(g['orderings'][method]['time_ratio_to_metis']):>26s}"
                                        for g in graphs))
    print(f"\n{'separator':10s}" + "".join(f" {'|S| n=' + format(g['n'], ','):>13s} {'|A|/|B|':>8s} {'s':>6s}"
                                         for g in graphs))
    for method in SEPARATOR_METHODS:
        line = f"{method:10s}"
        for g in graphs:
            s = g["separators"][method]
            line += f" {s['S']:>13d} {max(s['A'], s['B']) / max(min(s['A'], s['B']), 1):8.3f} {s['seconds']:6.2f}"
        print(line)


RL_LEAVES = (100, 1000)


def rl_graphs(quick: bool):
    from jaxsafe.graphs.generators import delaunay_with_holes, grid2d, grid3d, random_geometric

    for n in ((1000, 3000) if quick else (1000, 3000, 10000)):
        for seed in (1, 2):
            yield "delaunay", f"n={n} seed={seed}", delaunay(n, seed=seed)[0]
    for nx in ((40,) if quick else (40, 100)):
        yield "grid2d", f"{nx}x{nx}", grid2d(nx, nx)[0]
    for nx in ((12,) if quick else (12, 20)):
        yield "grid3d", f"{nx}^3", grid3d(nx, nx, nx)[0]
    for n in ((3000,) if quick else (3000, 10000)):
        yield "holes", f"n={n}", delaunay_with_holes(n, seed=n)[0]
        yield "random-geometric", f"n={n}", random_geometric(n, seed=n)[0]


def run_rl(args) -> None:
    from jaxsafe.graphs.ordering import pattern, vertex_separator_from_bisection
    from jaxsafe.graphs.baselines import metis_parts
    from jaxsafe.graphs.rl_agents import ActorCritic
    from jaxsafe.graphs.rl_drivers import refine_separators
    from jaxsafe.graphs.partition import largest_component

    monitor = Monitor()
    agent = ActorCritic.load(args.agent, task="separator")
    ns = lambda x: np.sum(x == 2) * (1 / np.sum(x == 0) + 1 / np.sum(x == 1))  # noqa: E731
    rows = []
    for family, name, adj in rl_graphs(args.quick):
        p = pattern(adj)
        row = {"family": family, "graph": name, "n": int(p.shape[0])}
        stats = {leaf: {} for leaf in RL_LEAVES}
        calls = {method: functools.partial(order, p, method) for method in ("metis", "mmd", "nd-metis-bisect")}
        for leaf in RL_LEAVES:
            calls[f"nd-rl/{leaf}"] = fresh_breakdown(functools.partial(order, p, "nd-rl", model=agent, leaf_size=leaf),
                                                     stats[leaf])
        for key, call in calls.items():  # untimed: the fill, and nd-rl compiles new padded shapes
            row[key] = fill_in(p, call(), engine="symbolic")
        for key, t in timed_rounds(calls, args.rounds).items():
            row[key + "_seconds"] = t["seconds"]
            row[key + "_time_ratio_to_metis"] = t["time_ratio_to_metis"]
        for leaf in RL_LEAVES:
            row[f"nd-rl/{leaf}_breakdown"] = stats[leaf]  # of the last timed run
        q = largest_component(p)
        s0 = vertex_separator_from_bisection(q, metis_parts(q, 2, 0))
        s1 = refine_separators([q], [s0], agent)[0]
        row.update(ns_metis_cover=float(ns(s0)), ns_rl=float(ns(s1)), S_metis_cover=int(np.sum(s0 == 2)),
                   S_rl=int(np.sum(s1 == 2)))
        rows.append(row)
        print(f"  {family:17s} {name:14s} METIS {row['metis']:>9,d}  mmd {row['mmd'] / row['metis']:.3f}  "
              f"nd-metis-bisect {row['nd-metis-bisect'] / row['metis']:.3f}  " +
              "  ".join(f"nd-rl/{leaf} {row[f'nd-rl/{leaf}'] / row['metis']:.3f} ({row[f'nd-rl/{leaf}_seconds']:.1f} s)"
                        for leaf in RL_LEAVES) +
              f"  NS cover {row['ns_metis_cover']:.4f} -> rl {row['ns_rl']:.4f}", flush=True)
    keys = ["mmd", "nd-metis-bisect"] + [f"nd-rl/{leaf}" for leaf in RL_LEAVES]
    summary = {}
    for family in dict.fromkeys(r["family"] for r in rows):
        fam = [r for r in rows if r["family"] == family]
        summary[family] = {k: float(np.median([r[k] / r["metis"] for r in fam])) for k in keys}
        summary[family]["ns_rl_over_cover"] = float(np.median([r["ns_rl"] / r["ns_metis_cover"] for r in fam]))
        summary[family]["median_seconds"] = {k: float(np.median([r[k + "_seconds"] for r in fam]))
                                             for k in ["metis"] + keys}
        summary[family]["time_ratio_to_metis"] = {k: spread([r[k + "_time_ratio_to_metis"]["median"] for r in fam])
                                                  for k in keys}
    print(f"\n{'family':18s}" + "".join(f"{k:>16s}" for k in keys) + f"{'NS rl/cover':>14s}  (median fill / METIS NodeND)")
    for family, sm in summary.items():
        print(f"{family:18s}" + "".join(f"{sm[k]:16.3f}" for k in keys) + f"{sm['ns_rl_over_cover']:14.3f}")
    print(f"\n{'family':18s}{'METIS s':>10s}" + "".join(f"{k + ' s':>20s}{'x METIS':>22s}" for k in keys)
          + "  (median seconds; time / METIS: median over graphs of per-graph median ratios, min-max over graphs)")
    for family, sm in summary.items():
        print(f"{family:18s}{sm['median_seconds']['metis']:10.4f}" + "".join(
            f"{sm['median_seconds'][k]:20.4f}{format_ratio(sm['time_ratio_to_metis'][k]):>22s}" for k in keys))
    results = {"command": "python benchmarks/ordering.py --rl" + (" --quick" if args.quick else "")
               + (f" --rounds {args.rounds}" if args.rounds != ROUNDS else ""),
               "timing": f"one untimed run per ordering and graph (fill; compiles nd-rl's new padded shapes), then "
                         f"{args.rounds} interleaved rounds",
               "agent": str(args.agent) if args.agent else "shipped", "rows": rows, "summary": summary}
    out = ROOT / "benchmarks" / "results" / "ordering_rl.json"
    write_results(out, results, monitor, allow_load=args.allow_load, speed=False)
    print(f"wrote {out}")


def run_rl_large(args) -> None:
    """nd-rl vs METIS NodeND on Delaunay 5·10⁴ (seeds 0–2) and 10⁵ (seeds 2, 1): fill and warm time."""
    monitor = Monitor()
    rows = []
    for n, seeds in ((100_000, (2, 1)), (50_000, (0, 1, 2))):
        for seed in seeds:
            adj = delaunay(n, seed=seed)[0]
            stats: dict = {}
            calls = {"nd-rl": fresh_breakdown(functools.partial(order, adj, "nd-rl"), stats),
                     "metis": functools.partial(order, adj, "metis"), "mmd": functools.partial(order, adj, "mmd")}
            perms, firsts = {}, {}
            for key, call in calls.items():  # untimed: nd-rl compiles the padded shapes this graph meets first
                perms[key], firsts[key] = timed(call)
            t = timed_rounds(calls, args.rounds)
            fm = fill_in(adj, perms["metis"], engine="symbolic")
            row = {"n": n, "seed": seed, "metis": fm, "metis_seconds": t["metis"]["seconds"],
                   "nd_rl_first_call_seconds": firsts["nd-rl"], "nd_rl_seconds": t["nd-rl"]["seconds"],
                   "nd_rl_fill_ratio": fill_in(adj, perms["nd-rl"], engine="symbolic") / fm,
                   "mmd_fill_ratio": fill_in(adj, perms["mmd"], engine="symbolic") / fm,
                   "mmd_seconds": t["mmd"]["seconds"], "time_ratio": t["nd-rl"]["time_ratio_to_metis"],
                   "mmd_time_ratio": t["mmd"]["time_ratio_to_metis"], "seconds_rounds": {k: v["seconds_rounds"]
                                                                                         for k, v in t.items()},
                   "breakdown": stats}
            rows.append(row)
            print(f"  delaunay n={n} seed={seed}: nd-rl {row['nd_rl_fill_ratio']:.4f}x METIS fill, "
                  f"{row['nd_rl_seconds']:.2f} s ({format_ratio(row['time_ratio'])} METIS {row['metis_seconds']:.3f} s; "
                  f"first call {firsts['nd-rl']:.1f} s); mmd {row['mmd_fill_ratio']:.4f}x", flush=True)
    out = ROOT / "benchmarks" / "results" / "ordering_rl_large.json"
    command = "python benchmarks/ordering.py --rl-large" + (f" --rounds {args.rounds}" if args.rounds != ROUNDS else "")
    write_results(out, {"command": command, "rows": rows}, monitor,
                  allow_load=args.allow_load, speed=True)
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="n = 3,000 only")
    ap.add_argument("--rl", action="store_true", help="paper B: nd-rl vs METIS NodeND on graph families")
    ap.add_argument("--rl-large", action="store_true", help="paper B: nd-rl vs METIS NodeND, Delaunay 5e4 and 1e5")
    ap.add_argument("--agent", type=Path, default=None, help="RL separator agent weights (default: shipped)")
    ap.add_argument("--weights", type=Path, default=None, help="GNN weights (default: shipped)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ordering.json")
    ap.add_argument("--rounds", type=int, default=ROUNDS, help=f"interleaved timing rounds per graph (default {ROUNDS})")
    add_arguments(ap)
    args = ap.parse_args()
    if args.rl:
        return run_rl(args)
    if args.rl_large:
        return run_rl_large(args)
    monitor = Monitor()
    model = GNNBisector.load(args.weights)
    t0 = time.perf_counter()
    warm, _ = delaunay(1000, seed=99)
    for method in METHODS:
        fill_in(warm, order(warm, method, model=model if method == "nd-gnn" else None), engine="symbolic")
    print(f"warm-up {time.perf_counter() - t0:.1f} s", flush=True)
    graphs = [run_graph(n, model, args.rounds) for n in (SIZES[:1] if args.quick else SIZES)]
    print_tables(graphs)
    results = {
        "command": "python benchmarks/ordering.py" + (" --quick" if args.quick else "")
                   + (f" --rounds {args.rounds}" if args.rounds != ROUNDS else ""),
        "machine": f"{platform.processor() or platform.machine()}, shared 2-core CPU",
        "weights": str(args.weights) if args.weights else "shipped",
        "graphs": "Delaunay, unit square, seed 0",
        "timing": f"after a warm-up on n = 1,000: one untimed run per ordering and graph (fill; compiles nd-gnn/nd-rl), "
                  f"then {args.rounds} interleaved rounds; seconds = median, time_ratio_to_metis = per-round ratios",
        "spec_reference_n3000": SPEC_N3000,
        "results": graphs,
        "total_seconds": time.perf_counter() - t0,
    }
    write_results(args.out, results, monitor, allow_load=args.allow_load)
    print(f"\ntotal {results['total_seconds']:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
