"""accumulate_gradients: k micro-batches give exactly one ECDSep step on the whole batch."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxsafe.errors import UserError
from jaxsafe.optim.accumulate import accumulate_gradients
from jaxsafe.optim.ecdsep import ecdsep

A = jax.random.normal(jax.random.PRNGKey(0), (20, 5))
B = jax.random.normal(jax.random.PRNGKey(1), (20,))


def loss(x, rows):
    return 0.5 * jnp.mean((A[rows] @ x - B[rows]) ** 2)


MICRO = [jnp.arange(i, i + 5) for i in range(0, 20, 5)]
FULL = jnp.arange(20)


def _accumulated(opt, steps):
    x, state = jnp.zeros(5), opt.init(jnp.zeros(5))
    update = jax.jit(opt.update)
    for _ in range(steps):
        for i, rows in enumerate(MICRO):
            value, g = jax.value_and_grad(loss)(x, rows)
            upd, state = update(g, state, x, value=value)
            if i < len(MICRO) - 1:
                np.testing.assert_array_equal(upd, 0.0)
            x = optax.apply_updates(x, upd)
    return x


def test_accumulated_step_equals_full_batch_step():
    inner = ecdsep(0.1, 1.5, nu=0.0, delta_energy=0.3)
    x, state = jnp.zeros(5), inner.init(jnp.zeros(5))
    for _ in range(3):
        value, g = jax.value_and_grad(loss)(x, FULL)
        upd, state = inner.update(g, state, x, value=value)
        x = optax.apply_updates(x, upd)
    got = _accumulated(accumulate_gradients(inner, every_k=4), 3)
    np.testing.assert_allclose(got, x, rtol=1e-5, atol=1e-7)
    # optax.MultiSteps averages the gradients but passes the last micro-batch's loss: a different energy.
    multi = _accumulated(optax.MultiSteps(inner, every_k_schedule=4), 3)
    assert np.abs(np.asarray(multi) - np.asarray(x)).max() > 1e-3


def test_every_k_must_be_positive_int():
    with pytest.raises(UserError, match="every_k"):
        accumulate_gradients(ecdsep(0.1, 1.0), every_k=0)
