import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsafe.unlearn.losses import control_vectors, forget_loss, retain_loss, rmu_loss


def test_control_vectors_unit_nonnegative_and_seeded():
    u = control_vectors(jax.random.key(42), 2, 16)
    np.testing.assert_allclose(np.linalg.norm(u, axis=-1), 1.0, rtol=1e-6)
    assert (u >= 0).all()
    np.testing.assert_array_equal(u, control_vectors(jax.random.key(42), 2, 16))
    assert not np.allclose(u[0], u[1])


def test_forget_loss_hand_computed_with_padding():
    # two rows of 3 tokens, d = 2; the last token of row 1 is padding
    h = jnp.array([[[1.0, 2.0], [0.0, 0.0], [3.0, 1.0]], [[2.0, 2.0], [1.0, 0.0], [9.0, 9.0]]])
    mask = jnp.array([[1, 1, 1], [1, 1, 0]])
    target = jnp.array([1.0, 0.0])
    # squared norms per token: [4, 1, 5], [5, 0, (145 pad)]
    assert float(forget_loss(h, target, mask)) == pytest.approx((4 + 1 + 5 + 5 + 0) / 5)
    # authors: mean over all 12 elements including the padded token
    assert float(forget_loss(h, target, mask, authors_convention=True)) == pytest.approx((4 + 1 + 5 + 5 + 0 + 145) / 12)


def test_retain_loss_stops_gradient_and_matches_hand_value():
    h = jnp.array([[[1.0, 0.0], [2.0, 2.0]]])
    frozen = jnp.array([[[0.0, 0.0], [2.0, 0.0]]])
    mask = jnp.array([[1, 1]])
    assert float(retain_loss(h, frozen, mask)) == pytest.approx((1 + 4) / 2)
    g = jax.grad(lambda f: retain_loss(h, f, mask))(frozen)
    assert not np.asarray(g).any()  # the frozen model is a target, not a parameter


def test_total_loss_and_convention_ratio():
    key = jax.random.key(0)
    hf, hr, hz = (jax.random.normal(k, (2, 5, 8)) for k in jax.random.split(key, 3))
    ones = jnp.ones((2, 5))
    u = control_vectors(key, 1, 8)[0]
    total, parts = rmu_loss(hf, ones, hr, ones, hz, u, 6.5, 1200.0)
    assert float(total) == pytest.approx(float(parts["forget_loss"] + 1200.0 * parts["retain_loss"]), rel=1e-6)
    # without padding the authors' convention is exactly ours divided by d
    total_a, _ = rmu_loss(hf, ones, hr, ones, hz, u, 6.5, 1200.0, authors_convention=True)
    assert float(total_a) == pytest.approx(float(total) / 8, rel=1e-5)
