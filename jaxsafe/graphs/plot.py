"""Pictures of partitions of graphs with vertex coordinates (generated meshes): the demo and docs.

Each panel draws the graph's edges thinly, uncut edges in the colour of their
part, cut edges in black, so where a method cuts — and how straight its cut is —
shows at a glance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from jaxsafe.errors import UserError
from jaxsafe.io import atomic_save_figure


def plot_partitions(adj: sp.csr_matrix, points: np.ndarray, partitions: dict[str, np.ndarray], path: str | Path,
                    titles: dict[str, str] | None = None) -> Path:
    """One panel per named partition of the same 2-D graph, side by side; written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    points = np.asarray(points)
    if points.ndim != 2 or points.shape != (adj.shape[0], 2):
        raise UserError(f"points must have shape ({adj.shape[0]}, 2), got {points.shape}")
    upper = sp.triu(adj, k=1).tocoo()
    segments = np.stack([points[upper.row], points[upper.col]], axis=1)
    palette = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, len(partitions), figsize=(4.2 * len(partitions), 4.2), squeeze=False)
    for ax, (name, parts) in zip(axes[0], partitions.items()):
        parts = np.asarray(parts)
        cut = parts[upper.row] != parts[upper.col]
        colors = np.where(cut[:, None], np.array([[0.0, 0.0, 0.0, 1.0]]), palette(parts[upper.row] % 10))
        widths = np.where(cut, 1.6, 0.4)
        ax.add_collection(LineCollection(segments, colors=colors, linewidths=widths))
        ax.autoscale()
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title((titles or {}).get(name, name), fontsize=9)
    fig.tight_layout()
    return atomic_save_figure(fig, path, dpi=100)
