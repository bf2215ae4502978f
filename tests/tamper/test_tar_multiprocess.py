"""`jaxsafe tamper tar` and `jaxsafe attack` across two processes on this machine (CPU
collectives over loopback): every process repeats the computation, the primary writes, and
the results equal one process's."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import safetensors.numpy as stn

from tests.conftest import REPO

SUITE = """
defaults: {steps: 2, batch_size: 2, eval_every: 1}
attacks:
  - {name: adamw, optimizer: {name: adamw, lr: 1.0e-3}}
"""
TAR = ["steps=2", "random_mapping.steps=1", "adversary.steps=2", "adversary.tr_every=2", "adversary.batch_size=2",
       "batch_size=2", "eval_questions=4", "checkpoint_every=1"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args, processes):
    port = _port()
    cmds = [args] if processes == 1 else [
        ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)] + args for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-m", "jaxsafe.cli", *a], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"})
             for a in cmds]
    outs = [p.communicate(timeout=400) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]


def _without_seconds(d):
    return {k: _without_seconds(v) for k, v in d.items() if k != "seconds"} if isinstance(d, dict) else d


def test_tamper_tar_and_attack_two_processes_equal_one(world, tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    tar = ["tamper", "tar", "--config", str(REPO / "configs" / "tar" / "toyworld.yaml"), f"world={world}",
           f"suite={suite}", *TAR]
    one, two = tmp_path / "one", tmp_path / "two"
    _run(tar + ["--out", str(one)], 1)
    _run(tar + ["--out", str(two)], 2)
    for sub in ("model", "random_mapping/model"):
        a, b = (stn.load_file(str(d / sub / "model.safetensors")) for d in (one, two))
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_allclose(b[name], a[name], rtol=1e-6, atol=1e-7, err_msg=f"{sub}: {name}")
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (one, two))
    assert _without_seconds(ra) == _without_seconds(rb)
    assert [json.loads(x)["step"] for x in (two / "tar" / "metrics.jsonl").read_text().splitlines()] == [0, 1]
    assert not list(tmp_path.glob(".*")) and not list(two.glob(".*.partial"))  # staged, committed once

    attacked = tmp_path / "attacked"  # the same suite on the saved model, from two processes
    _run(["attack", "--model", str(two / "model"), "--world", str(world), "--suite", str(suite),
          "--questions", "4", "--out", str(attacked)], 2)
    got, want = (json.loads((d / "attacks.json").read_text()) for d in (attacked, two / "redteam"))
    assert _without_seconds(got) == _without_seconds(want)
    assert (attacked / "curves.png").is_file()
