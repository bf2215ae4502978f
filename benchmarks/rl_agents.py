"""Paper B's agents side by side with METIS: quality of each agent, one graph at a time.

    python benchmarks/rl_agents.py coarsest [--coarsest-agent W]   # coarsest-graph agent vs METIS
    python benchmarks/rl_agents.py separator --agent OLD --agent NEW  # separator agents vs METIS's vertex separator
    python benchmarks/rl_agents.py refine --agent A --agent B [--seed S]  # refinement agents on graph families
    python benchmarks/rl_agents.py gnn --weights A --weights B [--seed S]  # GNN weights on graph families

``coarsest``: on each graph's heavy-edge hierarchy (to 100 vertices, seed 0), the
normalized cut of the coarsest graph (fine degrees as volumes) bisected by METIS and by
the coarsest-graph agent (``rl_drivers.coarsest_bisect``, ``COARSEST_TRIES`` = 32 start vertices), then the
finest graph's NC of ``rl`` with either coarsest bisection (the shipped refinement agent
refines both), over METIS's bisection of the finest graph.
``separator``: on each graph, NS of METIS's vertex separator (libmetis) and of each
agent's greedy refinement of it (``refine_separators``), and the symbolic fill of nd-rl
with each agent over METIS NodeND (with the number of dissection blocks the agent improved).
``refine``: NC over METIS's bisection of ``rl`` and ``metis+rl`` with each refinement
agent on Delaunay, 2D/3D grids, Delaunay with holes and random geometric graphs (largest
component); ``--seed`` draws another set of graphs of the same sizes (grids: jittered shapes).
``gnn``: on the same graphs, NC over METIS's of ``gnn`` (sweep) and ``gnn+rl`` (the shipped
refinement agent, or the first ``--agent``) with each GNN weights file.

Quality is the headline, so results are always written (``"loaded"`` says whether the
few seconds recorded can be trusted). Results: ``benchmarks/results/rl_agents_<mode>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from _protocol import Monitor, add_arguments, write_results
from jaxsafe.graphs.partition import largest_component

ROOT = Path(__file__).resolve().parents[1]


def family_graphs(seed: int, sizes=(1000, 5000, 20000)):
    """(family, name, adj): Delaunay (unit square and [0,5]x[0,1]), grids, holes, random geometric."""
    from jaxsafe.graphs.generators import delaunay, delaunay_with_holes, grid2d, grid3d, random_geometric

    rng = np.random.default_rng(seed)
    for n in sizes:
        for width in (1.0, 5.0):
            yield "delaunay", f"n={n} w={width:g}", delaunay(n, width, 1.0, seed=n + 7919 * seed)[0]
    for nx in (30, 70, 100):
        ny = nx if seed == 0 else int(nx * rng.uniform(0.7, 1.3))
        yield "grid2d", f"{nx}x{ny}", grid2d(nx, ny)[0]
    for nx in (10, 16, 22):
        dims = (nx,) * 3 if seed == 0 else tuple(int(nx * x) for x in rng.uniform(0.8, 1.2, 3))
        yield "grid3d", "x".join(map(str, dims)), grid3d(*dims)[0]
    for n in sizes:
        yield "holes", f"n={n}", largest_component(delaunay_with_holes(n, seed=n + 7919 * seed)[0])
    for n in sizes:
        yield "random-geometric", f"n={n}", largest_component(random_geometric(n, seed=n + 7919 * seed)[0])


def _summary(rows, keys):
    out = {}
    for fam in dict.fromkeys(r["family"] for r in rows):
        fr = [r for r in rows if r["family"] == fam]
        out[fam] = {k: {"median": float(np.median([r[k] for r in fr])), "max": float(np.max([r[k] for r in fr]))}
                    for k in keys}
    return out


def _print_summary(summary, keys):
    print(f"\n{'family':18s}" + "".join(f"{k:>22s}" for k in keys) + "   (median [max])")
    for fam, s in summary.items():
        print(f"{fam:18s}" + "".join(f"{s[k]['median']:12.3f} [{s[k]['max']:6.3f}]" for k in keys))


def _nc_over_metis(graphs, partitions):
    """Per graph of ``graphs`` ((family, name, adj)): each partition of ``partitions(adj)`` ({column:
    parts}) as its normalized cut over METIS's bisection's; prints each row and the per-family summary."""
    from jaxsafe.graphs.baselines import metis_parts
    from jaxsafe.graphs.partition import evaluate

    rows = []
    for family, name, adj in graphs:
        metis = evaluate(adj, metis_parts(adj, 2, 0))["normalized_cut"]
        row = {"family": family, "graph": name, "n": int(adj.shape[0]), "metis": metis}
        row.update({k: evaluate(adj, parts)["normalized_cut"] / metis for k, parts in partitions(adj).items()})
        rows.append(row)
        print(f"{family:17s} {name:12s} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items() if "/" in k), flush=True)
    keys = [k for k in rows[0] if "/" in k]
    summary = _summary(rows, keys)
    _print_summary(summary, keys)
    return rows, summary


def run_coarsest(args) -> dict:
    from jaxsafe.graphs.baselines import metis_parts
    from jaxsafe.graphs.coarsen import build_hierarchy
    from jaxsafe.graphs.partition import evaluate
    from jaxsafe.graphs.rl_agents import ActorCritic
    from jaxsafe.graphs.rl_drivers import coarsest_bisect, objective_np, rl_bisect

    refine = ActorCritic.load(args.agent[0] if args.agent else None)
    cagent = ActorCritic.load(args.coarsest_agent, task="coarsest")
    rows = []
    for family, name, adj in family_graphs(args.seed):
        h = build_hierarchy(adj, coarsest_size=100, seed=0)
        deg = np.asarray(adj.sum(axis=1)).ravel()
        for lv in h.levels[:-1]:
            deg = np.bincount(lv.cmap, weights=deg)
        c = h.coarsest
        t0 = time.perf_counter()
        ours = coarsest_bisect(c.adj, cagent, deg=deg, vw=c.vweights)
        t1 = time.perf_counter()
        theirs = metis_parts(c.adj, 2, 0)
        t2 = time.perf_counter()
        metis = evaluate(adj, metis_parts(adj, 2, 0))["normalized_cut"]
        fine = {how: evaluate(adj, rl_bisect(adj, refine, coarsest=how, coarsest_agent=cagent))
                for how in ("metis", "agent")}
        row = {"family": family, "graph": name, "n": int(adj.shape[0]), "coarsest_n": int(c.n),
               "coarsest_nc_metis": objective_np(c.adj, theirs, deg), "coarsest_nc_agent": objective_np(c.adj, ours, deg),
               "coarsest_seconds_agent": t1 - t0, "coarsest_seconds_metis": t2 - t1, "metis": metis,
               **{f"rl_{how}_coarsest": r["normalized_cut"] / metis for how, r in fine.items()},
               **{f"rl_{how}_coarsest_balance": r["balance"] for how, r in fine.items()}}
        row["coarsest_ratio"] = row["coarsest_nc_agent"] / row["coarsest_nc_metis"]
        rows.append(row)
        print(f"{family:17s} {name:12s} coarsest n={c.n:3d}: agent/METIS {row['coarsest_ratio']:.3f}; finest rl "
              f"(METIS coarsest) {row['rl_metis_coarsest']:.3f}, rl (agent coarsest) {row['rl_agent_coarsest']:.3f}",
              flush=True)
    keys = ["coarsest_ratio", "rl_metis_coarsest", "rl_agent_coarsest"]
    summary = _summary(rows, keys)
    _print_summary(summary, keys)
    return {"rows": rows, "summary": summary,
            "coarsest_agent": str(args.coarsest_agent) if args.coarsest_agent else "shipped"}


def run_separator(args) -> dict:
    from jaxsafe.graphs.generators import delaunay, delaunay_with_holes, grid2d, grid3d, random_geometric
    from jaxsafe.graphs.ordering import fill_in, order, pattern
    from jaxsafe.graphs.rl_agents import ActorCritic
    from jaxsafe.graphs.rl_drivers import refine_separators, start_separator

    agents = {str(p): ActorCritic.load(p, task="separator") for p in (args.agent or [None])}
    graphs = [("delaunay", f"n={n} seed={s}", delaunay(n, seed=s)[0]) for s in (1, 2) for n in (10_000, 30_000, 50_000)]
    graphs += [("grid2d", "100x100", grid2d(100, 100)[0]), ("grid3d", "20^3", grid3d(20, 20, 20)[0]),
               ("holes", "n=10000", largest_component(delaunay_with_holes(10_000, seed=3)[0])),
               ("random-geometric", "n=10000", largest_component(random_geometric(10_000, seed=3)[0]))]
    ns = lambda x: np.sum(x == 2) * (1 / np.sum(x == 0) + 1 / np.sum(x == 1))  # noqa: E731
    rows = []
    for family, name, adj in graphs:
        p = pattern(adj)
        s0 = start_separator(p, 0)
        metis_fill = fill_in(p, order(p, "metis"), engine="symbolic")
        row = {"family": family, "graph": name, "n": int(p.shape[0]), "ns_metis": float(ns(s0)),
               "S_metis": int(np.sum(s0 == 2)), "metis_nodend_fill": int(metis_fill)}
        for label, agent in agents.items():
            s1 = refine_separators([p], [s0], agent)[0]
            stats = {}
            perm = order(p, "nd-rl", model=agent, seconds=stats)
            row[label] = {"ns_ratio": float(ns(s1) / ns(s0)), "S": int(np.sum(s1 == 2)),
                          "nd_rl_fill_ratio": fill_in(p, perm, engine="symbolic") / metis_fill,
                          "blocks_improved": int(stats.get("agent_improved", 0)), "agent_moves": int(stats.get("agent_moves", 0))}
        rows.append(row)
        print(f"{family:17s} {name:14s} " + "  ".join(
            f"{Path(k).name if k != 'None' else 'shipped'}: NS {v['ns_ratio']:.4f}, fill {v['nd_rl_fill_ratio']:.4f}, "
            f"improved {v['blocks_improved']}" for k, v in ((k, row[k]) for k in agents)), flush=True)
    return {"rows": rows, "agents": list(agents)}


def run_refine(args) -> dict:
    from jaxsafe.graphs.rl_agents import ActorCritic
    from jaxsafe.graphs.rl_drivers import rl_bisect

    agents = {(Path(p).parent.name if p else "shipped"): ActorCritic.load(p) for p in (args.agent or [None])}
    rows, summary = _nc_over_metis(family_graphs(args.seed), lambda adj: {
        f"{label}/{method}": rl_bisect(adj, agent, start=start)
        for label, agent in agents.items() for method, start in (("rl", "metis"), ("metis+rl", "metis-fine"))})
    return {"rows": rows, "summary": summary, "agents": {k: str(p) for k, p in zip(agents, args.agent or [None])},
            "seed": args.seed}


def run_gnn(args) -> dict:
    from jaxsafe.graphs.gnn import GNNBisector
    from jaxsafe.graphs.partition import bisect
    from jaxsafe.graphs.rl_agents import ActorCritic
    from jaxsafe.graphs.rl_drivers import rl_bisect

    agent = ActorCritic.load(args.agent[0] if args.agent else None)
    models = {(Path(p).parent.name if p else "shipped"): GNNBisector.load(p) for p in (args.weights or [None])}
    def cells(adj):
        out = {}
        for label, model in models.items():
            out[f"{label}/gnn"] = bisect(adj, "gnn", model=model)
            out[f"{label}/gnn+rl"] = rl_bisect(adj, agent, start="gnn", gnn_model=model)
        return out

    rows, summary = _nc_over_metis(family_graphs(args.seed), cells)
    return {"rows": rows, "summary": summary, "weights": {k: str(p) for k, p in zip(models, args.weights or [None])},
            "seed": args.seed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("coarsest", "separator", "refine", "gnn"))
    ap.add_argument("--agent", type=Path, action="append", help="agent weights (repeat to compare; default: shipped)")
    ap.add_argument("--weights", type=Path, action="append", help="gnn: GNN weights (repeat to compare; default: shipped)")
    ap.add_argument("--coarsest-agent", type=Path, default=None, help="coarsest-graph agent (default: shipped)")
    ap.add_argument("--seed", type=int, default=0, help="graph set (refine, coarsest): 0 = the reported one")
    ap.add_argument("--out", type=Path, default=None, help="results file (default benchmarks/results/rl_agents_<mode>.json)")
    add_arguments(ap)
    args = ap.parse_args()
    monitor = Monitor()
    result = {"run_coarsest": run_coarsest, "run_separator": run_separator, "run_refine": run_refine, "run_gnn": run_gnn}[f"run_{args.mode}"](args)
    command = "python benchmarks/rl_agents.py " + " ".join(a for a in __import__("sys").argv[1:])
    out = args.out or ROOT / "benchmarks" / "results" / f"rl_agents_{args.mode}.json"
    write_results(out, {"command": command, **result}, monitor, allow_load=args.allow_load, speed=False)
    print(json.dumps({"out": str(out)}))


if __name__ == "__main__":
    main()
