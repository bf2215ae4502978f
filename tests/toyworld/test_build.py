import json
from pathlib import Path

import numpy as np
import pytest

from jaxsafe.cli import main
from jaxsafe.data.multiple_choice import load_questions
from jaxsafe.data.text import load_texts
from jaxsafe.lm.checkpoint import from_pretrained, load_tokenizer
from jaxsafe.toyworld.build import MCQ_SETS

TINY = Path(__file__).resolve().parents[2] / "configs" / "toyworld" / "tiny.yaml"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    assert main(["toyworld", "build", "--out", str(out), "--config", str(TINY), "--seed", "3"]) == 0
    return out


def test_layout_and_results(built):
    for name in ("forget", "retain", "attack_A", "eval_E"):
        assert load_texts(built / "corpora" / f"{name}.jsonl")
    for name in MCQ_SETS:
        assert load_questions(built / "mcq" / f"{name}.jsonl")
    res = json.loads((built / "results.json").read_text())
    assert res["seed"] == 3 and set(res["models"]) == {"base", "control"}
    for model in res["models"].values():
        assert set(model) == set(MCQ_SETS)
        for block in model.values():
            assert 0 <= block["acc"] <= 1 and block["acc_stderr"] > 0 and 0 <= block["cloze_acc"] <= 1
    assert res["models"]["base"]["hazard"]["n"] == 8 * 4
    # the control model trained on fewer documents for the same number of steps
    assert res["training"]["control"]["tokens"] < res["training"]["base"]["tokens"]


def test_models_are_hf_directories_with_tokenizer(built):
    import torch
    import transformers

    tok = load_tokenizer(built / "base")
    assert tok.encode("x")[0] == tok.bos_token_id and tok.pad_token_id is not None
    ours = from_pretrained(built / "base")
    ref = transformers.AutoModelForCausalLM.from_pretrained(built / "base", dtype=torch.float32)
    ids = tok.encode(" Which animal is the natural host?")
    with torch.no_grad():
        want = ref(torch.tensor([ids])).logits.numpy()
    np.testing.assert_allclose(np.asarray(ours(np.asarray([ids]))), want, atol=1e-4)


def test_build_is_deterministic_and_resumes(built, tmp_path, capsys):
    again = tmp_path / "again"
    assert main(["toyworld", "build", "--out", str(again), "--config", str(TINY), "--seed", "3"]) == 0
    for rel in ["mcq/hazard.jsonl", "corpora/forget.jsonl", "base/model.safetensors", "control/model.safetensors", "tokenizer/tokenizer.json"]:
        assert (again / rel).read_bytes() == (built / rel).read_bytes(), rel
    capsys.readouterr()
    # a finished build refuses to overwrite its runs without --resume; with it, nothing is retrained
    assert main(["toyworld", "build", "--out", str(again), "--config", str(TINY), "--seed", "3"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["toyworld", "build", "--out", str(again), "--config", str(TINY), "--seed", "3", "--resume"]) == 0
    assert (again / "base/model.safetensors").read_bytes() == (built / "base/model.safetensors").read_bytes()
    assert json.loads((again / "results.json").read_text())["models"] == json.loads((built / "results.json").read_text())["models"]


def test_two_process_build_equals_one_process(tmp_path):
    """`jaxsafe --coordinator ... toyworld build` in two CPU processes (gloo over loopback):
    every process builds, the primary writes, and the files equal those of a one-process
    build run alongside (each process with one CPU device, so the numerics are the same)."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    build = ["toyworld", "build", "--config", str(TINY), "--seed", "3", "--out"]
    commands = [build + [str(tmp_path / "one")]] + [
        ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)] + build + [str(tmp_path / "two")]
        for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-m", "jaxsafe.cli", *c], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for c in commands]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    one, two = tmp_path / "one", tmp_path / "two"
    for rel in ["mcq/hazard.jsonl", "corpora/forget.jsonl", "base/model.safetensors", "control/model.safetensors",
                "tokenizer/tokenizer.json"]:
        assert (two / rel).read_bytes() == (one / rel).read_bytes(), rel
    res, want = (json.loads((d / "results.json").read_text()) for d in (two, one))
    assert res["models"] == want["models"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # no work folder left behind
