"""Parity with lm-evaluation-harness itself: its hf backend, run for real on the same checkpoint."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "lm_eval_agreement.py"


@pytest.fixture(scope="module")
def bench():
    pytest.importorskip("lm_eval")
    spec = importlib.util.spec_from_file_location("lm_eval_agreement", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_per_question_logliks_and_predictions_match_lm_eval(bench, model_dir, mcq_rows, tmp_path):
    rows = [r for r in mcq_rows if r["subject"] == "virology"][:6]
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    theirs = bench.run_harness(model_dir, data, "virology", batch_size=4)
    ours = bench.run_ours(model_dir, data, batch_size=4)
    report = bench.compare(ours, theirs, tol=1e-4)
    for fmt in ("letter", "cloze"):
        assert report[fmt]["n"] == 6
        assert report[fmt]["max_abs_loglik_diff"] < 1e-4
        assert report[fmt]["same_prediction_on_clear"] == report[fmt]["clear_questions"]
        assert report[fmt]["acc_ours"] == pytest.approx(report[fmt]["acc_lm_eval"])
        assert report[fmt]["acc_stderr_ours"] == pytest.approx(report[fmt]["acc_stderr_lm_eval"])
    # the harness built the same prompt we document
    assert theirs["letter"]["context_example"].startswith("The following are multiple choice questions (with answers) about virology.\n\n")
