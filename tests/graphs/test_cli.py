"""`jaxsafe partition` prints one JSON object; bad input is one line and exit status 2."""

import json

import numpy as np

from jaxsafe.cli import main
from jaxsafe.graphs.generators import delaunay
from jaxsafe.graphs.io import write_metis


def test_partition_cli_metis_and_spectral(tmp_path, capsys):
    adj, _ = delaunay(300, seed=0)
    write_metis(tmp_path / "g.graph", adj)
    for method, k in (("metis", 2), ("spectral", 3)):
        out = tmp_path / f"{method}.txt"
        assert main(["partition", str(tmp_path / "g.graph"), "--parts", str(k), "--method", method, "--out", str(out)]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["n"] == 300 and result["parts"] == k
        assert {"cut", "normalized_cut", "balance", "seconds"} <= set(result)
        parts = np.loadtxt(out, dtype=int)
        assert parts.shape == (300,) and set(parts) == set(range(k))


def test_partition_cli_bad_file(tmp_path, capsys):
    (tmp_path / "g.mtx").write_text("%%MatrixMarket matrix coordinate real general\n2 3 0\n")
    assert main(["partition", str(tmp_path / "g.mtx"), "--method", "metis"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "g.mtx:2:" in err and "not square" in err
