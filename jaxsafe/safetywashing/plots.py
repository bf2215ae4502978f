"""Plots of a safetywashing analysis: correlations by area, and one benchmark against capabilities."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402
import pandas as pd  # noqa: E402

from jaxsafe.io import atomic_save_figure  # noqa: E402
from jaxsafe.safetywashing.analysis import Result  # noqa: E402


def _area_order(safety: pd.DataFrame) -> list[str]:
    """Areas by mean capabilities correlation, highest first; "other" last."""
    means = safety.groupby("area").capabilities_correlation.mean().sort_values(ascending=False)
    return [a for a in means.index if a != "other"] + (["other"] if "other" in means.index else [])


def _colors(areas: list[str]) -> dict[str, tuple]:
    """Colors by sorted area name, so an area keeps its color across tables and plots; "other" is gray."""
    palette = [plt.get_cmap("tab10")(i) for i in (0, 1, 2, 3, 4, 5, 6, 8, 9)]
    colors = {a: palette[i % len(palette)] for i, a in enumerate(sorted(a for a in areas if a != "other"))}
    return colors | ({"other": plt.get_cmap("tab10")(7)} if "other" in areas else {})


def plot_correlations_by_area(result: Result, path: str | Path) -> Path:
    """Horizontal bars of every safety benchmark's capabilities correlation, grouped by area.

    Areas are ordered by their mean correlation and benchmarks ranked within each
    area; bootstrap intervals are drawn as whiskers when present.
    """
    safety = result.correlations[result.correlations.role == "safety"].dropna(subset=["capabilities_correlation"])
    areas = _area_order(safety)
    colors = _colors(areas)
    rows, ypos, headers, y = [], [], [], 0.0
    for area in areas:
        group = safety[safety.area == area].sort_values("capabilities_correlation", ascending=False)
        headers.append((y - 0.1, area, len(group)))
        y += 1.4  # room for the area's heading
        for _, row in group.iterrows():
            rows.append(row)
            ypos.append(y)
            y += 1.0
        y += 0.6
    frame = pd.DataFrame(rows)
    height = max(3.0, 0.16 * y + 1.2)
    fig, ax = plt.subplots(figsize=(8.5, height))
    values = frame.capabilities_correlation.to_numpy()
    ax.barh(ypos, values, color=[colors[a] for a in frame.area], height=0.8)
    if result.n_boot:
        err = np.vstack([values - frame.ci_low.to_numpy(), frame.ci_high.to_numpy() - values])
        ax.errorbar(values, ypos, xerr=np.nan_to_num(err), fmt="none", ecolor="0.35", elinewidth=0.6, capsize=0)
    ax.set_yticks(ypos)
    ax.set_yticklabels(frame.name, fontsize=6)
    ax.invert_yaxis()
    ax.set_ylim(y - 0.2, -0.6)
    for ytext, area, count in headers:
        ax.text(-103, ytext, f"{area} ({count})", fontsize=9, fontweight="bold", color=colors[area], va="top")
    ax.tick_params(axis="x", top=True, labeltop=True)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlim(-105, 105)
    ax.grid(axis="x", color="0.9")
    ax.set_axisbelow(True)
    ax.set_xlabel("capabilities correlation (Spearman x 100)")
    ci = f", {round(100 * result.level)}% bootstrap CI" if result.n_boot else ""
    ax.set_title(f"Capabilities correlation by area ({result.n_models} models{ci})")
    return atomic_save_figure(fig, Path(path))


def plot_area_summary(result: Result, path: str | Path) -> Path:
    """One row per area: a dot per benchmark and a bar at the area's mean correlation."""
    safety = result.correlations[result.correlations.role == "safety"].dropna(subset=["capabilities_correlation"])
    areas = _area_order(safety)
    colors = _colors(areas)
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(areas) + 1.2))
    for i, area in enumerate(areas):
        vals = safety[safety.area == area].capabilities_correlation.to_numpy()
        jitter = np.linspace(-0.18, 0.18, len(vals)) if len(vals) > 1 else np.zeros(1)
        ax.scatter(vals, i + jitter, s=14, color=colors[area], alpha=0.75, linewidths=0)
        ax.plot([vals.mean()] * 2, [i - 0.32, i + 0.32], color="black", linewidth=2)
    ax.set_yticks(range(len(areas)))
    ax.set_yticklabels([f"{a} ({(safety.area == a).sum()})" for a in areas], fontsize=9)
    ax.invert_yaxis()
    ax.axvline(0.0, color="0.4", linewidth=0.8, linestyle=":")
    ax.set_xlim(-105, 105)
    ax.grid(axis="x", color="0.9")
    ax.set_axisbelow(True)
    ax.set_xlabel("capabilities correlation (Spearman x 100); black bar = area mean")
    ax.set_title(f"Capabilities correlation of safety benchmarks by area ({result.n_models} models)")
    return atomic_save_figure(fig, Path(path))


def scatter_filename(benchmark: str) -> str:
    return "scatter_" + re.sub(r"[^A-Za-z0-9_.+-]+", "_", benchmark) + ".png"


# (dx, dy) in points and horizontal alignment, nearest spots first
_LABEL_SPOTS = tuple(
    ((dx, dy), align)
    for dy in (1, -8, 8, -15, 15, -22)
    for dx, align in ((4, "left"), (-4, "right"))
)


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(w, 0.0) * max(h, 0.0)


def _label_points(fig: plt.Figure, ax: plt.Axes, xs: np.ndarray, ys: np.ndarray, labels: list[str]) -> None:
    """Label each point at the nearby spot whose text box overlaps the labels placed so far least."""
    ax.set_xlim(ax.get_xlim())  # freeze the limits so display coordinates stay valid
    ax.set_ylim(ax.get_ylim())
    renderer = fig.canvas.get_renderer()
    # the markers are obstacles too: a 3-point square around each
    r = 3.0 * fig.dpi / 72.0
    placed = [Bbox.from_extents(px - r, py - r, px + r, py + r) for px, py in ax.transData.transform(np.c_[xs, ys])]
    for x, y, label in sorted(zip(xs, ys, labels), key=lambda t: (t[0], t[1])):
        best = None
        for offset, align in _LABEL_SPOTS:
            text = ax.annotate(label, (x, y), xytext=offset, textcoords="offset points", fontsize=6, color="0.3", ha=align)
            box = text.get_window_extent(renderer)
            cost = sum(_overlap(box, other) for other in placed)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, text, box)
            else:
                text.remove()
            if cost == 0.0:
                break
        placed.append(best[2])


def plot_scatter(result: Result, benchmark: str, path: str | Path) -> Path:
    """A benchmark's scores against the capabilities score, one labelled point per model."""
    row = result.correlations.set_index("benchmark").loc[benchmark]
    both = pd.DataFrame({"x": result.score, "y": result.scores[benchmark]}).dropna()
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    ax.scatter(both.x, both.y, s=22, color="tab:blue", zorder=3)
    _label_points(fig, ax, both.x.to_numpy(), both.y.to_numpy(), [str(result.model_names.get(m, m)) for m in both.index])
    ax.grid(color="0.92")
    ax.set_axisbelow(True)
    ax.set_xlabel("capabilities score (PC1 of capability benchmarks)")
    flipped = " (negated by direction map)" if row.direction == -1 else ""
    ax.set_ylabel(f"{row['name']}{flipped}")
    ci = f" [{row.ci_low:.1f}, {row.ci_high:.1f}]" if result.n_boot else ""
    ax.set_title(
        f"{row['name']}: capabilities correlation {row.capabilities_correlation:.1f}{ci} ({int(row.n_models)} models)",
        fontsize=10,
    )
    return atomic_save_figure(fig, Path(path))
