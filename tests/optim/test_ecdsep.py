"""ECDSep conformance: low-precision numerics, optax/nnx integration, skipping, jit, sharding, noise."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxsafe.errors import UserError
from jaxsafe.optim.ecdsep import _hash_normal, ecdsep
from jaxsafe.parallel import make_mesh


def rosen(x):
    return jnp.sum((1 - x[:-1]) ** 2 + 100 * (x[1:] - x[:-1] ** 2) ** 2)


def run(opt, loss, params, steps, **kw):
    """`steps` jitted updates; returns the final params and the list of states."""
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = opt.update(grads, state, params, value=value, **kw)
        return optax.apply_updates(params, updates), state

    states = []
    for _ in range(steps):
        params, state = step(params, state)
        states.append(state)
    return params, states


# ---------------------------------------------------------------- low precision near F0


def _feed(dtype, values, eta, lr=0.1, x64=False):
    """Updates for a fixed gradient and a given sequence of loss values (tiny F̃, large η)."""
    params = jnp.linspace(-1.0, 1.0, 6).astype(dtype)
    grads = (jnp.linspace(0.5, -0.2, 6) * 1e-3).astype(dtype)
    opt = ecdsep(lr, eta, nu=0.0, delta_energy=1.0)
    state = opt.init(params)
    out = []
    for v in values:
        updates, state = jax.jit(opt.update)(grads, state, params, value=jnp.asarray(v, jnp.float64 if x64 else jnp.float32))
        assert updates.dtype == dtype
        out.append((np.asarray(updates, np.float64), bool(state.skipped)))
        params = optax.apply_updates(params, updates)
    return out


@pytest.mark.parametrize("dtype,rtol", [(jnp.float32, 1e-4), (jnp.bfloat16, 3e-2)])
@pytest.mark.parametrize("values", [[2e-8, 1.5e-8, 1.2e-8], [1.0, 2e-8, 2e-8]], ids=["start_near_F0", "fall_to_F0"])
def test_low_precision_near_f0_is_finite_and_matches_float64(dtype, rtol, values):
    # F̃ = 2e-8, η = 5: V = 3.2e-39 is below float32's smallest normal and E/V ≈ 6e38 overflows it.
    f32 = jnp.finfo(jnp.float32)
    assert 2e-8**5 < float(f32.tiny) and 2.0 / 2e-8**5 > float(f32.max)
    with jax.enable_x64(True):
        ref = _feed(jnp.float64, values, eta=5.0, x64=True)
    got = _feed(dtype, values, eta=5.0)
    for (u_ref, skip_ref), (u, skip) in zip(ref, got):
        assert not skip_ref and not skip  # neither frozen by the skip rule ...
        assert np.all(np.isfinite(u)) and np.any(u != 0)  # ... nor inf/NaN, nor stuck
        scale = np.abs(u_ref).max()
        np.testing.assert_allclose(u, u_ref, rtol=0, atol=rtol * scale)


def test_huge_energy_ratio_gives_tiny_bounded_step():
    # After falling from L=1 to F̃=2e-8 with η=5, |p|² = E/V − s ≈ 6e38: step length 2·lr·|p|/(s+|p|²) ≈ 2·lr/2.5e19.
    (_, _), (u, _), _ = _feed(jnp.float32, [1.0, 2e-8, 2e-8], eta=5.0, lr=0.1)
    step_len = np.linalg.norm(u)
    assert 0 < step_len < 1e-15


# ---------------------------------------------------------------- skipping, never NaN


def test_nan_loss_or_grad_is_skipped_and_flagged():
    opt = ecdsep(0.05, 1.0, nu=1e-3)
    x = jnp.array([-1.5, 2.0])
    state = opt.init(x)
    value, g = jax.value_and_grad(rosen)(x)
    upd, state = opt.update(g, state, x, value=value)
    assert int(state.count) == 1 and not bool(state.skipped)
    x = optax.apply_updates(x, upd)
    for bad_value, bad_g in [(jnp.nan, g), (value, g.at[0].set(jnp.nan)), (jnp.inf, g), (-1.0, g)]:
        upd, new_state = opt.update(bad_g, state, x, value=bad_value)
        assert bool(new_state.skipped)
        np.testing.assert_array_equal(upd, 0.0)
        for a, b in zip(jax.tree.leaves(new_state._replace(skipped=state.skipped, num_skipped=state.num_skipped)), jax.tree.leaves(state)):
            np.testing.assert_array_equal(a, b)
        assert int(new_state.num_skipped) == int(state.num_skipped) + 1
        state = new_state
    assert int(state.num_skipped) == 4 and int(state.count) == 1


def test_zero_gradient_at_first_step_gives_no_nan():
    # The reference divides 0/0 here (p = −g·sqrt(δE/‖g‖²)); ours starts from p = 0.
    opt = ecdsep(0.1, 1.0, delta_energy=1.0)
    x = jnp.ones(3)
    state = opt.init(x)
    upd, state = opt.update(jnp.zeros(3), state, x, value=1.0)
    np.testing.assert_array_equal(upd, 0.0)
    assert np.all(np.isfinite(np.asarray(state.direction))) and float(state.log_p2) == -np.inf
    upd, state = opt.update(jnp.array([1.0, 0.0, 0.0]), state, x, value=1.0)
    assert np.all(np.isfinite(upd)) and float(upd[0]) < 0


def test_skipped_step_does_not_advance_schedule():
    sched = optax.linear_schedule(0.05, 0.01, 10)
    x0 = jnp.array([-1.5, 2.0])
    opt = ecdsep(sched, 1.0, nu=0.0)
    ref, _ = run(opt, rosen, x0, 3)
    x, state = x0, opt.init(x0)
    for i in range(3):
        value, g = jax.value_and_grad(rosen)(x)
        if i == 1:  # a skipped call in between
            _, state = opt.update(g, state, x, value=jnp.nan)
        upd, state = opt.update(g, state, x, value=value)
        x = optax.apply_updates(x, upd)
    np.testing.assert_allclose(x, ref, rtol=1e-6)


# ---------------------------------------------------------------- optax citizenship


def test_inside_chain_equals_clipping_by_hand():
    x0 = jnp.array([-1.5, 2.0, 0.5])
    chained, _ = run(optax.chain(optax.clip_by_global_norm(1.0), ecdsep(0.05, 1.0, nu=0.0)), rosen, x0, 20)
    clipped_loss_opt = ecdsep(0.05, 1.0, nu=0.0)
    x, state = x0, clipped_loss_opt.init(x0)
    for _ in range(20):
        value, g = jax.value_and_grad(rosen)(x)
        g = g * jnp.minimum(1.0, 1.0 / jnp.linalg.norm(g))
        upd, state = clipped_loss_opt.update(g, state, x, value=value)
        x = optax.apply_updates(x, upd)
    np.testing.assert_allclose(chained, x, rtol=1e-5)
    assert float(rosen(x)) < float(rosen(x0))


def test_inject_hyperparams_schedules_equal_rebuilding_per_step():
    lr_s = optax.linear_schedule(0.05, 0.005, 15)
    eta_s = optax.linear_schedule(1.0, 2.0, 15)
    x0 = jnp.array([-1.5, 2.0])
    opt = optax.inject_hyperparams(ecdsep, static_args=("nu",))(learning_rate=lr_s, eta=eta_s, nu=0.0, delta_energy=0.5)
    got, states = run(opt, rosen, x0, 15)
    assert float(states[-1].hyperparams["eta"]) == pytest.approx(float(eta_s(14)))
    x, inner = x0, ecdsep(0.05, 1.0, nu=0.0).init(x0)
    for t in range(15):
        value, g = jax.value_and_grad(rosen)(x)
        upd, inner = ecdsep(lr_s(t), eta_s(t), nu=0.0, delta_energy=0.5).update(g, inner, x, value=value)
        x = optax.apply_updates(x, upd)
    np.testing.assert_allclose(got, x, rtol=1e-5)
    fixed, _ = run(ecdsep(0.05, 1.0, nu=0.0, delta_energy=0.5), rosen, x0, 15)
    assert np.abs(np.asarray(fixed) - np.asarray(got)).max() > 1e-3  # the schedules did something


def test_nnx_optimizer_update_with_value():
    model = nnx.Linear(4, 2, rngs=nnx.Rngs(0))
    xs, ys = jnp.linspace(-1, 1, 32).reshape(8, 4), jnp.linspace(0, 1, 16).reshape(8, 2)

    def loss_fn(m):
        return jnp.mean((m(xs) - ys) ** 2)

    tx = ecdsep(0.05, 1.0, nu=1e-3, seed=3)
    params0 = nnx.as_pure(nnx.state(model, nnx.Param))  # a snapshot: the state itself is updated in place
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    for _ in range(5):
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads, value=loss)
    graphdef = nnx.graphdef(model)

    def pure_loss(p):
        return loss_fn(nnx.merge(graphdef, p))

    expected, _ = run(tx, pure_loss, params0, 5)
    for a, b in zip(jax.tree.leaves(nnx.as_pure(nnx.state(model, nnx.Param))), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert float(loss_fn(model)) < float(pure_loss(params0))


def test_dtypes_preserved_and_state_wide():
    params = {"w": jnp.ones((4, 3), jnp.bfloat16), "b": jnp.zeros(3, jnp.float32)}
    opt = ecdsep(0.1, 2.0, weight_decay=0.01)
    state = opt.init(params)
    grads = jax.tree.map(lambda p: jnp.full(p.shape, 0.1, p.dtype), params)
    upd, state = jax.jit(opt.update)(grads, state, params, value=jnp.float32(0.7))
    assert upd["w"].dtype == jnp.bfloat16 and upd["b"].dtype == jnp.float32
    assert state.direction["w"].dtype == jnp.float32 and state.log_p2.dtype == jnp.float32
    assert not bool(state.skipped) and float(jnp.abs(upd["w"].astype(jnp.float32)).max()) > 0


def test_jit_does_not_recompile():
    x0 = jnp.array([-1.5, 2.0])
    opt = optax.inject_hyperparams(ecdsep)(learning_rate=optax.cosine_decay_schedule(0.05, 20), eta=1.5)
    state = opt.init(x0)

    @jax.jit
    def step(x, state):
        value, g = jax.value_and_grad(rosen)(x)
        upd, state = opt.update(g, state, x, value=value)
        return optax.apply_updates(x, upd), state

    x = x0
    for _ in range(6):
        x, state = step(x, state)
    _, state = step(x, state._replace(inner_state=state.inner_state._replace(count=jnp.int32(0))))
    assert step._cache_size() == 1


# ---------------------------------------------------------------- noise and sharding


@pytest.mark.parametrize("noise", ["hash", "gaussian"])
def test_sharded_equals_unsharded(noise):
    mesh = make_mesh(data=8)
    params = {"w": jnp.linspace(-1, 1, 64 * 12).reshape(64, 12), "b": jnp.linspace(0, 1, 16)}

    def loss(p):
        return jnp.sum(jnp.tanh(p["w"]) ** 2) * 1e-2 + jnp.sum((p["b"] - 0.3) ** 2) + 0.1

    opt = ecdsep(0.05, 1.5, nu=1e-2, seed=7, noise=noise)
    plain, _ = run(opt, loss, params, 4)
    sharded = {"w": jax.device_put(params["w"], NamedSharding(mesh, P("data", None))),
               "b": jax.device_put(params["b"], NamedSharding(mesh, P("data")))}
    got, states = run(opt, loss, sharded, 4)
    row_sharded = NamedSharding(mesh, P("data", None))
    assert got["w"].sharding.is_equivalent_to(row_sharded, 2)
    assert states[-1].direction["w"].sharding.is_equivalent_to(row_sharded, 2)  # the momentum stays sharded
    assert not bool(states[-1].skipped)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(plain)):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)
    nonoise, _ = run(ecdsep(0.05, 1.5, nu=0.0), loss, params, 4)
    assert np.abs(np.asarray(nonoise["w"]) - np.asarray(plain["w"])).max() > 1e-6


@pytest.mark.parametrize("noise", ["hash", "gaussian"])
def test_noise_replay_and_own_draws_agree(noise):
    x0 = {"a": jnp.array([-1.5, 2.0]), "b": jnp.array([0.3])}

    def loss(p):
        return rosen(jnp.concatenate([p["a"], p["b"]]))

    opt = ecdsep(0.05, 1.0, nu=0.1, seed=5, noise=noise)
    own, states = run(opt, loss, x0, 1)
    key = jax.random.fold_in(states[0].key, 0)
    if noise == "gaussian":  # the documented draw: leaf i from fold_in(fold_in(key, step), i)
        z = {"a": jax.random.normal(jax.random.fold_in(key, 0), (2,)), "b": jax.random.normal(jax.random.fold_in(key, 1), (1,))}
    else:
        z = {"a": _hash_normal((2,), jax.random.fold_in(key, 0), jnp.float32),
             "b": _hash_normal((1,), jax.random.fold_in(key, 1), jnp.float32)}
    x, state = x0, opt.init(x0)
    value, g = jax.value_and_grad(loss)(x)
    upd, state = opt.update(g, state, x, value=value, noise=z)
    for a, b in zip(jax.tree.leaves(state.direction), jax.tree.leaves(states[0].direction)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # |p| is untouched by the rotation: only the direction moved.
    _, det = run(ecdsep(0.05, 1.0, nu=0.0), loss, x0, 1)
    assert float(state.log_p2) == pytest.approx(float(det[0].log_p2), rel=1e-6)


def test_nu0_closed_form_direction_norm_equals_measuring_it():
    # ν = 0 skips the u·u pass (‖direction‖² is known in closed form); a traced ν = 0
    # takes the noisy code path, which measures u·u every step. 150 steps cross the
    # periodic re-measurement (every 64) and Rosenbrock's turning points.
    with jax.enable_x64(True):
        x0 = jnp.array([-1.5, 2.0, 0.5])
        tracked, st = run(ecdsep(0.05, 1.0, nu=0.0), rosen, x0, 150)
        measured, _ = run(ecdsep(0.05, 1.0, nu=jnp.float64(0.0)), rosen, x0, 150)
        np.testing.assert_allclose(tracked, measured, rtol=1e-10, atol=1e-12)
        for s in st:
            n2 = float(jnp.sum(s.direction**2))
            assert np.isnan(float(s.direction_norm2)) or abs(n2 - float(s.direction_norm2)) < 1e-12


def test_nu0_reversal_flags_direction_norm_for_measurement():
    # A 1-D oscillator turns around every few steps: there the force nearly cancels
    # p, the closed-form ‖w‖² loses digits, and the next step must measure u·u.
    def loss(x):
        return jnp.sum(x**2) + 0.5

    _, st = run(ecdsep(0.3, 1.0, nu=0.0), loss, jnp.array([1.0], jnp.float32), 60)
    flags = np.array([np.isnan(float(s.direction_norm2)) for s in st])
    assert flags.any() and not flags.all()
    for s in st:
        if not np.isnan(float(s.direction_norm2)):
            assert abs(float(jnp.sum(s.direction**2)) - float(s.direction_norm2)) < 3e-6


def test_bad_arguments_are_user_errors():
    with pytest.raises(UserError, match="eta"):
        ecdsep(0.1, 0.0)
    with pytest.raises(UserError, match="nu"):
        ecdsep(0.1, 1.0, nu=-1.0)
    with pytest.raises(UserError, match="noise must be one of"):
        ecdsep(0.1, 1.0, noise="uniform")
    opt = ecdsep(0.1, 1.0)
    with pytest.raises(UserError, match="value="):
        opt.update(jnp.ones(2), opt.init(jnp.ones(2)), jnp.ones(2))
