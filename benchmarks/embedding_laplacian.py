"""L_sym vs L_rw in the spectral embedding module's loss: which gives better partitions?

Paper A leaves the normalization of the Laplacian in the Rayleigh-quotient loss
open (issue 7: "pick one, say why, report which gives better partitions"). This
script evaluates GNN weights trained with each choice on the paper's 50-graph
test set of benchmarks/partitioning.py (same graphs, same seeds), side by side:
median normalized cut and median NC / METIS for the network alone (argmax) and
with the sweep-cut refinement. METIS (pymetis defaults) runs once per graph.

The weights come from two runs of the trainer with an identical budget that
differ only in ``model.laplacian`` (the shipped config, configs/graphs/train.yaml;
add ``embedding.epochs=5 partition.epochs=50 eval_graphs=2`` to both for the
quarter-budget check):

    jaxsafe graphs train --out runs/lapfull_sym
    jaxsafe graphs train --out runs/lapfull_rw model.laplacian=rw
    python benchmarks/embedding_laplacian.py --weights shipped \\
        --weights sym=runs/lapfull_sym/gnn_bisection.safetensors --weights rw=runs/lapfull_rw/gnn_bisection.safetensors

``--weights shipped`` adds the shipped weights (L_sym, full budget) as a reference row.
Writes benchmarks/results/embedding_laplacian.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from partitioning import ROOT, make_test_set, measure  # noqa: E402

from jaxsafe.graphs.generators import delaunay  # noqa: E402
from _protocol import Monitor, add_arguments, write_results  # noqa: E402
from jaxsafe.graphs.gnn import GNNBisector  # noqa: E402

REFINES = (("network alone", "none"), ("+ sweep", "sweep"))


def _weights(spec: str) -> tuple[str, Path | None]:
    if spec == "shipped":
        return spec, None
    label, sep, path = spec.partition("=")
    if not sep:
        raise SystemExit(f"--weights expects LABEL=PATH or 'shipped', got {spec!r}")
    return label, Path(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", action="append", type=_weights, required=True, help="LABEL=PATH or 'shipped'")
    ap.add_argument("--quick", action="store_true", help="10 graphs instead of 50")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "embedding_laplacian.json")
    add_arguments(ap)
    args = ap.parse_args()
    monitor = Monitor()
    models = {label: GNNBisector.load(path) for label, path in args.weights}
    sizes, test_set = make_test_set(quick=args.quick)

    metis = []
    nc = {(label, r): [] for label in models for r, _ in REFINES}
    for n, width, seed in test_set:
        adj, _ = delaunay(n, width, 1.0, seed=seed)
        metis.append(measure(adj, "metis", None, None, repeats=1)["normalized_cut"])
        for label, model in models.items():
            for r, refine in REFINES:
                nc[label, r].append(measure(adj, "gnn", refine, model, repeats=1)["normalized_cut"])
        print(f"n={n:6d} [0,{width:g}]x[0,1]  metis={metis[-1]:.4f}  " + "  ".join(
            f"{label}/{r}={v[-1]:.4f}" for (label, r), v in nc.items()), flush=True)

    metis = np.array(metis)
    summary = {}
    print(f"\nTest set: {len(test_set)} Delaunay graphs, n {sizes[0]}..{sizes[-1]}, unit square and [0,5]x[0,1]")
    print(f"{'weights':10s} {'laplacian':9s} {'refinement':15s} {'median NC':>10s} {'NC/METIS':>9s}")
    for (label, r), v in nc.items():
        v = np.array(v)
        row = {"laplacian": models[label].config.laplacian, "refinement": r,
               "median_normalized_cut": float(np.median(v)), "median_nc_ratio_to_metis": float(np.median(v / metis))}
        summary[f"{label} {r}"] = row
        print(f"{label:10s} {row['laplacian']:9s} {r:15s} {row['median_normalized_cut']:10.4f} "
              f"{row['median_nc_ratio_to_metis']:9.3f}")
    print(f"{'metis':36s} {float(np.median(metis)):10.4f} {1.0:9.3f}")

    results = {
        "command": "python benchmarks/embedding_laplacian.py " + " ".join(
            "--weights " + (label if path is None else f"{label}={path}") for label, path in args.weights)
        + (" --quick" if args.quick else ""),
        "machine": f"{platform.processor() or platform.machine()}, shared 2-core CPU",
        "weights": {label: str(path) if path else "shipped" for label, path in args.weights},
        "training": {label: json.loads((path.parent / "results.json").read_text())
                     for label, path in args.weights if path and (path.parent / "results.json").is_file()},
        "metis_median_normalized_cut": float(np.median(metis)),
        "summary": summary,
        "test_set": {"sizes": sizes.tolist(), "widths": [1.0, 5.0], "metis_nc": metis.tolist(),
                     "nc": {f"{label} {r}": v for (label, r), v in nc.items()}},
    }
    write_results(args.out, results, monitor, allow_load=args.allow_load, speed=False)  # normalized cuts, no timings
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
