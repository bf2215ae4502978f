"""The commands end to end on the CI toy world: jaxsafe tamper tar, jaxsafe attack, jaxsafe attack search."""

import json

from jaxsafe.cli import main
from tests.conftest import REPO

SUITE = """
epsilon: 10.0
defaults: {steps: 4, batch_size: 2, eval_every: 2}
attacks:
  - {name: adamw, optimizer: {name: adamw, lr: 1.0e-3}}
  - {name: adamw-retain-then-forget, data: retain_then_forget, optimizer: {name: adamw, lr: 3.0e-3}}
  - {name: ablation, kind: ablation, ablation_layer: 0, ablation_texts: 4}
"""


def test_tar_then_attack_then_search(world, tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    out = tmp_path / "tar"
    assert main(["tamper", "tar", "--config", str(REPO / "configs" / "tar" / "toyworld.yaml"), "--out", str(out),
                 f"world={world}", "steps=2", "random_mapping.steps=2", "adversary.steps=4", "adversary.tr_every=2",
                 "adversary.num=2", "adversary.lora_num=1", "adversary.lora.rank=2", "tr_data=held_out_entities",
                 "batch_size=2", f"suite={suite}", "eval_questions=8", "checkpoint_every=1"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) >= {"before", "after_random_mapping", "after_tar", "suite", "seconds"}
    assert set(results["after_tar"]) == {"hazard_E", "hazard_A", "benign"}
    assert (out / "model" / "config.json").is_file() and (out / "redteam" / "curves.png").is_file()
    assert len((out / "tar" / "metrics.jsonl").read_text().splitlines()) == 2
    # built aside and renamed into place: no work folder left, no path into it recorded
    assert not (tmp_path / ".tar.partial").exists() and (out / "config.yaml").is_file()
    text = (out / "results.json").read_text()
    assert ".partial" not in text and str(out) not in text
    # a finished run with the same config: nothing to do
    assert main(["tamper", "tar", "--config", str(REPO / "configs" / "tar" / "toyworld.yaml"), "--out", str(out),
                 "--resume", f"world={world}", "steps=2", "random_mapping.steps=2", "adversary.steps=4",
                 "adversary.tr_every=2", "adversary.num=2", "adversary.lora_num=1", "adversary.lora.rank=2",
                 "tr_data=held_out_entities", "batch_size=2", f"suite={suite}", "eval_questions=8",
                 "checkpoint_every=1"]) == 0
    assert "already complete" in capsys.readouterr().out
    assert (out / "results.json").read_text() == text

    attacks_out = tmp_path / "attacks"
    assert main(["attack", "--model", str(world / "base"), "--suite", str(suite), "--out", str(attacks_out),
                 "--questions", "8", "steps=2", "eval_every=1"]) == 0
    curves = json.loads((attacks_out / "attacks.json").read_text())
    assert [a["name"] for a in curves["attacks"]] == ["adamw", "adamw-retain-then-forget", "ablation"]
    assert curves["attacks"][0]["steps"] == [0, 1, 2]
    summary = json.loads((attacks_out / "summary.json").read_text())
    assert summary["worst_attack"] in {"adamw", "adamw-retain-then-forget", "ablation"}

    search_out = tmp_path / "search"
    assert main(["attack", "search", "--model", str(world / "base"), "--budget", "2", "--lanes", "2",
                 "--questions", "8", "--steps", "2", "--out", str(search_out)]) == 0
    found = json.loads((search_out / "search.json").read_text())
    assert found["summary"]["budget"] == 2 and len(found["attacks"]) == 2


def test_attack_errors_are_one_line(world, tmp_path, capsys):
    assert main(["attack", "--model", str(world / "base")]) == 2
    assert "--suite" in capsys.readouterr().err
    assert main(["attack", "--model", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("attacks:\n  - {name: x, optimizer: {name: rmsprop}}\n")
    assert main(["attack", "--model", str(world / "base"), "--suite", str(bad)]) == 2
    assert "rmsprop" in capsys.readouterr().err
