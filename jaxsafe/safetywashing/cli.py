"""``jaxsafe safetywashing``: capabilities correlations of a benchmark table, with plots.

Example (the authors' base-model table)::

    jaxsafe safetywashing --scores benchmarks_base_models.csv --info benchmarks_info.csv \\
        --out sw_base --scatter truthfulqa_mc1
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from typing import TYPE_CHECKING

from jaxsafe.cli import nonnegative_int, open_unit_interval
from jaxsafe.errors import UserError
from jaxsafe.io import atomic_write_json, atomic_write_text, check_input_file, check_output_dir

if TYPE_CHECKING:
    from jaxsafe.safetywashing.analysis import Result

OUTPUT_COLUMNS = (
    "benchmark",
    "name",
    "area",
    "role",
    "direction",
    "capabilities_correlation",
    "ci_low",
    "ci_high",
    "n_models",
    "compute_correlation",
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "safetywashing",
        help="capabilities correlations of safety benchmarks (Ren et al. 2024)",
        description="Correlate every benchmark of a model x benchmark table with the capabilities score "
        "(PC1 of the capability benchmarks' Spearman matrix); write CSV/JSON tables and plots.",
    )
    p.add_argument("--scores", type=Path, required=True, help="CSV: first column model id, one column per benchmark")
    p.add_argument("--info", type=Path, help="CSV with columns benchmark,name: display names")
    p.add_argument(
        "--capabilities",
        help="comma-separated capability benchmark columns (default: the paper's 12, listed in docs/safetywashing.md)",
    )
    p.add_argument("--directions", type=Path, help="YAML {benchmark or glob: 1 | -1}; -1 negates a column (lower = better)")
    p.add_argument("--areas", type=Path, help="YAML {area: [benchmark globs]} replacing the packaged area map")
    p.add_argument(
        "--add", type=Path, action="append", default=[], metavar="CSV",
        help="extra scores CSV (new models and/or new benchmarks) merged into --scores; repeatable",
    )
    p.add_argument("--bootstrap", type=nonnegative_int, default=1000, metavar="N", help="bootstrap resamples for CIs (0 = none; default 1000)")
    p.add_argument("--level", type=open_unit_interval, default=0.95, help="confidence level of the intervals (default 0.95)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--scatter", action="append", default=[], metavar="NAME", help="benchmark to plot against the capabilities score; repeatable (default: an added benchmark, else truthfulqa_mc1 or the top one)")
    p.add_argument("--show", type=nonnegative_int, default=0, metavar="N", help="print only the N highest and N lowest rows (default: all)")
    p.add_argument("--out", type=Path, default=Path("safetywashing_out"), help="output folder (default: safetywashing_out)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jaxsafe.safetywashing.analysis import analyze
    from jaxsafe.safetywashing.tables import add_scores, load_areas, load_directions, load_info, load_scores

    for flag, path in [("--scores", args.scores), ("--info", args.info), ("--directions", args.directions),
                       ("--areas", args.areas), *(("--add", p) for p in args.add)]:
        if path is not None:
            check_input_file(path, flag)
    check_output_dir(args.out, "--out")
    table = load_scores(args.scores)
    base_columns = set(table.scores.columns)
    for path in args.add:
        table = add_scores(table, load_scores(path), source=str(path))
    added = [c for c in table.scores.columns if c not in base_columns]
    capabilities = None
    if args.capabilities is not None:
        capabilities = [c.strip() for c in args.capabilities.split(",") if c.strip()]
        if not capabilities:
            raise UserError("--capabilities is empty")
    result = analyze(
        table,
        capabilities=capabilities,
        directions=load_directions(args.directions) if args.directions else None,
        areas=load_areas(args.areas),
        names=load_info(args.info) if args.info else None,
        n_boot=args.bootstrap,
        level=args.level,
        seed=args.seed,
    )
    scatter = args.scatter or [_default_scatter(result, added)]
    unknown = [s for s in scatter if s not in set(result.correlations.benchmark)]
    if unknown:
        raise UserError(f"--scatter: {unknown[0]!r} is not an analysed benchmark column")
    written = write_outputs(result, args.out, scatter)
    print(format_report(result, show=args.show, highlight=added))
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


def _default_scatter(result: Result, added: list[str]) -> str:
    analysed = list(result.correlations.benchmark)
    for name in [*added, "truthfulqa_mc1"]:
        if name in analysed:
            return name
    safety = result.correlations[result.correlations.role == "safety"]
    return str((safety if len(safety) else result.correlations).benchmark.iloc[0])


def _clean(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def write_outputs(result: Result, out: Path, scatter: list[str]) -> list[Path]:
    """correlations.csv/.json, summary.json, capabilities_score.csv and the plots.

    All are made in a temporary folder inside ``out`` and then renamed into it, so a
    failure while making them (a plot, a full disk) leaves the previous set as it was.
    """
    import os
    import tempfile

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".partial-") as tmp:
        made = _write_outputs(result, Path(tmp), scatter)
        written = []
        for path in made:
            os.replace(path, out / path.name)
            written.append(out / path.name)
    return written


def _write_outputs(result: Result, out: Path, scatter: list[str]) -> list[Path]:
    import pandas as pd

    from jaxsafe.safetywashing import plots  # matplotlib only when writing plots

    frame = result.correlations[list(OUTPUT_COLUMNS)]
    records = [{k: _clean(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
    scores = pd.DataFrame({"name": result.model_names.reindex(result.score.index), "capabilities_score": result.score})
    written = [
        atomic_write_text(out / "correlations.csv", frame.to_csv(index=False, float_format="%.4f")),
        atomic_write_text(out / "correlations.json", json.dumps(records, indent=1, ensure_ascii=False) + "\n"),
        atomic_write_json(out / "summary.json", result.summary()),
        atomic_write_text(out / "capabilities_score.csv", scores.to_csv(index_label="model", float_format="%.6f")),
        plots.plot_correlations_by_area(result, out / "correlations_by_area.png"),
        plots.plot_area_summary(result, out / "area_summary.png"),
    ]
    written += [plots.plot_scatter(result, name, out / plots.scatter_filename(name)) for name in scatter]
    return written


def format_report(result: Result, show: int = 0, highlight: list[str] = ()) -> str:
    """Summary lines plus the ranked table (correlations x 100; ``*`` marks added benchmarks)."""
    lines = [
        f"models: {result.n_models}; capability benchmarks: {len(result.pc1)}; "
        f"PC1 explains {100 * result.explained_variance:.2f}% of their Spearman matrix",
    ]
    if result.score_compute_correlation is not None:
        lines.append(f"capabilities score vs training FLOP: Spearman {100 * result.score_compute_correlation:.1f}")
    lines += [f"left out {col}: {why}" for col, why in result.dropped.items()]
    lines += [f"note: {n}" for n in result.notes]
    frame = result.correlations
    ci = result.n_boot > 0
    header = f"{'rank':>4}  {'benchmark':<44} {'area':<22} {'cap.corr':>8}"
    header += f"  {f'{round(100 * result.level)}% CI':<16}" if ci else ""
    header += f" {'n':>3} {'FLOP corr':>9}"
    lines += ["", header]
    rows = list(frame.itertuples())
    if show and len(rows) > 2 * show:
        rows = rows[:show] + [None] + rows[-show:]
    for row in rows:
        if row is None:
            lines.append(f"{'...':>4}  ({len(frame) - 2 * show} more in correlations.csv)")
            continue
        mark = "*" if row.benchmark in highlight else " "
        label = row.name if row.role == "safety" else f"{row.name} [capability]"
        line = f"{row.Index + 1:>4} {mark}{label[:44]:<44} {row.area[:22]:<22} {row.capabilities_correlation:>8.1f}"
        if ci:
            line += f"  [{row.ci_low:6.1f}, {row.ci_high:6.1f}]"
        line += f" {row.n_models:>3} {row.compute_correlation:>9.1f}"
        lines.append(line)
    return "\n".join(lines)


def demo(out_dir: Path) -> None:
    """Run the analysis on a small generated table (synthetic, not the paper's data)."""
    from jaxsafe.safetywashing.analysis import DEFAULT_CAPABILITIES, analyze
    from jaxsafe.safetywashing.synthetic import synthetic_table, true_capabilities_correlation

    safety = {"synthetic_safety_rho0.9": 0.9, "synthetic_safety_rho0.5": 0.5, "synthetic_safety_rho0.0": 0.0, "synthetic_safety_rho-0.6": -0.6}
    noise = 0.3
    table = synthetic_table(seed=0, n_models=24, capability_names=DEFAULT_CAPABILITIES, safety=safety, noise=noise)
    result = analyze(table, n_boot=200)
    write_outputs(result, out_dir, ["synthetic_safety_rho0.5"])
    print("SYNTHETIC data: 24 generated models, 12 capability columns, 4 safety columns with known coupling rho")
    print(format_report(result))
    truth = ", ".join(f"{k} {100 * true_capabilities_correlation(rho, noise, len(DEFAULT_CAPABILITIES)):.1f}" for k, rho in safety.items())
    print(f"population values the sample estimates: {truth}")
    print(f"outputs in {out_dir}")
    print(
        "real data: jaxsafe safetywashing --scores benchmarks_base_models.csv --info benchmarks_info.csv --out sw_base"
        "   (CSV files from github.com/centerforaisafety/safetywashing, data/)"
    )
