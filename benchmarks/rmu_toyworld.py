"""RMU in the toy world: the default config over several seeds, and a sweep over c and α.

    jaxsafe toyworld build --out runs/toyworld          # once (the base model)
    python benchmarks/rmu_toyworld.py --world runs/toyworld

Each run is ``jaxsafe unlearn rmu`` with ``configs/rmu/toyworld.yaml`` (and overrides);
knowledge is measured with cloze accuracy on the hazardous and benign question sets.
Writes benchmarks/results/rmu_toyworld.json and docs/img/rmu_sweep.png, prints tables.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from _protocol import Monitor, add_arguments, write_results

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "rmu" / "toyworld.yaml"


def run(world: Path, overrides: list[str], out: Path) -> dict:
    from jaxsafe.config import load_config
    from jaxsafe.unlearn.config import RMUConfig
    from jaxsafe.unlearn.pipeline import unlearn_and_evaluate

    cfg = load_config(RMUConfig, CONFIG, [f"world={world}", *overrides])
    return unlearn_and_evaluate(cfg, out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", type=Path, required=True)
    p.add_argument("--seeds", default="42,43,44")
    p.add_argument("--coefs", default="20,100,300")
    p.add_argument("--alphas", default="2,20,200")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "rmu_toyworld.json")
    add_arguments(p)
    args = p.parse_args()
    monitor = Monitor()
    results: dict = {"config": str(CONFIG.relative_to(ROOT)), "world": str(args.world), "seeds": {}, "sweep": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds.split(","):
            r = run(args.world, [f"seed={seed}"], Path(tmp) / f"seed{seed}")
            results["seeds"][seed] = {"before": r["before"], "after": r["after"], "train_seconds": r["train_seconds"]}
            print(f"seed {seed}: " + ", ".join(f"{k} {r['before'][k]:.3f} -> {r['after'][k]:.3f}" for k in r["before"]), flush=True)
        for c in args.coefs.split(","):
            for a in args.alphas.split(","):
                r = run(args.world, [f"steering_coef={c}", f"alpha={a}"], Path(tmp) / f"c{c}_a{a}")
                results["sweep"].append({"steering_coef": float(c), "alpha": float(a), **r["after"]})
                print(f"c={c} alpha={a}: hazard {r['after']['hazard']:.3f} benign {r['after']['benign']:.3f}", flush=True)
    seeds = list(results["seeds"].values())
    base = seeds[0]["before"]
    summary = {}
    for name in base:
        after = [s["after"][name] for s in seeds]
        summary[name] = {"before": base[name], "after_mean": statistics.mean(after),
                         "after_std": statistics.stdev(after) if len(after) > 1 else 0.0}
    results["summary"] = summary
    write_results(args.out, results, monitor, allow_load=args.allow_load, speed=False)  # accuracies; train_seconds are incidental
    print(f"\n{'set':<10}{'base':>8}{'after RMU (mean ± std over ' + str(len(seeds)) + ' seeds)':>40}")
    for name, s in summary.items():
        print(f"{name:<10}{100 * s['before']:>8.1f}{100 * s['after_mean']:>30.1f} ± {100 * s['after_std']:.1f}")
    plot(results, ROOT / "docs" / "img" / "rmu_sweep.png")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    base = next(iter(results["seeds"].values()))["before"]
    ax.scatter([100 * base["hazard"]], [100 * base["benign"]], marker="*", s=200, color="black", label="base model")
    for i, row in enumerate(results["sweep"]):
        ax.scatter(100 * row["hazard"], 100 * row["benign"], color="tab:blue")
        ax.annotate(f"c={row['steering_coef']:g}, α={row['alpha']:g}", (100 * row["hazard"], 100 * row["benign"]),
                    textcoords="offset points", xytext=(4, (3, -9, 9)[i % 3]), fontsize=7)  # staggered: neighbours share rows
    for s in results["seeds"].values():
        ax.scatter(100 * s["after"]["hazard"], 100 * s["after"]["benign"], marker="x", color="tab:red")
    ax.scatter([], [], marker="x", color="tab:red", label="default config, 3 seeds")
    ax.axvline(25, color="gray", ls=":", label="chance (25%)")
    ax.set_xlabel("hazardous-domain accuracy after RMU (%, cloze) — lower is better")
    ax.set_ylabel("benign-domain accuracy after RMU (%, cloze)")
    ax.set_title("RMU in the toy world: forget vs retain")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)


if __name__ == "__main__":
    main()
