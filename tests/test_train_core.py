"""The training core: the step against hand computations, parameter selections on stacked layers."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxsafe.errors import UserError
from jaxsafe.lm import Decoder, DecoderConfig
from jaxsafe.train import Selection, apply_gradients, init_state, loss_and_grad, make_step, select

CONFIG = DecoderConfig(vocab_size=32, hidden_size=16, intermediate_size=24, num_layers=4, num_heads=2,
                       num_kv_heads=1, head_dim=8)
A = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, -1.0]], np.float32)
B = np.array([1.0, -2.0, 0.5], np.float32)


def least_squares(params, batch, frozen):
    r = jnp.asarray(A) @ params["x"] - jnp.asarray(B) * batch
    return 0.5 * jnp.sum(r * r) + frozen, {"residual_norm": jnp.linalg.norm(r)}


class StepTest(chex.TestCase):
    """One SGD-with-momentum step by hand: g = Aᵀ(Ax − b), m = g, x ← x − lr·m; then m ← 0.9m + g."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_two_steps_equal_the_hand_computation(self):
        optimizer = optax.with_extra_args_support(optax.sgd(0.1, momentum=0.9))
        step = self.variant(make_step(least_squares, optimizer))
        x0 = np.array([0.5, -1.0], np.float32)
        state = init_state({"x": jnp.asarray(x0)}, optimizer)
        state, metrics = step(state, 1.0, 0.25)
        g0 = A.T @ (A @ x0 - B)
        x1 = x0 - 0.1 * g0
        chex.assert_trees_all_close(state.params["x"], x1, rtol=1e-6)
        chex.assert_trees_all_close(metrics["loss"], 0.5 * np.sum((A @ x0 - B) ** 2) + 0.25, rtol=1e-6)
        chex.assert_trees_all_close(metrics["grad_norm"], np.linalg.norm(g0), rtol=1e-6)
        chex.assert_trees_all_close(metrics["residual_norm"], np.linalg.norm(A @ x0 - B), rtol=1e-6)
        state, _ = step(state, 1.0, 0.25)
        g1 = A.T @ (A @ x1 - B)
        chex.assert_trees_all_close(state.params["x"], x1 - 0.1 * (0.9 * g0 + g1), rtol=1e-6)
        assert int(state.step) == 2


def test_loss_and_grad_and_apply_gradients_compose_to_the_step():
    optimizer = optax.with_extra_args_support(optax.adam(0.1))
    state = init_state({"x": jnp.ones(2)}, optimizer)
    (loss, _), grads = loss_and_grad(least_squares, state.params, 2.0, 0.0)
    chex.assert_trees_all_close(grads["x"], A.T @ (A @ np.ones(2) - 2.0 * B), rtol=1e-6)
    by_parts = apply_gradients(optimizer, state, grads, loss)
    whole, _ = make_step(least_squares, optimizer)(state, 2.0, 0.0)
    chex.assert_trees_all_equal(by_parts, whole)


def test_a_loss_aware_optimizer_receives_the_loss():
    seen = []

    def update(updates, state, params=None, *, value):
        seen.append(value)
        return jax.tree.map(jnp.zeros_like, updates), state

    optimizer = optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), update)
    make_step(least_squares, optimizer)(init_state({"x": jnp.zeros(2)}, optimizer), 1.0, 0.0)
    assert float(seen[0]) == pytest.approx(0.5 * float(np.sum(B ** 2)))


def _params():
    return nnx.state(Decoder(CONFIG, rngs=nnx.Rngs(0)), nnx.Param)


def test_a_layer_range_selects_rows_of_the_stacked_arrays():
    params = _params()
    selection = select(params, "layers.1-2.mlp.down_proj,norm")
    assert selection == Selection(((("layers", "mlp", "down_proj", "kernel"), (1, 3)), (("norm", "scale"), None)))
    trainable = selection.split(params)
    kernel = np.asarray(params["layers"]["mlp"]["down_proj"]["kernel"][...])
    chex.assert_shape(trainable["layers"]["mlp"]["down_proj"]["kernel"][...], (2, 24, 16))
    np.testing.assert_array_equal(trainable["layers"]["mlp"]["down_proj"]["kernel"][...], kernel[1:3])
    # merge writes the rows back; the gradient reaches only the selected rows
    new = jax.tree.map(lambda x: x + 1.0, trainable)
    merged = selection.merge(new, params)
    got = np.asarray(merged["layers"]["mlp"]["down_proj"]["kernel"][...])
    np.testing.assert_array_equal(got[1:3], kernel[1:3] + 1.0)
    np.testing.assert_array_equal(got[[0, 3]], kernel[[0, 3]])
    np.testing.assert_array_equal(merged["norm"]["scale"][...], params["norm"]["scale"][...] + 1.0)
    grads = jax.grad(lambda t: jnp.sum(selection.merge(t, params)["layers"]["mlp"]["down_proj"]["kernel"][...] ** 2))(trainable)
    np.testing.assert_allclose(grads["layers"]["mlp"]["down_proj"]["kernel"][...], 2 * kernel[1:3], rtol=1e-6)


def test_single_layers_whole_layers_and_overlapping_patterns():
    params = _params()
    one = select(params, "layers.3.self_attn.q_proj")
    assert one.parts == ((("layers", "self_attn", "q_proj", "kernel"), (3, 4)),)
    whole_layer = select(params, "layers.0")
    assert {rows for _, rows in whole_layer.parts} == {(0, 1)} and len(whole_layer.parts) == 9
    joined = select(params, "layers.0-1.mlp.up_proj,layers.2.mlp.up_proj")
    assert joined.parts == ((("layers", "mlp", "up_proj", "kernel"), (0, 3)),)
    assert select(params, "layers.mlp.*_proj").parts[0][1] is None  # no range: the whole stack


@pytest.mark.parametrize("pattern, message", [
    ("layers.1.mlp.dwn_proj", "matches no parameter"),
    ("layers.3-5.mlp.down_proj", "rows 3-5 are outside layers.mlp.down_proj.kernel"),
    ("layers.0.mlp.up_proj,layers.3.mlp.up_proj", "not contiguous"),
    ("", "empty parameter selection"),
])
def test_bad_selections_are_named(pattern, message):
    with pytest.raises(UserError, match=message):
        select(_params(), pattern)


def test_microbatched_ecdsep_step_equals_the_full_batch_step_loss_included():
    """ECDSep's energy comes from the loss value: make_step(microbatches=k) must hand it
    the mean loss of the same k microbatches whose mean gradient it applies. Reference:
    a hand loop of ECDSep on the whole batch (jax.value_and_grad, no make_step)."""
    from jaxsafe.optim.ecdsep import ecdsep

    a = jax.random.normal(jax.random.PRNGKey(0), (20, 5))
    b = jax.random.normal(jax.random.PRNGKey(1), (20,))

    def loss(x, rows):
        return 0.5 * jnp.mean((a[rows] @ x - b[rows]) ** 2)

    opt = ecdsep(0.1, 1.5, nu=0.0, delta_energy=0.3)
    x, opt_state = jnp.zeros(5), opt.init(jnp.zeros(5))
    for _ in range(3):
        value, g = jax.value_and_grad(loss)(x, jnp.arange(20))
        upd, opt_state = opt.update(g, opt_state, x, value=value)
        x = optax.apply_updates(x, upd)

    step = jax.jit(make_step(lambda p, rows, _: (loss(p["x"], rows), {}), opt, microbatches=4))
    state = init_state({"x": jnp.zeros(5)}, opt)
    for _ in range(3):
        state, metrics = step(state, jnp.arange(20), None)
    chex.assert_trees_all_close(state.params["x"], x, rtol=1e-5, atol=1e-7)
    # the last microbatch's loss with the mean gradient (optax.MultiSteps' convention) is another energy
    multi = optax.MultiSteps(opt, every_k_schedule=4)
    y, multi_state = jnp.zeros(5), multi.init(jnp.zeros(5))
    for _ in range(3):
        for rows in jnp.arange(20).reshape(5, 4).T:
            value, g = jax.value_and_grad(loss)(y, rows)
            upd, multi_state = multi.update(g, multi_state, y, value=value)
            y = optax.apply_updates(y, upd)
    assert float(jnp.abs(y - x).max()) > 1e-3
