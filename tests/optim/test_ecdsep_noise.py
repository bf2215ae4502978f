"""ECDSep's default hash noise against N(0, 1): moments, tails, shape, and independence
across coordinates, steps and leaves; the same checks reject deliberately bad generators.

ECDSep uses ``z`` only as ``p̂ ← (p̂ + ν·z)/‖p̂ + ν·z‖``, so what must hold is: zero
mean, unit variance, no correlation between coordinates, steps or leaves (or the
rotation drifts), and a normal shape, so that in few dimensions the rotation is
isotropic (a uniform ``z`` prefers the diagonals of a cube).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from jaxsafe.optim.ecdsep import _draw_noise, _hash_normal, _lowbias32, ecdsep

N = 1 << 20  # draws per sample: moment standard errors ~1e-3
SHAPES = [((1024, 1024), jnp.float32), ((1024, 1024), jnp.float32)]  # two leaves of the same shape
KEY = jax.random.PRNGKey(0)


def hash_draws(count, shapes=SHAPES):
    return [np.asarray(z, np.float64).ravel() for z in _draw_noise("hash", KEY, jnp.int32(count), shapes)]


def _corr(a, b):
    return float(np.corrcoef(a, b)[0, 1])


def failures(draw) -> list[str]:
    """Names of the checks a generator ``draw(count, shapes) -> [flat arrays]`` fails."""
    out = []
    z, other_leaf = draw(0)
    next_step, _ = draw(1)
    two_steps, _ = draw(2)
    se = 1 / math.sqrt(N)
    m = {k: float(np.mean(z**k)) for k in (1, 2, 3, 4, 6)}
    if abs(m[1]) > 5 * se or abs(m[2] - 1) > 5 * math.sqrt(2) * se:
        out.append("mean/variance")
    if abs(m[3]) > 5 * math.sqrt(15) * se or abs(m[4] - 3) > 5 * math.sqrt(96) * se:
        out.append("skewness/kurtosis")  # sampling sd of the 4th moment: sqrt(105 - 9)/sqrt(N)
    if not 14.0 < m[6] < 16.0:
        out.append("6th moment")  # normal: 15
    for t, rel in ((2.0, 0.1), (3.0, 0.2)):
        if abs(np.mean(np.abs(z) > t) / (2 * stats.norm.sf(t)) - 1) > rel:
            out.append(f"tail P(|z|>{t})")
    if stats.kstest(z, "norm").statistic > 0.005:  # ours: 0.0032 (half of it the byte grid) + sampling (~0.001)
        out.append("shape (KS)")
    for lag in (1, 2, 3, 7, 64, 1023, 1024, 1025, 4096, 65536):
        if abs(_corr(z[:-lag], z[lag:])) > 5 * se or abs(_corr(z[:-lag] ** 2, z[lag:] ** 2)) > 5 * se:
            out.append(f"coordinates lag {lag}")
            break
    for bit in range(20):  # neighbours in the bits of the index
        j = np.arange(N) ^ (1 << bit)
        if abs(_corr(z, z[j])) > 5 * se:
            out.append(f"index bit {bit}")
            break
    if abs(_corr(z, next_step)) > 5 * se or abs(_corr(z, two_steps)) > 5 * se or abs(_corr(z**2, next_step**2)) > 5 * se:
        out.append("steps")
    if np.array_equal(np.sort(z), np.sort(next_step)):
        out.append("steps permute the same values")
    if abs(_corr(z, other_leaf)) > 5 * se:
        out.append("leaves")
    return out


def test_hash_noise_passes_every_check():
    assert failures(hash_draws) == []


def _keyed(fn):
    """A generator from a per-element function fn(index uint32, key uint32[2]) -> float32."""
    def draw(count, shapes=SHAPES):
        step_key = jax.random.fold_in(KEY, count)
        outs = []
        for leaf, (shape, _) in enumerate(shapes):
            key = jax.random.fold_in(step_key, leaf)
            index = jnp.arange(math.prod(shape), dtype=jnp.uint32)
            outs.append(np.asarray(fn(index, key), np.float64))
        return outs
    return draw


def _uniform(index, key):  # the previous noise: uniform(−√3, √3), same mean and variance
    bits = _lowbias32(index * (key[0] | jnp.uint32(1)) + key[1])
    return (bits.astype(jnp.float32) / 2.0**32 - 0.5) * (2 * math.sqrt(3))


def _repeating(count, shapes=SHAPES):  # forgets the step
    return hash_draws(0, shapes)


def _same_leaves(count, shapes=SHAPES):  # forgets the leaf
    z = hash_draws(count, shapes)[0]
    return [z, z]


def _smoothed(count, shapes=SHAPES):  # neighbouring coordinates correlated
    z, w = hash_draws(count, shapes)
    return [(z + np.roll(z, 1)) / math.sqrt(2), w]


def _biased(count, shapes=SHAPES):
    return [z + 0.01 for z in hash_draws(count, shapes)]


def _irwin_hall(index, key):  # the byte sum without the cubic: kurtosis 2.7, |z| ≤ 3.46
    bits = _lowbias32(index * (key[0] | jnp.uint32(1)) + key[1])
    total = (bits & 0xFF) + ((bits >> 8) & 0xFF) + ((bits >> 16) & 0xFF) + (bits >> 24)
    return (total.astype(jnp.float32) - 510.0) / math.sqrt(4 * (256**2 - 1) / 12)


@pytest.mark.parametrize("bad,caught", [
    (_keyed(_uniform), "skewness/kurtosis"),
    (_keyed(_irwin_hall), "skewness/kurtosis"),
    (_repeating, "steps"),
    (_same_leaves, "leaves"),
    (_smoothed, "coordinates lag 1"),
    (_biased, "mean/variance"),
], ids=["uniform", "irwin_hall_4", "repeats_across_steps", "same_across_leaves", "neighbour_correlated", "biased"])
def test_checks_catch_bad_generators(bad, caught):
    assert caught in failures(bad)


def test_draws_in_time_for_one_coordinate_are_independent_and_normal():
    # A 3-parameter model over 4096 steps: each coordinate's sequence over steps.
    counts = jnp.arange(4096, dtype=jnp.int32)
    seq = jax.vmap(lambda c: _draw_noise("hash", KEY, c, [((3,), jnp.float32)])[0])(counts)
    seq = np.asarray(seq, np.float64)
    se = 1 / math.sqrt(seq.shape[0])
    for c in range(3):
        x = seq[:, c]
        assert abs(x.mean()) < 5 * se and abs(x.var() - 1) < 5 * math.sqrt(2) * se
        for lag in (1, 2, 5):
            assert abs(_corr(x[:-lag], x[lag:])) < 5 * se
        assert stats.kstest(x, "norm").pvalue > 1e-3
    assert abs(_corr(seq[:, 0], seq[:, 1])) < 5 * se and abs(_corr(seq[:, 1], seq[:, 2])) < 5 * se


def test_low_dimensional_rotation_is_isotropic():
    # In 2-D the rotation's direction is the angle of z: uniform on the circle for a
    # normal z, bunched towards the diagonals for a uniform one.
    counts = jnp.arange(1 << 16, dtype=jnp.int32)
    z = np.asarray(jax.vmap(lambda c: _draw_noise("hash", KEY, c, [((2,), jnp.float32)])[0])(counts), np.float64)
    angle = np.arctan2(z[:, 1], z[:, 0])
    assert stats.kstest(angle, stats.uniform(-np.pi, 2 * np.pi).cdf).pvalue > 1e-3
    bits = _lowbias32(_lowbias32(jnp.arange(2 << 16, dtype=jnp.uint32)) ^ jnp.uint32(7))
    u = ((np.asarray(bits, np.float64) / 2**32) - 0.5).reshape(-1, 2)
    assert stats.kstest(np.arctan2(u[:, 1], u[:, 0]), stats.uniform(-np.pi, 2 * np.pi).cdf).pvalue < 1e-6


def test_hash_and_exact_noise_give_the_same_distribution_of_results():
    # Large ν on Rosenbrock, 128 seeds: the final losses with the hash noise and with exact
    # normal draws are two samples of one distribution (two-sample KS), and the noise matters
    # (both differ from ν = 0).
    def rosen(x):
        return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2

    def final_losses(noise, nu):
        def one(seed):
            opt = ecdsep(0.02, 1.0, nu=nu, noise=noise)
            x = jnp.array([-1.5, 2.0])
            state = opt.init(x)._replace(key=jax.random.PRNGKey(seed))

            def step(carry, _):
                x, state = carry
                value, g = jax.value_and_grad(rosen)(x)
                u, state = opt.update(g, state, x, value=value)
                return (optax.apply_updates(x, u), state), None

            (x, _), _ = jax.lax.scan(step, (x, state), None, length=300)
            return rosen(x)

        return np.asarray(jax.jit(jax.vmap(one))(jnp.arange(128)))

    hashed, exact = final_losses("hash", 0.3), final_losses("gaussian", 0.3)
    assert np.all(np.isfinite(hashed)) and np.all(np.isfinite(exact))
    assert stats.ks_2samp(np.log(hashed), np.log(exact)).pvalue > 0.01
    assert np.std(np.log(hashed)) > 0.1  # the seeds do spread the runs


def test_draw_is_deterministic_and_dtype_follows_leaf():
    a = _draw_noise("hash", KEY, jnp.int32(5), [((3, 4), jnp.bfloat16), ((7,), jnp.float32)])
    b = _draw_noise("hash", KEY, jnp.int32(5), [((3, 4), jnp.bfloat16), ((7,), jnp.float32)])
    assert a[0].dtype == jnp.bfloat16 and a[1].dtype == jnp.float32
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x, np.float32), np.asarray(y, np.float32))
    # row-major index: a (3, 4) leaf gives the same draws as a (12,) one with the same key
    np.testing.assert_array_equal(np.asarray(_hash_normal((3, 4), KEY, jnp.float32)).ravel(),
                                  np.asarray(_hash_normal((12,), KEY, jnp.float32)))
