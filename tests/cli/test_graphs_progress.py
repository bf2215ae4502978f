"""``graphs train`` reports progress from its runs' metrics while it trains."""

import json
import time

from jaxsafe.graphs.cli import _Progress


def test_progress_prints_the_newest_metrics_row(tmp_path, capsys):
    (tmp_path / "embedding").mkdir()
    metrics = tmp_path / "embedding" / "metrics.jsonl"
    with _Progress(tmp_path, every=0.05):
        metrics.write_text(json.dumps({"step": 0, "loss": 2.5}) + "\n")
        time.sleep(0.3)
        metrics.write_text(json.dumps({"step": 0, "loss": 2.5}) + "\n" + json.dumps({"step": 1, "loss": 1.25}) + "\n")
        time.sleep(0.3)
    err = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in err] == ["embedding: step 0, loss 2.5", "embedding: step 1, loss 1.25"]
