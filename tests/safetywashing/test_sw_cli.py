"""`jaxsafe safetywashing` end to end on the authors' base table, its errors, and the demo step."""

import json

import numpy as np
import pandas as pd
import pytest

from jaxsafe.cli import main
from jaxsafe.safetywashing.cli import demo


def test_cli_on_base_models_writes_tables_and_plots(shared_dir, tmp_path, capsys):
    data = shared_dir / "data" / "safetywashing"
    extra = tmp_path / "mine.csv"
    # a new benchmark = an affine copy of wmdp_bio, plus a new model with a few scores
    base = pd.read_csv(data / "benchmarks_base_models.csv", index_col=0)
    new = pd.DataFrame({"my_benchmark": 1 - base["wmdp_bio"]})
    new.loc["my-new-model", ["mmlu", "my_benchmark"]] = [0.5, 0.2]
    new.to_csv(extra, index_label="model")
    dirs = tmp_path / "dirs.yaml"
    dirs.write_text("my_benchmark: -1\n")
    out = tmp_path / "out"
    code = main([
        "safetywashing", "--scores", str(data / "benchmarks_base_models.csv"), "--info", str(data / "benchmarks_info.csv"),
        "--add", str(extra), "--directions", str(dirs), "--bootstrap", "100", "--out", str(out),
        "--scatter", "my_benchmark", "--show", "5",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "PC1 explains" in printed and "*my_benchmark" in printed
    # the new model lacks most capability scores: it is noted and gets no capabilities score
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_models"] == 28
    assert any("my-new-model" in n for n in summary["notes"])
    # ... and is left out of PC1, so the authors' explained variance is unchanged
    assert summary["explained_variance"] == pytest.approx(0.7825708728805778, abs=1e-12)
    rows = pd.read_csv(out / "correlations.csv").set_index("benchmark")
    assert rows.loc["wmdp_bio", "capabilities_correlation"] == pytest.approx(-92.5, abs=0.05)
    # 1 - wmdp_bio, negated by the direction map, ranks models exactly like wmdp_bio
    assert rows.loc["my_benchmark", "capabilities_correlation"] == pytest.approx(rows.loc["wmdp_bio", "capabilities_correlation"], abs=1e-3)
    assert rows.loc["my_benchmark", "direction"] == -1
    assert (rows.ci_low <= rows.capabilities_correlation + 1e-9).all() and (rows.capabilities_correlation <= rows.ci_high + 1e-9).all()
    records = json.loads((out / "correlations.json").read_text(encoding="utf-8"))
    assert {r["benchmark"] for r in records} == set(rows.index)
    assert {"capabilities_correlation", "n_models", "ci_low", "ci_high"} <= set(records[0])
    for png in ("correlations_by_area.png", "area_summary.png", "scatter_my_benchmark.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "csv, args, message",
    [
        ("model,mmlu,piqa\na,1,2\nb,x,3\nc,2,2\n", [], "column 'mmlu'"),
        ("model,mmlu,piqa\na,1,2\nb,2,3\n", [], "at least 3 models"),
        ("model,foo,bar\na,1,2\nb,2,3\nc,3,1\n", [], "no usable capability columns"),
        ("model,mmlu,piqa\na,1,2\nb,2,3\nc,3,1\n", ["--scatter", "nope"], "'nope' is not an analysed"),
    ],
)
def test_cli_user_errors_are_one_line(tmp_path, capsys, csv, args, message):
    path = tmp_path / "s.csv"
    path.write_text(csv)
    code = main(["safetywashing", "--scores", str(path), "--bootstrap", "0", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_demo_runs_on_synthetic_data(tmp_path, capsys):
    demo(tmp_path)
    printed = capsys.readouterr().out
    assert "SYNTHETIC" in printed and "jaxsafe safetywashing --scores" in printed
    rows = pd.read_csv(tmp_path / "correlations.csv").set_index("benchmark").capabilities_correlation
    # the generated couplings are recovered in order
    order = ["synthetic_safety_rho0.9", "synthetic_safety_rho0.5", "synthetic_safety_rho0.0", "synthetic_safety_rho-0.6"]
    assert np.all(np.diff(rows[order].to_numpy()) < 0)
    assert (tmp_path / "scatter_synthetic_safety_rho0.5.png").is_file()
