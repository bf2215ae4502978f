"""TAR's pure losses and directional ablation against hand computations in NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsafe.tamper import ablation, losses


def _np_entropy(logits):
    z = logits - logits.max(-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    return -(p * np.log(p)).sum(-1)


def _np_log_softmax(logits):
    z = logits - logits.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


@pytest.fixture(params=["jit", "nojit"])
def variant(request):
    """Each loss runs as plain Python and under jax.jit (chex.variants' two modes, for pytest functions)."""
    return jax.jit if request.param == "jit" else (lambda f: f)


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7)).astype(np.float32) * 2
    ids = rng.integers(0, 7, size=(2, 5)).astype(np.int32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], np.int32)
    return logits, ids, mask


def test_entropy_loss_authors_convention_covers_padding(batch):
    logits, _, mask = batch
    expected = -np.mean(_np_entropy(logits.astype(np.float64)))
    np.testing.assert_allclose(losses.entropy_loss(logits, mask, include_padding=True), expected, rtol=1e-5)


def test_entropy_loss_variants(batch, variant):
    logits, _, mask = batch
    h = _np_entropy(logits.astype(np.float64))
    expected = -np.mean(np.concatenate([h[0, :4], h[1, :2]]))
    np.testing.assert_allclose(variant(losses.entropy_loss)(logits, mask), expected, rtol=1e-5)


def test_entropy_maximum_is_log_vocab():
    logits = jnp.zeros((1, 4, 11))
    np.testing.assert_allclose(losses.entropy_loss(logits), -np.log(11), rtol=1e-6)


def test_dpo_loss_hand_computed(variant):
    pc, pr = np.array([-3.0, -5.0]), np.array([-4.0, -2.0])
    rc, rr = np.array([-3.5, -4.0]), np.array([-3.0, -2.5])
    beta = 0.1
    margin = beta * ((pc - rc) - (pr - rr))
    expected = np.mean(np.log1p(np.exp(-margin)))
    loss, parts = variant(losses.dpo_loss)(pc, pr, rc, rr)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(parts["reward_accuracy"], np.mean(margin > 0))
    # by hand: margins 0.1*((0.5)-(-1)) = 0.15 and 0.1*((-1)-(0.5)) = -0.15
    np.testing.assert_allclose(margin, [0.15, -0.15], atol=1e-12)
    np.testing.assert_allclose(loss, 0.5 * (np.log1p(np.exp(-0.15)) + np.log1p(np.exp(0.15))), rtol=1e-6)


def test_sequence_logprob(batch):
    logits, ids, mask = batch
    lp = _np_log_softmax(logits.astype(np.float64))
    expected = [sum(lp[b, t, ids[b, t + 1]] for t in range(4) if mask[b, t + 1]) for b in range(2)]
    np.testing.assert_allclose(losses.sequence_logprob(logits, ids, mask), expected, rtol=1e-5)


def _np_ce(logits, ids, mask):
    lp = _np_log_softmax(logits.astype(np.float64))
    vals = [-lp[b, t, ids[b, t + 1]] for b in range(ids.shape[0]) for t in range(ids.shape[1] - 1)
            if mask[b, t] and mask[b, t + 1]]
    return np.mean(vals)


def test_random_mapping_loss_hand_computed(batch, variant):
    logits, ids, mask = batch
    rng = np.random.default_rng(1)
    hidden = rng.normal(size=(3, 2, 5, 4)).astype(np.float32)
    table = np.asarray(losses.random_mapping_table(jax.random.key(0), 7, 4))
    total, parts = variant(losses.random_mapping_loss)(logits, ids, mask, hidden, ids, mask, table)
    vals = []
    for l in range(3):
        for b in range(2):
            for t in range(5):
                if mask[b, t]:
                    h, r = hidden[l, b, t].astype(np.float64), table[ids[b, t]].astype(np.float64)
                    vals.append(1 - abs(h @ r) / (np.linalg.norm(h) * np.linalg.norm(r)))
    np.testing.assert_allclose(parts["mapping_loss"], np.mean(vals), rtol=1e-5)
    np.testing.assert_allclose(parts["retain_ce"], _np_ce(logits, ids, mask), rtol=1e-5)
    np.testing.assert_allclose(total, np.mean(vals) + _np_ce(logits, ids, mask), rtol=1e-5)


def test_retain_loss_hand_computed(batch, variant):
    logits, ids, mask = batch
    rng = np.random.default_rng(2)
    hidden = rng.normal(size=(3, 2, 5, 4)).astype(np.float32)
    ref = rng.normal(size=(3, 2, 5, 4)).astype(np.float32)
    total, parts = variant(losses.retain_loss)(logits, ids, mask, hidden, ref)
    dist = np.linalg.norm(hidden.astype(np.float64) - ref, axis=-1)  # [3, 2, 5], not squared
    expected_rep = np.mean(np.concatenate([dist[:, 0, :].ravel(), dist[:, 1, :3].ravel()]))
    np.testing.assert_allclose(parts["retain_rep"], expected_rep, rtol=1e-5)
    np.testing.assert_allclose(total, expected_rep + _np_ce(logits, ids, mask), rtol=1e-5)
    _, padded = losses.retain_loss(logits, ids, mask, hidden, ref, include_padding=True)
    np.testing.assert_allclose(padded["retain_rep"], dist.mean(), rtol=1e-5)


def test_retain_loss_gradient_finite_at_reference(batch):
    logits, ids, mask = batch
    h = jnp.ones((2, 2, 5, 3))
    g = jax.grad(lambda x: losses.retain_loss(logits, ids, mask, x, h)[0])(h)
    assert np.all(np.isfinite(np.asarray(g)))


def test_inner_step_weights():
    w = losses.inner_step_weights(64, every=4)
    nz = np.nonzero(w)[0]
    assert list(nz) == list(range(3, 64, 4))  # 16 evaluations, after updates 4, 8, ..., 64
    np.testing.assert_allclose(w[63], 1.0)
    np.testing.assert_allclose(w[59], np.exp(0.0625 * -4), rtol=1e-6)
    np.testing.assert_allclose(w[3], np.exp(0.0625 * (3 - 63)), rtol=1e-6)


def test_directional_ablation_removes_direction_exactly():
    rng = np.random.default_rng(3)
    hf = rng.normal(size=(2, 6, 16)).astype(np.float32) + 3.0 * np.eye(16)[0]
    hr = rng.normal(size=(3, 4, 16)).astype(np.float32)
    mf = np.ones((2, 6), np.int32)
    mr = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], np.int32)
    hr_padded = hr.copy()
    hr_padded[mr == 0] = 1e3  # padding must not move the mean
    r = ablation.difference_direction(hf, mf, hr_padded, mr)
    expected = hf.reshape(-1, 16).mean(0) - hr[mr == 1].mean(0)
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(r, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(r), 1.0, rtol=1e-6)
    projected = ablation.project_out(jnp.asarray(hf), r)
    np.testing.assert_allclose(jnp.einsum("btd,d->bt", projected, r), 0.0, atol=1e-5)
    # idempotent, and the orthogonal part is untouched
    np.testing.assert_allclose(ablation.project_out(projected, r), projected, atol=1e-5)
    other = hf - np.einsum("btd,d->bt", hf, np.asarray(r))[..., None] * np.asarray(r)
    np.testing.assert_allclose(projected, other, atol=1e-5)
