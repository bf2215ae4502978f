import numpy as np
import pytest

from jaxsafe.errors import UserError
from jaxsafe.graphs.generators import grid2d
from jaxsafe.graphs.plot import plot_partitions


def test_plot_partitions_writes_a_png_and_checks_points(tmp_path):
    adj, points = grid2d(6, 4)
    parts = (points[:, 0] >= 3).astype(int)
    out = plot_partitions(adj, points, {"left/right": parts, "all one": np.zeros(24, int)}, tmp_path / "p.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 2000
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]  # no temporary file left behind
    with pytest.raises(UserError, match="points must have shape"):
        plot_partitions(adj, points[:, :1], {"x": parts}, tmp_path / "q.png")
