"""The evaluator across two processes on this machine (CPU collectives over loopback):
`jaxsafe eval mcq` and `jaxsafe eval ppl` with --shard give the same results and
predictions as one process with two devices, and only one process writes them."""

import json
import os
import socket
import subprocess
import sys

import pytest
from flax import nnx

from jaxsafe.lm.checkpoint import save_pretrained
from jaxsafe.lm.config import DecoderConfig
from jaxsafe.lm.model import Decoder
from jaxsafe.toyworld.tokenizer import train_tokenizer

TEXTS = [f"the pathogen strain {i} spreads by route {i % 5} and infects cells of type {i % 7}" for i in range(24)]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mpeval")
    tokenizer = train_tokenizer(TEXTS, vocab_size=200)
    cfg = DecoderConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                        num_kv_heads=2, head_dim=8, max_position_embeddings=64, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    save_pretrained(Decoder(cfg, rngs=nnx.Rngs(3)), folder / "model", tokenizer=tokenizer)
    questions = [{"question": f"Which route does strain {i} use?", "choices": ["1", "2", "3", "4"], "answer": i % 4}
                 for i in range(10)]  # 10 questions, batch 4: the last batch is padded
    (folder / "mcq.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    (folder / "texts.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    return folder


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(folder, args, processes):
    if processes == 1:
        cmds = [(2, args)]
    else:
        flags = ["--coordinator", f"127.0.0.1:{_port()}", "--num-processes", "2"]
        cmds = [(1, flags + ["--process-id", str(i)] + args) for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-m", "jaxsafe.cli", *a], cwd=folder, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={d}"})
             for d, a in cmds]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return [out for out, _ in outs]


def test_mcq_and_ppl_two_processes_equal_one(inputs):
    folder = inputs
    for tag, procs in (("one", 1), ("two", 2)):
        _run(folder, ["eval", "mcq", "--model", "model", "--data", "mcq.jsonl", "--shard", "--batch-size", "4",
                      "--out", f"{tag}.json", "--predictions", f"{tag}.jsonl"], procs)
        outs = _run(folder, ["eval", "ppl", "--model", "model", "--data", "texts.jsonl", "--shard", "--batch-size", "4",
                             "--out", f"{tag}_ppl.json"], procs)
        if procs == 2:  # the primary reports, the other process stays silent
            assert "perplexity" in outs[0] and "perplexity" not in outs[1]
    one, two = (json.loads((folder / f"{t}.json").read_text()) for t in ("one", "two"))
    assert one == two and one["n"] == 10
    assert (folder / "one.jsonl").read_text() == (folder / "two.jsonl").read_text()
    assert len((folder / "two.jsonl").read_text().splitlines()) == 10
    p1, p2 = (json.loads((folder / f"{t}_ppl.json").read_text()) for t in ("one", "two"))
    assert p1 == p2 and p1["documents"] == len(TEXTS)
    assert not list(folder.glob(".*.partial*"))  # the sidecar is gone after a finished evaluation
