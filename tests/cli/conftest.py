"""The bad-input matrix: shared workspace and the contract every bad input must meet.

Each case runs the real command line in a subprocess (as a user would) inside a
workspace of good and bad files and of previous outputs, and checks:
exit status 2, exactly one line on stderr naming the offending argument or file,
no traceback, and every file of the workspace byte-identical afterwards (nothing
written, nothing removed).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY_WORLD = REPO / "configs" / "toyworld" / "tiny.yaml"


def cli_env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one CPU device: the commands' own default
    return env


def run_cli(args, cwd, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jaxsafe.cli", *map(str, args)], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def snapshot(root: Path) -> dict:
    """Every file (bytes) and folder under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = p.read_bytes() if p.is_file() else "<dir>"
    return out


def assert_bad(ws: Path, args, *names) -> str:
    """Run ``jaxsafe args`` in ``ws``; check the bad-input contract; return the error line."""
    before = snapshot(ws)
    r = run_cli(args, ws)
    lines = r.stderr.splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert len(lines) == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    after = snapshot(ws)
    assert after.keys() == before.keys(), sorted(set(after) ^ set(before))
    changed = [k for k in before if before[k] != after[k]]
    assert not changed, changed
    return lines[0]


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
