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
from jaxsafe.runs import RunDir, train_loop

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


# RMU driven by ECDSep (with its noise) through the training core: the noise stream,
# the energy fixed at the first step and the schedule all live in the checkpointed state.
ECDSEP_RMU_TRAINER = textwrap.dedent(
    """
    import sys, time
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from jaxsafe.lm import Decoder, DecoderConfig
    from jaxsafe.optim.config import EcdsepConfig, OptimizerConfig, ScheduleConfig
    from jaxsafe.optim.factory import make_optimizer
    from jaxsafe.runs import RunDir, train_loop
    from jaxsafe.train import init_state, make_step, select
    from jaxsafe.unlearn.losses import control_vectors
    from jaxsafe.unlearn.rmu import rmu_objective

    out, resume, pause = sys.argv[1], sys.argv[2] == "1", float(sys.argv[3])
    cfg = DecoderConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_layers=3, num_heads=2,
                        num_kv_heads=2, head_dim=8, max_position_embeddings=16)
    graphdef, params = nnx.split(Decoder(cfg, rngs=nnx.Rngs(0)))
    selection = select(params, "layers.0-1.mlp.down_proj")
    opt = make_optimizer(OptimizerConfig(name="ecdsep", lr=0.05, schedule=ScheduleConfig(kind="warmup_cosine", warmup_steps=4),
                                         ecdsep=EcdsepConfig(eta=1.0, nu=1e-2, noise="hash", seed=1)), 30)
    step = jax.jit(make_step(rmu_objective(graphdef, selection, 1, 5.0, 10.0), opt), donate_argnums=0)
    frozen = {"params": params, "controls": control_vectors(jax.random.key(0), 1, 16)}

    def step_fn(state, batch):
        time.sleep(pause)
        return step(state, batch, frozen)

    def batch_fn(k):
        rng = np.random.default_rng(k)
        ids = lambda: rng.integers(1, 50, (4, 8)).astype(np.int32)
        ones = np.ones((4, 8), np.int32)
        return {"forget_ids": ids(), "forget_mask": ones, "retain_ids": ids(), "retain_mask": ones, "topic": np.int32(0)}

    final = train_loop(RunDir(out, resume=resume), init_state(selection.split(params), opt), step_fn, batch_fn, 30,
                       checkpoint_every=5)
    np.save(out + "/final.npy", np.asarray(jax.tree.leaves(final.params)[0]))
    """
)


def _launch(script, out, resume, pause):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return subprocess.Popen([sys.executable, str(script), str(out), "1" if resume else "0", str(pause)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("trainer", [TRAINER, ECDSEP_RMU_TRAINER], ids=["adam-quadratic", "ecdsep-rmu"])
def test_resume_after_sigkill_is_exact(tmp_path, trainer):
    script = tmp_path / "trainer.py"
    script.write_text(trainer)
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
    run.wait_until_finished()  # written in the background
    with pytest.raises(UserError, match="already holds a run"):
        RunDir(tmp_path)
    step, restored = RunDir(tmp_path, resume=True).restore_latest(jax.tree.map(jnp.zeros_like, state))
    assert step == 7
    jax.tree.map(np.testing.assert_array_equal, restored, state)
    assert restored["n"].dtype == jnp.int32
    with pytest.raises(UserError, match=r"'w' is float32\[3\] there, float32\[5\] here"):
        RunDir(tmp_path, resume=True).restore(7, {**state, "w": jnp.zeros(5)})
    with pytest.raises(UserError, match="it has no 'v'"):
        RunDir(tmp_path, resume=True).restore(7, {**state, "v": jnp.zeros(3)})
    with pytest.raises(UserError, match="'opt/0/trace' is not part of this run's state"):
        RunDir(tmp_path, resume=True).restore(7, {"w": state["w"], "n": state["n"]})


def test_checkpoints_are_named_and_readable_without_jaxsafe(tmp_path):
    """A checkpoint is a nested dict of the state's own names; plain orbax reads it."""
    import orbax.checkpoint as ocp

    from jaxsafe.optim.config import OptimizerConfig
    from jaxsafe.optim.factory import make_optimizer
    from jaxsafe.train import init_state

    opt = make_optimizer(OptimizerConfig(name="adamw", lr=0.1), 10)
    state = init_state({"layers": {"mlp": {"kernel": jnp.ones((2, 3))}}}, opt)
    run = RunDir(tmp_path)
    run.save_checkpoint(4, state)
    run.wait_until_finished()
    plain = ocp.StandardCheckpointer().restore(tmp_path / "checkpoints" / "4" / "default")
    np.testing.assert_array_equal(plain["params"]["layers"]["mlp"]["kernel"], np.ones((2, 3)))
    assert set(plain["opt_state"]["hyper"]) == {"lr", "warmup_steps", "decay_steps", "final_fraction", "cycle_steps"}
    assert float(plain["opt_state"]["hyper"]["lr"]) == pytest.approx(0.1)
    np.testing.assert_array_equal(plain["opt_state"]["inner"]["0"]["mu"]["layers"]["mlp"]["kernel"], np.zeros((2, 3)))
    assert int(plain["step"]) == 0


def test_metrics_are_fetched_in_blocks_but_every_step_is_logged(tmp_path):
    """train_loop keeps metrics on the device between fetches; every step still gets its row."""
    fetched = []

    def step_fn(state, batch):
        return state + batch, {"value": state + batch}

    real_get = jax.device_get

    def counting_get(x):
        fetched.append(len(x))
        return real_get(x)

    from jaxsafe import runs

    runs.jax.device_get = counting_get
    try:
        train_loop(RunDir(tmp_path), jnp.float32(0), step_fn, lambda k: jnp.float32(k), 23, checkpoint_every=10,
                   fetch_every=4)
    finally:
        runs.jax.device_get = real_get
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(23))
    assert [r["value"] for r in rows] == [k * (k + 1) / 2 for k in range(23)]
    assert fetched == [4, 4, 2, 2, 4, 4, 3]  # after steps 3, 7, 9 (checkpoint), 11, 15, 19 (both), 22 (last)


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


def test_async_checkpoint_holds_the_state_of_its_step_after_the_buffers_are_donated(tmp_path):
    """save_checkpoint returns before the files are written; a step that donates and overwrites
    the state's buffers right after must not change what the checkpoint holds."""
    state = {"w": jnp.arange(1_000_000, dtype=jnp.float32), "n": jnp.int32(3)}
    expected = jax.tree.map(np.asarray, state)
    overwrite = jax.jit(lambda s: jax.tree.map(lambda x: x * 0 - 1, s), donate_argnums=0)
    run = RunDir(tmp_path)
    run.save_checkpoint(1, state)
    state = overwrite(state)
    assert float(state["w"][0]) == -1.0
    run.wait_until_finished()
    _, restored = RunDir(tmp_path, resume=True).restore_latest(jax.tree.map(jnp.zeros_like, state))
    jax.tree.map(np.testing.assert_array_equal, restored, expected)
