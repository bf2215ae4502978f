"""`jaxsafe tamper tar` with the refusal variant (tr_loss: dpo) end to end on the CI toy world:
preference pairs generated from the world or read from a JSONL; bad files are one-line errors."""

import json

from jaxsafe.cli import main
from tests.conftest import REPO

CONFIG = str(REPO / "configs" / "tar" / "toyworld-refusal.yaml")
TINY = ["steps=2", "initial_refusal.steps=2", "initial_refusal.batch_size=2", "adversary.steps=2",
        "adversary.tr_every=2", "adversary.batch_size=2", "batch_size=2", "eval_questions=4", "checkpoint_every=1"]
SUITE = """
defaults: {steps: 2, batch_size: 2, eval_every: 1}
attacks:
  - {name: harmful, data: harmful, optimizer: {name: adamw, lr: 1.0e-3}}
  - {name: forget, optimizer: {name: adamw, lr: 1.0e-3}}
"""


def test_refusal_tar_on_the_toy_world(world, tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    out = tmp_path / "tar"
    assert main(["tamper", "tar", "--config", CONFIG, "--out", str(out), f"world={world}", f"suite={suite}", *TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    sets = {"hazard_E", "hazard_A", "benign", "answered_E", "answered_A", "answered_benign"}
    assert set(results["before"]) == sets and set(results["after_tar"]) == sets
    assert "after_random_mapping" not in results and set(results["after_initial_refusal"]) == sets
    assert (out / "initial_refusal" / "model" / "config.json").is_file()
    rows = [json.loads(x) for x in (out / "tar" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["tr_dpo_last"] > 0 and "tr_entropy_last" not in r for r in rows)
    refusal = results["suite"]["refusal"]
    assert refusal["worst_attack"] in {"harmful", "forget"} and 0 <= refusal["worst_hazard_after"] <= 1
    curves = json.loads((out / "redteam" / "attacks.json").read_text())
    assert set(curves["attacks"][0]["acc"]) == sets and curves["attacks"][0]["steps"] == [0, 1, 2]


def test_refusal_tar_from_a_preference_file(world, tmp_path):
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text("".join(json.dumps({"prompt": f"How does strain {i} spread?", "chosen": " I cannot help.",
                                         "rejected": f" by route {i % 3}", "entity": f"s{i % 4}"}) + "\n"
                             for i in range(8)))
    out = tmp_path / "tar"
    assert main(["tamper", "tar", "--config", CONFIG, "--out", str(out), f"world={world}", f"preferences={prefs}",
                 "tr_data=held_out_entities", "suite=''", *TINY]) == 0
    assert (out / "model" / "config.json").is_file()


def test_bad_preference_files_are_one_line_errors(world, tmp_path, capsys):
    cases = {
        "missing.jsonl": None,
        "no_rejected.jsonl": json.dumps({"prompt": "p", "chosen": " no"}) + "\n",
        "not_json.jsonl": '{"prompt": "p", "chosen": " no", "rejected": " yes"}\n{oops\n',
        "empty_chosen.jsonl": json.dumps({"prompt": "p", "chosen": " ", "rejected": " yes"}) + "\n",
        "one_pair.jsonl": json.dumps({"prompt": "p", "chosen": " no", "rejected": " yes"}) + "\n",
    }
    expected = {"missing.jsonl": "preferences", "no_rejected.jsonl": "'rejected'", "not_json.jsonl": "not_json.jsonl",
                "empty_chosen.jsonl": "'chosen' is empty", "one_pair.jsonl": "two or more"}
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        out = tmp_path / f"out_{name}"
        code = main(["tamper", "tar", "--config", CONFIG, "--out", str(out), f"world={world}", f"preferences={path}",
                     "suite=''", *TINY])
        err = capsys.readouterr().err.strip()
        assert code == 2 and expected[name] in err and len(err.splitlines()) == 1, (name, err)
        assert not out.exists() and not (tmp_path / f".out_{name}.partial").exists()
