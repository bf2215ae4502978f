"""A run killed with SIGKILL mid-write leaves the previous output as it was, and ``--resume`` finishes it.

Covers ``toyworld build``, ``unlearn rmu`` (both built aside, :class:`jaxsafe.io.StagedDir`)
and ``eval mcq --out`` (one file, written atomically). Everything is tiny: each
command runs for seconds.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from climatrix import TINY_WORLD, cli_env, run_cli, snapshot

QUESTIONS = [{"question": f"Which route does strain {i} use?", "choices": ["one", "two", "three", "four"],
              "answer": i % 4} for i in range(400)]
FORGET = [f"the pathogen strain {i} spreads by route {i % 5} and infects cells of type {i % 7}" for i in range(40)]
RETAIN = [f"the river {i} flows through the valley of {i % 9} towards the sea number {i % 4}" for i in range(40)]


def start(args, cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jaxsafe.cli", *map(str, args)], cwd=cwd, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_when(proc: subprocess.Popen, ready, timeout=240.0) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; fail if it ends first."""
    t0 = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended (rc {proc.returncode}) before it could be killed: {err[-1500:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail("the command did not reach the point to kill it at")
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def has_checkpoint(folder: Path):
    return lambda: folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir())  # orbax renames tmp -> <k>


def previous_output(folder: Path) -> dict:
    folder.mkdir()
    (folder / "config.yaml").write_text("seed: 123\n")
    (folder / "results.json").write_text('{"previous": true}\n')
    (folder / "base").mkdir()
    (folder / "base" / "model.safetensors").write_bytes(b"previous weights")
    return snapshot(folder)


def test_toyworld_build_killed_then_resumed(tmp_path):
    before = previous_output(tmp_path / "tw")
    args = ["toyworld", "build", "--out", "tw", "--config", TINY_WORLD, "--seed", "5", "--overwrite",
            "train.steps=60", "train.checkpoint_every=2"]
    proc = start(args, tmp_path)
    kill_when(proc, has_checkpoint(tmp_path / ".tw.partial" / "runs" / "base" / "checkpoints"))
    assert snapshot(tmp_path / "tw") == before
    # without --resume the interrupted build is not silently thrown away
    r = run_cli(args[:-3] + args[-2:], tmp_path)
    assert r.returncode == 2 and "--resume" in r.stderr and len(r.stderr.splitlines()) == 1
    r = run_cli(args + ["--resume"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not (tmp_path / ".tw.partial").exists() and not (tmp_path / ".tw.old").exists()
    results = json.loads((tmp_path / "tw" / "results.json").read_text())
    assert results["seed"] == 5 and set(results["models"]) == {"base", "control"}
    steps = [json.loads(line)["step"] for line in (tmp_path / "tw/runs/base/metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(60))  # resumed from its checkpoint: every step once


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    """A 4-layer random Llama with a tokenizer, as a Hugging Face folder."""
    from flax import nnx

    from jaxsafe.lm.checkpoint import save_pretrained
    from jaxsafe.lm.config import DecoderConfig
    from jaxsafe.lm.model import Decoder
    from jaxsafe.toyworld.tokenizer import train_tokenizer

    tok = train_tokenizer(FORGET + RETAIN + [q["question"] + " " + " ".join(q["choices"]) for q in QUESTIONS[:8]], 400)
    cfg = DecoderConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_layers=4, num_heads=4,
                        num_kv_heads=2, head_dim=8, max_position_embeddings=64, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    path = tmp_path_factory.mktemp("lm") / "tiny"
    save_pretrained(Decoder(cfg, rngs=nnx.Rngs(0)), path, tokenizer=tok)
    return path


def test_unlearn_rmu_killed_then_resumed(tmp_path, tiny_lm):
    for name, texts in (("forget", FORGET), ("retain", RETAIN)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    (tmp_path / "hazard.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS[:8]))
    (tmp_path / "rmu.yaml").write_text(
        f"model: {tiny_lm}\n"
        f"forget:\n  - {{name: hazard, data: {tmp_path / 'forget.jsonl'}, max_length: 24}}\n"
        f"retain: {{name: retain, data: {tmp_path / 'retain.jsonl'}, max_length: 24}}\n"
        f"evals:\n  - {{name: hazard, data: {tmp_path / 'hazard.jsonl'}, subject: pathogens}}\n"
        "layer: 2\nsteps: 200\nbatch_size: 2\ncheckpoint_every: 2\nsteering_coef: 5.0\nalpha: 10.0\n"
        "optimizer: {lr: 1.0e-3}\n")
    before = previous_output(tmp_path / "run")
    args = ["unlearn", "rmu", "--config", "rmu.yaml", "--out", "run", "--overwrite"]
    proc = start(args, tmp_path)
    kill_when(proc, has_checkpoint(tmp_path / ".run.partial" / "checkpoints"))
    assert snapshot(tmp_path / "run") == before
    r = run_cli(args + ["--resume"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["after"]) == {"hazard"} and (tmp_path / "run" / "model" / "model.safetensors").exists()
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(200))
    assert not (tmp_path / ".run.partial").exists()


def test_eval_mcq_out_killed_then_resumed(tmp_path, tiny_lm):
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    (tmp_path / "results.json").write_text('{"previous": true}\n')
    sidecar = tmp_path / ".results.json.partial.jsonl"
    args = ["eval", "mcq", "--model", tiny_lm, "--data", "q.jsonl", "--batch-size", "1", "--out", "results.json",
            "--predictions", "pred.jsonl"]
    proc = start(args, tmp_path)
    kill_when(proc, lambda: sidecar.exists() and len(sidecar.read_text().splitlines()) > 1)  # a chunk is scored
    assert (tmp_path / "results.json").read_text() == '{"previous": true}\n'
    assert not (tmp_path / "pred.jsonl").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    scored = [json.loads(line) for line in sidecar.read_text().splitlines()[1:] if line.endswith("}")]
    r = run_cli(args + ["--resume"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "results.json").read_text())["n"] == len(QUESTIONS)
    predictions = [json.loads(line) for line in (tmp_path / "pred.jsonl").read_text().splitlines()]
    assert [p["index"] for p in predictions] == list(range(len(QUESTIONS)))
    assert predictions[:len(scored)] == scored  # kept from the interrupted run, not scored again
    assert not sidecar.exists()


def test_lm_info_accepts_a_file_of_the_checkpoint(tmp_path, tiny_lm):
    r = run_cli(["lm", "info", tiny_lm / "config.json"], tmp_path)  # the folder itself: tests/lm
    assert r.returncode == 0, r.stderr[-1500:]
    assert "llama" in r.stdout.lower()
