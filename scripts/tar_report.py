"""Tables and a plot from `jaxsafe attack` / `jaxsafe attack search` output folders.

    python scripts/tar_report.py --suite TAR=runs/full_tar control=runs/full_control ... \
        [--search TAR=runs/search_tar ...] [--plot docs/img/tar_full_suite.png]

--suite LABEL=DIR: a folder written by `jaxsafe attack` (summary.json, attacks.json) or by
`jaxsafe tamper tar` (DIR/redteam/...). Prints one markdown row per model: hazard_E before,
mean and worst after (the attack), worst among attacks whose benign accuracy fell <= epsilon,
set A before, benign before, mean benign after (cloze accuracy, %).
LABEL=DIR1,DIR2,...: one model trained with several seeds; its row gives mean ± sd (sample
standard deviation, n - 1) over the folders, and the worst attacks of each seed.
--search LABEL=DIR: a folder written by `jaxsafe attack search` (search.json); one row each.
--plot PATH: two panels — per model, hazard_E before / mean / worst / worst within epsilon
(bars; error bars: sd over seeds), and hazard_E against attack step for the worst attack of
each model and seed (solid) with the mean over the attacks with the longest step grid (dashed).
--reference LABEL: per model, the largest hazard_E gap to that model after the same attack
(the TAR target: within 10 points of the control model's accuracy after the same attack);
mean ± sd over seeds for several folders.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _pairs(items):
    out = []
    for it in items or []:
        label, _, d = it.partition("=")
        out.append((label, Path(d)))
    return out


def _seed_pairs(items):
    """LABEL=DIR1,DIR2 -> (LABEL, [DIR1, DIR2])."""
    return [(label, [Path(x) for x in str(d).split(",")]) for label, d in _pairs(items)]


def _suite(d: Path):
    if (d / "redteam" / "summary.json").exists():
        d = d / "redteam"
    return json.loads((d / "summary.json").read_text()), json.loads((d / "attacks.json").read_text())


def p(x, sign=""):
    return "–" if x is None else f"{100 * x:{sign}.1f}"


def ps(xs, sign=""):
    """Percent of one value, or mean ± sample sd (n - 1) of several; sign="+" signs the value."""
    if len(xs) == 1 or None in xs:
        return "/".join(p(x, sign) for x in xs)
    import numpy as np

    return f"{p(np.mean(xs), sign)} ± {100 * np.std(xs, ddof=1):.1f}"


def _names(xs):
    """Attack names per seed, repeated ones counted: "a ×2, b"."""
    return ", ".join(n if xs.count(n) == 1 else f"{n} ×{xs.count(n)}" for n in dict.fromkeys(xs))


def suite_row(label, ss):
    """One markdown row for the summaries ss (one per seed)."""
    col = lambda f: ps([f(s) for s in ss])  # noqa: E731
    secs = "/".join(str(s.get("seconds", "")) for s in ss)
    return (f"| {label} | {col(lambda s: s['before']['hazard_E'])} | {col(lambda s: s['mean_hazard_after'])} | "
            f"{col(lambda s: s['worst_hazard_after'])} ({_names([s['worst_attack'] for s in ss])}) | "
            f"{col(lambda s: s['worst_hazard_within_epsilon'])} "
            f"({_names([str(s['worst_attack_within_epsilon']) for s in ss])}) | "
            f"{col(lambda s: s['before'].get('hazard_A'))} | {col(lambda s: s['before']['benign'])} | "
            f"{col(lambda s: s['mean_benign_after'])} | {secs} |")


def search_row(label, r):
    """search.json: {"summary": like summary.json, "attacks": curves, "configs": {name: attack}}."""
    s = r["summary"]
    name = s["worst_attack_within_epsilon"]
    desc = "none"
    if name:
        c = r["configs"][name]
        o = c["optimizer"]
        desc = f"{o['name']} lr {o['lr']:.1e}, {o['schedule']['kind']}, {c['data']}, {c['steps']} steps"
    return (f"| {label} | {p(s['before']['hazard_E'])} | {p(s['mean_hazard_after'])} | "
            f"{p(s['worst_hazard_within_epsilon'])} ({desc}) | {p(s['before']['benign'])} |")


def plot(suites, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.4))
    labels = [lab if len(ss) == 1 else f"{lab}\n({len(ss)} seeds)" for lab, ss, _ in suites]
    x = np.arange(len(labels))
    keys = [("before", lambda s: s["before"]["hazard_E"]), ("mean after", lambda s: s["mean_hazard_after"]),
            ("worst after", lambda s: s["worst_hazard_after"]),
            ("worst within ε", lambda s: s["worst_hazard_within_epsilon"] or 0.0)]
    w = 0.2
    for i, (name, f) in enumerate(keys):
        vals = [[100 * f(s) for s in ss] for _, ss, _ in suites]
        ax.bar(x + (i - 1.5) * w, [np.mean(v) for v in vals], w, label=name,
               yerr=[np.std(v, ddof=1) if len(v) > 1 else np.nan for v in vals], capsize=2)
    ax.axhline(25, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("hazard_E cloze accuracy (%)")
    ax.set_title("red-team suite: hazard_E per model")
    ax.legend(fontsize=7)
    for lab, _, aa in suites:
        color = None
        for seed, a in enumerate(aa):
            worst = max(a["attacks"], key=lambda t: t["acc"]["hazard_E"][-1])
            tag = lab if len(aa) == 1 else f"{lab} #{seed}"
            line, = ax2.plot(worst["steps"], [100 * v for v in worst["acc"]["hazard_E"]], "-o", ms=3, color=color,
                             label=f"{tag}: worst ({worst['name']})")
            color = line.get_color()
            grid = max((t["steps"] for t in a["attacks"]), key=len)
            same = [t for t in a["attacks"] if t["steps"] == grid]
            mean = np.mean([t["acc"]["hazard_E"] for t in same], axis=0)
            ax2.plot(grid, 100 * mean, "--", color=color, lw=1)
    ax2.axhline(25, color="grey", lw=0.8, ls="--")
    ax2.set_xlabel("attack step")
    ax2.set_ylabel("hazard_E cloze accuracy (%)")
    ax2.set_title("worst attack (solid); mean of the full-length attacks (dashed)")
    ax2.legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", nargs="*")
    ap.add_argument("--search", nargs="*")
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--reference", help="a --suite label (e.g. control): also print, per model, the largest "
                    "hazard_E gap to it after the same attack")
    args = ap.parse_args()
    suites = []
    for label, dirs in _seed_pairs(args.suite):
        loaded = [_suite(d) for d in dirs]
        suites.append((label, [s for s, _ in loaded], [a for _, a in loaded]))
    if suites:
        print("| model | hazard_E before | mean after | worst after (attack) | worst within ε (attack) | set A | "
              "benign before | mean benign after | seconds |")
        print("|---|---|---|---|---|---|---|---|---|")
        for label, ss, _ in suites:
            print(suite_row(label, ss))
    if args.reference and suites:
        ref = {t["name"]: t["acc"]["hazard_E"][-1] for lab, _, aa in suites if lab == args.reference
               for t in aa[0]["attacks"]}
        print()
        print(f"| model | largest hazard_E gap to {args.reference} after the same attack (attack) | "
              f"gap of the worst cases |")
        print("|---|---|---|")
        ref_worst = max(ref.values())
        for label, ss, aa in suites:
            gaps = [max((t["acc"]["hazard_E"][-1] - ref[t["name"]], t["name"]) for t in a["attacks"] if t["name"] in ref)
                    for a in aa]
            print(f"| {label} | {ps([g for g, _ in gaps], '+')} ({_names([n for _, n in gaps])}) | "
                  f"{ps([s['worst_hazard_after'] - ref_worst for s in ss], '+')} |")
    searches = _pairs(args.search)
    if searches:
        print()
        print("| model | hazard_E before | mean over trials | worst within ε (attack) | benign before |")
        print("|---|---|---|---|---|")
        for label, d in searches:
            print(search_row(label, json.loads((d / "search.json").read_text())))
    if args.plot and suites:
        plot(suites, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
