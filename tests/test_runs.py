import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxsafe.errors import UserError
from jaxsafe.runs import RunDir

TRAINER = textwrap.dedent(
    """
    import sys, time
    import jax, jax.numpy as jnp, numpy as np, optax
    from jaxsafe.runs import RunDir, train_loop

    out, resume, pause = sys.argv[1], sys.argv[2] == "1", float(sys.argv[3])
    a = np.random.default_rng(0).standard_normal((32, 4)); b = a @ np.arange(4.0)
    opt = optax.adam(0.05)
    w0 = jnp.zeros(4)
    state = {"w": w0, "opt": opt.init(w0), "key": jax.random.key(0)}

    @jax.jit
    def step(state, batch):
        xa, xb = batch
        key, sub = jax.random.split(state["key"])
        loss, g = jax.value_and_grad(lambda w: jnp.mean((xa @ w - xb) ** 2))(state["w"])
        g = g + 0.01 * jax.random.normal(sub, g.shape)
        upd, opt_state = opt.update(g, state["opt"])
        return {"w": optax.apply_updates(state["w"], upd), "opt": opt_state, "key": key}, {"loss": loss}

    def step_fn(state, batch):
        time.sleep(pause)
        return step(state, batch)

    def batch_fn(k):
        idx = np.random.default_rng(k).choice(32, 8, replace=False)
        return a[idx], b[idx]

    final = train_loop(RunDir(out, resume=resume), state, step_fn, batch_fn, 30, checkpoint_every=5)
    np.save(out + "/final.npy", np.asarray(final["w"]))
    """
)


def _launch(script, out, resume, pause):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return subprocess.Popen([sys.executable, str(script), str(out), "1" if resume else "0", str(pause)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_resume_after_sigkill_is_exact(tmp_path):
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert _launch(script, straight, False, 0.0).wait(timeout=240) == 0

    proc = _launch(script, killed, False, 0.15)
    deadline = time.time() + 240
    while time.time() < deadline:  # kill once a checkpoint exists and later steps are under way
        metrics = killed / "metrics.jsonl"
        if (killed / "checkpoints" / "10").exists() and metrics.exists() and len(metrics.read_text().splitlines()) >= 13:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "final.npy").exists()
    logged_before = len((killed / "metrics.jsonl").read_text().splitlines())
    assert 13 <= logged_before < 30

    resumed = _launch(script, killed, True, 0.0)
    assert resumed.wait(timeout=240) == 0, resumed.stderr.read().decode()[-2000:]
    np.testing.assert_array_equal(np.load(straight / "final.npy"), np.load(killed / "final.npy"))
    rows = lambda d: [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert rows(straight) == rows(killed)
    assert [r["step"] for r in rows(killed)] == list(range(30))
    # only the last 3 checkpoints are kept
    assert sorted(int(p.name) for p in (killed / "checkpoints").iterdir() if p.name.isdigit()) == [20, 25, 30]


def test_refuses_to_overwrite_and_restores_shapes(tmp_path):
    run = RunDir(tmp_path)
    state = {"w": jnp.arange(3.0), "n": jnp.int32(4), "opt": optax.sgd(0.1, momentum=0.9).init(jnp.zeros(3))}
    run.save_checkpoint(7, state)
    with pytest.raises(UserError, match="already holds a run"):
        RunDir(tmp_path)
    step, restored = RunDir(tmp_path, resume=True).restore_latest(jax.tree.map(jnp.zeros_like, state))
    assert step == 7
    jax.tree.map(np.testing.assert_array_equal, restored, state)
    assert restored["n"].dtype == jnp.int32
    with pytest.raises(UserError, match="does not match"):
        RunDir(tmp_path, resume=True).restore(7, {"w": jnp.zeros(5)})


def test_results_written_atomically(tmp_path):
    run = RunDir(tmp_path)
    run.write_results({"acc": np.float32(0.5)})
    assert json.loads((tmp_path / "results.json").read_text()) == {"acc": 0.5}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_outputs_get_ordinary_permissions(tmp_path):
    from jaxsafe.io import atomic_write_text

    path = atomic_write_text(tmp_path / "out.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)
