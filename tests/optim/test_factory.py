"""The optimizer factory against independent references: PyTorch's optimizers, optax's
schedules and schedule-free evaluation, and per-lane equality of vmapped learning rates."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxsafe.errors import UserError
from jaxsafe.optim.config import EcdsepConfig, OptimizerConfig, ScheduleConfig
from jaxsafe.optim.factory import (evaluation_params, initial_hyper, make_optimizer, schedule_value, with_hyper)
from jaxsafe.train import init_state, make_step

A = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
B = np.random.default_rng(1).normal(size=6).astype(np.float32)
X0 = np.random.default_rng(2).normal(size=4).astype(np.float32)


def quadratic(params, batch, frozen):
    r = jnp.asarray(A) @ params["x"] - jnp.asarray(B)
    return 0.5 * jnp.sum(r * r), {}


def run(cfg: OptimizerConfig, steps=20):
    opt = make_optimizer(cfg, steps)
    step = jax.jit(make_step(quadratic, opt))
    state = init_state({"x": jnp.asarray(X0)}, opt)
    for _ in range(steps):
        state, _ = step(state, None, None)
    return state


TORCH_CASES = {
    "sgd_nesterov": (dict(name="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1),
                     lambda torch, p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1)),
    "adam": (dict(name="adam", lr=0.05, weight_decay=0.1), lambda torch, p: torch.optim.Adam(p, lr=0.05, weight_decay=0.1)),
    "adamw": (dict(name="adamw", lr=0.05, weight_decay=0.1), lambda torch, p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.1)),
    "adagrad": (dict(name="adagrad", lr=0.05), lambda torch, p: torch.optim.Adagrad(p, lr=0.05)),
    "adadelta": (dict(name="adadelta", lr=1.0), lambda torch, p: torch.optim.Adadelta(p, lr=1.0)),
}


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_optimizers_follow_pytorch(case):
    """20 steps on a least-squares problem: the factory's optimizer and torch.optim's agree."""
    torch = pytest.importorskip("torch")
    cfg, make_torch = TORCH_CASES[case]
    ours = np.asarray(run(OptimizerConfig(**cfg)).params["x"])
    x = torch.tensor(X0, requires_grad=True)
    opt = make_torch(torch, [x])
    for _ in range(20):
        opt.zero_grad()
        r = torch.tensor(A) @ x - torch.tensor(B)
        (0.5 * (r * r).sum()).backward()
        opt.step()
    np.testing.assert_allclose(ours, x.detach().numpy(), atol=2e-5)


@pytest.mark.parametrize("kind", ["linear_warmup", "warmup_cosine", "sgdr"])
def test_schedules_equal_optax(kind):
    cfg = OptimizerConfig(lr=0.1, schedule=ScheduleConfig(kind=kind, warmup_steps=10, decay_steps=50,
                                                          final_fraction=0.2, cycle_steps=30))
    reference = {
        "linear_warmup": optax.linear_schedule(0.0, 0.1, 10),
        "warmup_cosine": optax.warmup_cosine_decay_schedule(0.0, 0.1, 10, 50, 0.1 * 0.2),
        "sgdr": optax.sgdr_schedule([dict(init_value=0.0, peak_value=0.1, warmup_steps=10, decay_steps=30,
                                          end_value=0.02)] * 4),
    }[kind]
    hyper = initial_hyper(cfg, 50)
    ours = jax.vmap(lambda t: schedule_value(kind, t, hyper))(jnp.arange(110))
    np.testing.assert_allclose(ours, [reference(t) for t in range(110)], rtol=1e-6, atol=1e-8)


def test_the_schedule_drives_the_updates():
    """With SGD the step taken is exactly −lr_t·g: the warm-up's first step moves nothing."""
    cfg = OptimizerConfig(name="sgd", lr=0.1, schedule=ScheduleConfig(kind="linear_warmup", warmup_steps=4))
    opt = make_optimizer(cfg, 10)
    state = opt.init({"x": jnp.ones(2)})
    moves = []
    for _ in range(6):
        updates, state = opt.update({"x": jnp.ones(2)}, state, {"x": jnp.ones(2)}, value=1.0)
        moves.append(float(updates["x"][0]))
    np.testing.assert_allclose(moves, [0.0, -0.025, -0.05, -0.075, -0.1, -0.1], rtol=1e-6)


def test_vmapped_learning_rates_equal_separate_runs():
    """Lanes of one vmapped program with different lr and warm-up equal one run each."""
    base = OptimizerConfig(name="adamw", lr=0.01, schedule=ScheduleConfig(kind="warmup_cosine", warmup_steps=3))
    opt = make_optimizer(base, 10)
    step = make_step(quadratic, opt)
    lrs, warmups = jnp.array([0.01, 0.03, 0.1]), jnp.array([3.0, 0.0, 5.0])
    state = init_state({"x": jnp.asarray(X0)}, opt)
    states = jax.vmap(lambda lr, w: state._replace(opt_state=with_hyper(state.opt_state, lr=lr, warmup_steps=w)))(lrs, warmups)
    run_all = jax.jit(jax.vmap(lambda s: jax.lax.scan(lambda s, _: (step(s, None, None)[0], None), s, None, 10)[0]))
    batched = run_all(states)
    for i, (lr, w) in enumerate(zip(lrs.tolist(), warmups.tolist())):
        single = run(OptimizerConfig(name="adamw", lr=lr, schedule=ScheduleConfig(kind="warmup_cosine", warmup_steps=int(w))), 10)
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], batched.params), single.params, rtol=1e-6)


def test_schedule_free_evaluation_params_are_the_averaged_sequence():
    state = run(OptimizerConfig(name="schedule_free_adamw", lr=0.05), 10)
    found = [s for s in jax.tree.leaves(state.opt_state, is_leaf=lambda x: isinstance(x, optax.contrib.ScheduleFreeState))
             if isinstance(s, optax.contrib.ScheduleFreeState)]
    x = evaluation_params(state.opt_state, state.params)
    expected = (state.params["x"] - (1 - found[0].b1) * found[0].z["x"]) / found[0].b1
    chex.assert_trees_all_close(x["x"], expected, rtol=1e-6)
    assert not np.allclose(x["x"], state.params["x"])
    plain = run(OptimizerConfig(name="adam", lr=0.05), 3)
    assert evaluation_params(plain.opt_state, plain.params) is plain.params


def test_ecdsep_drives_the_core_step():
    """ECDSep needs the loss value: the core passes it, and the trajectory equals calling ECDSep by hand."""
    from jaxsafe.optim.ecdsep import ecdsep

    cfg = OptimizerConfig(name="ecdsep", lr=0.05, ecdsep=EcdsepConfig(eta=1.0, nu=1e-3, noise="hash", seed=3))
    ours = run(cfg, 15).params["x"]
    opt = ecdsep(0.05, 1.0, nu=1e-3, seed=3, noise="hash")
    x = jnp.asarray(X0)
    state = opt.init(x)
    for _ in range(15):
        value, g = jax.value_and_grad(lambda p: quadratic({"x": p}, None, None)[0])(x)
        updates, state = opt.update(g, state, x, value=value)
        x = optax.apply_updates(x, updates)
    chex.assert_trees_all_close(ours, x, rtol=1e-5)  # jitted with a traced lr vs eager: float rounding
    assert float(quadratic({"x": ours}, None, None)[0]) < float(quadratic({"x": jnp.asarray(X0)}, None, None)[0])


def test_clipping_bounds_the_gradient():
    cfg = OptimizerConfig(name="sgd", lr=1.0, clip_norm=0.5)
    opt = make_optimizer(cfg, 1)
    updates, _ = opt.update({"x": jnp.array([3.0, 4.0])}, opt.init({"x": jnp.zeros(2)}), {"x": jnp.zeros(2)}, value=0.0)
    np.testing.assert_allclose(updates["x"], [-0.3, -0.4], rtol=1e-6)


def test_eps_root_makes_adam_differentiable_at_a_zero_gradient():
    """d(updates)/dx through two Adam steps whose first gradient has an entry that is exactly 0:
    √v's derivative at v = 0 makes it NaN; with eps_root the derivative is that of the formula
    u = −lr·m̂/(√(v̂ + eps_root) + eps), written out below."""
    def grad_of(cfg):
        opt = make_optimizer(cfg, 2)

        def f(x):
            p = {"w": jnp.zeros(2)}
            s = opt.init(p)
            u1, s = opt.update({"w": jnp.array([0.0, 1.0]) * x}, s, p, value=0.0)
            u2, _ = opt.update({"w": jnp.array([1.0, 2.0])}, s, p, value=0.0)
            return jnp.sum(u1["w"]) + jnp.sum(u2["w"])

        return f, jax.grad(f)(1.0)

    assert np.isnan(float(grad_of(OptimizerConfig(name="adam", lr=0.1))[1]))
    with pytest.raises(UserError, match="eps_root"):
        make_optimizer(OptimizerConfig(name="sgd", lr=0.1, eps_root=1e-8), 1)
    lr, b1, b2, eps, eps_root = 0.1, 0.9, 0.999, 1e-8, 1e-8

    def by_hand(x):  # entry-wise Adam with bias correction, the two steps written out
        total = 0.0
        for c1, g2 in ((0.0, 1.0), (1.0, 2.0)):  # step 1's gradient c1·x, step 2's g2
            m1, v1 = (1 - b1) * c1 * x, (1 - b2) * (c1 * x) ** 2
            total += -lr * (m1 / (1 - b1)) / (np.sqrt(v1 / (1 - b2) + eps_root) + eps)
            m2, v2 = b1 * m1 + (1 - b1) * g2, b2 * v1 + (1 - b2) * g2**2
            total += -lr * (m2 / (1 - b1**2)) / (np.sqrt(v2 / (1 - b2**2) + eps_root) + eps)
        return total

    f, got = grad_of(OptimizerConfig(name="adam", lr=lr, eps_root=eps_root))
    h = 1e-3
    np.testing.assert_allclose(float(f(1.0)), by_hand(1.0), rtol=1e-5)
    np.testing.assert_allclose(float(got), (by_hand(1 + h) - by_hand(1 - h)) / (2 * h), rtol=1e-3)
