"""The bad-input matrix's workspace (helpers in climatrix.py: a unique module name, since
several test folders have a conftest.py)."""

import json
from pathlib import Path

import pytest
from climatrix import TINY_WORLD


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A workspace of inputs (good and bad) and previous outputs."""
    from jaxsafe.config import dump_config, load_config
    from jaxsafe.toyworld.config import BuildConfig

    w = tmp_path_factory.mktemp("ws")
    # previous outputs that must survive every bad command
    (w / "out.json").write_text('{"previous": true}\n')
    (w / "outdir").mkdir()
    (w / "outdir" / "keep.txt").write_text("previous\n")
    # graphs
    (w / "k4.edges").write_text("0 1\n0 2\n0 3\n1 2\n1 3\n2 3\n")
    (w / "bad.edges").write_text("0 1\n1 x\n")
    (w / "empty.edges").write_text("")
    # questions and texts
    q = {"question": "Which one?", "choices": ["a", "b", "c", "d"], "answer": 1}
    (w / "q.jsonl").write_text(json.dumps(q) + "\n")
    (w / "empty.jsonl").write_text("")
    (w / "bad.jsonl").write_text(json.dumps(q) + "\n" + '{"question": "x", choices: []}\n')
    (w / "noanswer.jsonl").write_text(json.dumps({"question": "q", "choices": ["a", "b"]}) + "\n")
    (w / "bad.csv").write_text("question,choices,answer\nq,\"[1,2]\",0\nq,x,1,extra\n")
    (w / "texts.jsonl").write_text(json.dumps({"text": "some text"}) + "\n")
    # configs
    (w / "bad.yaml").write_text("steps: [1\n")
    (w / "list.yaml").write_text("- a\n- b\n")
    # model folders: one without a tokenizer, one that passes the file checks
    (w / "model_notok").mkdir()
    (w / "model_notok" / "config.json").write_text(json.dumps({"num_hidden_layers": 1}))
    (w / "model_ok").mkdir()
    (w / "model_ok" / "config.json").write_text(json.dumps({"num_hidden_layers": 1}))
    (w / "model_ok" / "tokenizer.json").write_text("{}")
    # a toy world's files (RMU resolves them; the 1-layer base model's config.json only)
    world = w / "world"
    for rel in ("corpora/forget.jsonl", "corpora/retain.jsonl", "mcq/hazard.jsonl", "mcq/benign.jsonl"):
        (world / rel).parent.mkdir(parents=True, exist_ok=True)
        (world / rel).write_text(json.dumps({"text": "t"}) + "\n")
    (world / "base").mkdir()
    (world / "base" / "config.json").write_text(json.dumps({"num_hidden_layers": 1}))
    # a finished toy world (seed 0 of the tiny config) and an interrupted one
    tw = w / "tw"
    tw.mkdir()
    (tw / "config.yaml").write_text(dump_config(load_config(BuildConfig, TINY_WORLD)))
    (tw / "results.json").write_text("{}\n")
    (w / ".tw2.partial").mkdir()
    (w / ".tw2.partial" / "config.yaml").write_text(dump_config(load_config(BuildConfig, TINY_WORLD)))
    # a finished run folder (any config)
    (w / "run").mkdir()
    (w / "run" / "config.yaml").write_text("seed: 123\n")
    (w / "run" / "results.json").write_text("{}\n")
    return w
