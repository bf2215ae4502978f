"""The capabilities-correlation analysis of a benchmark table (Ren et al. 2024, Sec. 3).

:func:`analyze` takes a :class:`~jaxsafe.safetywashing.tables.ScoreTable` and returns
per-benchmark capabilities correlations (Spearman x 100 with the PC1 capabilities
score), correlations with training compute, optional bootstrap intervals, and a
record of every column it left out and why. The numerics live in
:mod:`jaxsafe.safetywashing.stats`; this module does the bookkeeping.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxsafe.errors import UserError
from jaxsafe.safetywashing import stats
from jaxsafe.safetywashing.tables import ScoreTable, area_of, load_areas, resolve_directions

#: The 12 capability benchmarks of the reference analysis (spec step 3).
DEFAULT_CAPABILITIES = (
    "logiqa",
    "piqa",
    "hellaswag",
    "winogrande",
    "superglue_copa",
    "medqa_4options",
    "arc_challenge",
    "mmlu",
    "minerva_math",
    "lambada_openai",
    "gsm8k",
    "bbh",
)
MIN_MODELS = 3
CAPABILITY_AREA = "capabilities"


@dataclasses.dataclass(frozen=True)
class Result:
    """Outcome of :func:`analyze`.

    ``correlations`` has one row per analysed benchmark, ranked by capabilities
    correlation (highest first), with columns ``benchmark, name, area, role,
    direction, capabilities_correlation, ci_low, ci_high, n_models,
    compute_correlation``; correlations are Spearman x 100 (the paper's units).
    """

    correlations: pd.DataFrame
    scores: pd.DataFrame  # analysed columns, after the direction map (models x benchmarks)
    model_names: pd.Series
    score: pd.Series
    pc1: pd.Series
    explained_variance: float
    score_compute_correlation: float | None
    n_models: int
    dropped: dict[str, str]
    notes: list[str]
    n_boot: int
    level: float

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (explained variance as a fraction, correlations x 100)."""
        safety = self.correlations[self.correlations.role == "safety"]
        return {
            "explained_variance": self.explained_variance,
            "n_models": self.n_models,
            "n_benchmarks": int(len(safety)),
            "capabilities": list(self.pc1.index),
            "pc1_loadings": {k: float(v) for k, v in self.pc1.items()},
            "capabilities_score_compute_correlation": _pct(self.score_compute_correlation),
            "mean_abs_capabilities_correlation_by_area": {
                area: float(group.capabilities_correlation.abs().mean())
                for area, group in safety.dropna(subset=["capabilities_correlation"]).groupby("area")
            },
            "bootstrap": {"n_boot": self.n_boot, "level": self.level} if self.n_boot else None,
            "dropped_columns": self.dropped,
            "notes": self.notes,
        }


def _pct(x: float | None) -> float | None:
    return None if x is None or np.isnan(x) else 100.0 * x


def _choose_capabilities(
    columns: list[str], requested: Sequence[str] | None, dropped: Mapping[str, str], notes: list[str]
) -> list[str]:
    if requested is not None:
        unknown = [c for c in requested if c not in columns and c not in dropped]
        if unknown:
            raise UserError(f"capability benchmark(s) not in the table: {', '.join(unknown)}")
        wanted = list(requested)
    else:
        wanted = list(DEFAULT_CAPABILITIES)
        absent = [c for c in wanted if c not in columns and c not in dropped]
        if absent and len(absent) < len(wanted):
            notes.append(f"default capability benchmarks absent from the table, left out: {', '.join(absent)}")
    caps = [c for c in wanted if c in columns]
    left = [c for c in wanted if c in dropped]
    if left:
        notes.append(f"capability benchmarks left out ({'; '.join(f'{c}: {dropped[c]}' for c in left)})")
    if not caps:
        raise UserError(
            "the table has no usable capability columns (looked for: "
            f"{', '.join(wanted)}); name them with --capabilities a,b,..."
        )
    return caps


def analyze(
    table: ScoreTable,
    capabilities: Sequence[str] | None = None,
    directions: Mapping[str, int] | None = None,
    areas: Mapping[str, list[str]] | None = None,
    names: Mapping[str, str] | None = None,
    n_boot: int = 0,
    level: float = 0.95,
    seed: int = 0,
) -> Result:
    """Capabilities correlation of every benchmark of ``table``.

    Args:
      table: the scores (models x benchmarks) with optional FLOP and model names.
      capabilities: capability benchmark columns; default the reference 12.
      directions: {column or glob: +1/-1}; -1 columns are negated before analysis
        (default: every column as stored, the authors' convention).
      areas: {area: [globs]}; default the packaged ``areas.yaml``.
      names: display names {column: name} (e.g. from ``benchmarks_info.csv``).
      n_boot: bootstrap resamples over models for confidence intervals (0 = none).
      level: two-sided confidence level of the percentile intervals.
      seed: seed of the bootstrap resampling.
    """
    scores = table.scores
    n_models = len(scores)
    if n_models < MIN_MODELS:
        raise UserError(f"need at least {MIN_MODELS} models to correlate, the table has {n_models}")
    if not 0.0 < level < 1.0:
        raise UserError(f"confidence level must be between 0 and 1, got {level}")
    if n_boot < 0:
        raise UserError(f"number of bootstrap resamples must be >= 0, got {n_boot}")
    flipped = resolve_directions(directions or {}, list(scores.columns))
    scores = scores.assign(**{c: -scores[c] for c in flipped})

    dropped: dict[str, str] = {}
    notes: list[str] = []
    for col in scores.columns:
        present = int(scores[col].notna().sum())
        if present == 0:
            dropped[col] = "empty (no values)"
        elif scores[col].nunique() == 1:
            dropped[col] = "constant (std = 0)"
        elif present < MIN_MODELS:
            dropped[col] = f"values for only {present} model(s)"
    kept = [c for c in scores.columns if c not in dropped]
    caps = _choose_capabilities(kept, capabilities, dropped, notes)
    missing_caps = scores.index[scores[caps].isna().any(axis=1)]
    if len(missing_caps):
        notes.append(
            "models without a capabilities score (a capability value is missing): " + ", ".join(missing_caps)
        )
    if n_models - len(missing_caps) < MIN_MODELS:
        raise UserError(f"need at least {MIN_MODELS} models with every capability benchmark, have {n_models - len(missing_caps)}")

    # float64 so that ties in the CSV's decimal values stay ties, exactly as in scipy/pandas.
    with jax.enable_x64(True):
        cap_values = jnp.asarray(scores[caps].to_numpy(np.float64))
        targets = jnp.asarray(scores[kept].to_numpy(np.float64))
        out = stats.capabilities_analysis(cap_values, targets)
        counts = np.asarray(stats.pairwise_counts(targets, out.score))
        corr = np.asarray(out.correlations)
        lo = hi = np.full(len(kept), np.nan)
        if n_boot:
            samples = stats.bootstrap_correlations(jax.random.key(seed), cap_values, targets, n_boot=n_boot)
            lo, hi = (np.asarray(v) for v in stats.percentile_interval(samples, level))
        if table.flop is not None and table.flop.notna().sum() >= MIN_MODELS:
            flop = jnp.asarray(table.flop.reindex(scores.index).to_numpy(np.float64))
            compute = np.asarray(stats.spearman_with(targets, flop))
            score_compute = float(stats.spearman(out.score, flop))
        else:
            compute, score_compute = np.full(len(kept), np.nan), None
            notes.append("no training compute (FLOP) for at least 3 models: compute correlations not computed")
        score = np.asarray(out.score)
        pc1 = np.asarray(out.pc1)
        explained = float(out.explained_variance)

    too_few = counts < MIN_MODELS
    corr, lo, hi = (np.where(too_few, np.nan, v) for v in (corr, lo, hi))
    areas = load_areas() if areas is None else areas
    names = names or {}
    cap_set = set(caps)
    frame = pd.DataFrame(
        {
            "benchmark": kept,
            "name": [names.get(c, c) for c in kept],
            "area": [CAPABILITY_AREA if c in cap_set else area_of(c, areas) for c in kept],
            "role": ["capability" if c in cap_set else "safety" for c in kept],
            "direction": [-1 if c in flipped else 1 for c in kept],
            "capabilities_correlation": 100.0 * corr,
            "ci_low": 100.0 * lo,
            "ci_high": 100.0 * hi,
            "n_models": counts.astype(int),
            "compute_correlation": 100.0 * compute,
        }
    )
    frame = frame.sort_values("capabilities_correlation", ascending=False, na_position="last", kind="stable")
    return Result(
        correlations=frame.reset_index(drop=True),
        scores=scores[kept],
        model_names=table.names,
        score=pd.Series(score, index=scores.index, name="capabilities_score"),
        pc1=pd.Series(pc1, index=caps, name="pc1"),
        explained_variance=explained,
        score_compute_correlation=score_compute,
        n_models=n_models,
        dropped=dropped,
        notes=notes,
        n_boot=n_boot,
        level=level,
    )
