"""RMU across two processes on this machine (CPU collectives over loopback): the same
parameters and numbers as one process with two devices, and a run resumes after a
process is killed."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import safetensors.numpy as stn

from rmu_inputs import make_tokenizer, write_rmu_inputs

# Runs the `jaxsafe` command; with a pause, each training step first sleeps (so a test can
# kill the job mid-run).
DRIVER = textwrap.dedent(
    """
    import sys, time
    pause = float(sys.argv[1])
    if pause:
        import jaxsafe.runs as runs
        loop = runs.train_loop
        def slow(run, state, step_fn, *a, **k):
            return loop(run, state, lambda s, b: (time.sleep(pause), step_fn(s, b))[1], *a, **k)
        runs.train_loop = slow
    from jaxsafe.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)
STEPS = 12


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp_path, devices: int, args: list[str], pause: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    return subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), str(pause), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _job(tmp_path, cfg, out, *, processes: int, resume=False, pause=0.0) -> list[subprocess.Popen]:
    rmu = ["unlearn", "rmu", "--config", str(cfg), "--out", str(out), "data_parallel=-1"] + (["--resume"] if resume else [])
    if processes == 1:
        return [_launch(tmp_path, 2, rmu, pause)]
    port = _free_port()
    return [_launch(tmp_path, 1, ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)] + rmu,
                    pause) for i in range(2)]


def _finish(procs, timeout=300):
    for p in procs:
        assert p.wait(timeout=timeout) == 0, p.stderr.read().decode()[-3000:]


def _model(out):
    return stn.load_file(str(out / "model" / "model.safetensors"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mp")
    (folder / "driver.py").write_text(DRIVER)
    cfg = write_rmu_inputs(folder, make_tokenizer(), extra="")
    text = cfg.read_text().replace("steps: 6", f"steps: {STEPS}").replace("checkpoint_every: 3", "checkpoint_every: 2")
    cfg.write_text(text)
    one = folder / "one"
    _finish(_job(folder, cfg, one, processes=1))
    return folder, cfg, one


def test_two_processes_equal_one_process_with_two_devices(inputs):
    folder, cfg, one = inputs
    two = folder / "two"
    _finish(_job(folder, cfg, two, processes=2))
    a, b = _model(one), _model(two)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(b[name], a[name], atol=1e-6, err_msg=name)
    moved = [n for n in a if not np.array_equal(a[n], stn.load_file(str(folder / "model" / "model.safetensors"))[n])]
    assert moved and all("down_proj" in n for n in moved)
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (one, two))
    assert ra["before"] == rb["before"] and ra["after"] == rb["after"]
    rows = lambda d: [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows(two)] == list(range(STEPS))  # one writer: every row once
    np.testing.assert_allclose([r["loss"] for r in rows(two)], [r["loss"] for r in rows(one)], rtol=1e-5)


def test_two_process_run_resumes_after_a_process_is_killed(inputs):
    folder, cfg, one = inputs
    out = folder / "killed"
    procs = _job(folder, cfg, out, processes=2, pause=0.3)
    checkpoints = folder / ".killed.partial" / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and not (checkpoints / "4").exists():
        assert all(p.poll() is None for p in procs), procs[0].stderr.read().decode()[-2000:]
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)
    try:  # its partner is stuck in (or fails at) the next collective
        procs[0].wait(timeout=20)
    except subprocess.TimeoutExpired:
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
    assert not (out / "results.json").exists()
    _finish(_job(folder, cfg, out, processes=2, resume=True))
    a, b = _model(one), _model(out)
    for name in a:
        np.testing.assert_allclose(b[name], a[name], atol=1e-6, err_msg=name)
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == list(range(STEPS))
