"""The pure statistics of jaxsafe.safetywashing.stats against scipy/pandas and analytic cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.stats

from jaxsafe.safetywashing import stats


def _with_ties_and_gaps(rng, n, k):
    x = rng.integers(0, 6, size=(n, k)).astype(np.float64)  # many ties
    x[rng.random((n, k)) < 0.2] = np.nan
    return x


def test_masked_ranks_are_scipy_average_ranks():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=15).astype(np.float64)
    mask = rng.random(15) < 0.7
    with jax.enable_x64(True):
        ours = np.asarray(stats.masked_ranks(jnp.asarray(x), jnp.asarray(mask)))
    np.testing.assert_allclose(ours[mask], scipy.stats.rankdata(x[mask], method="average"))
    assert np.all(ours[~mask] == 0)


def test_spearman_pairwise_matches_scipy_omit():
    rng = np.random.default_rng(1)
    for _ in range(5):
        x, y = _with_ties_and_gaps(rng, 20, 2).T
        keep = ~np.isnan(x) & ~np.isnan(y)
        expected = scipy.stats.spearmanr(x[keep], y[keep]).statistic
        with jax.enable_x64(True):
            assert float(stats.spearman(jnp.asarray(x), jnp.asarray(y))) == pytest.approx(expected, abs=1e-12)


def test_spearman_matrix_matches_pandas_pairwise():
    x = _with_ties_and_gaps(np.random.default_rng(2), 25, 5)
    with jax.enable_x64(True):
        ours = np.asarray(stats.spearman_matrix(jnp.asarray(x)))
    np.testing.assert_allclose(ours, pd.DataFrame(x).corr(method="spearman").to_numpy(), atol=1e-12)


def test_spearman_of_constant_column_is_nan():
    x = jnp.array([1.0, 2.0, 3.0, 4.0])
    assert np.isnan(float(stats.spearman(x, jnp.ones(4))))


def test_column_moments_use_population_std_and_ignore_nan():
    x = np.array([[1.0, 5.0, 2.0], [2.0, np.nan, 2.0], [4.0, 7.0, 2.0], [9.0, 6.0, 2.0]])
    with jax.enable_x64(True):
        mean, std = stats.column_moments(jnp.asarray(x))
        z = np.asarray((jnp.asarray(x) - mean) / std)
    col = x[:, 0]
    np.testing.assert_allclose(z[:, 0], (col - col.mean()) / col.std(ddof=0))
    np.testing.assert_allclose(z[[0, 2, 3], 1], [-1.224744871391589, 1.224744871391589, 0.0])
    assert np.isnan(z[1, 1])
    assert np.isnan(z[:, 2]).all()  # constant column: std 0 -> all NaN, as the authors' code does


def test_first_component_sign_convention_and_explained_variance():
    v = np.array([-0.8, 0.36, 0.48])  # unit vector whose largest-magnitude entry is negative
    for u in (v, -v, v[::-1]):
        m = 3.0 * np.outer(u, u) + 0.5 * np.eye(3)  # eigenvalues 3.5, 0.5, 0.5
        pc1, explained = stats.first_component(jnp.asarray(m, dtype=jnp.float32))
        expected = u * np.sign(u[np.argmax(np.abs(u))])
        np.testing.assert_allclose(np.asarray(pc1), expected, atol=1e-6)
        assert np.asarray(pc1)[np.argmax(np.abs(expected))] > 0
        assert float(explained) == pytest.approx(3.5 / 4.5, abs=1e-6)


def test_capabilities_score_is_pc1_projection_of_zscores():
    rng = np.random.default_rng(3)
    caps = rng.normal(size=(12, 3)) + rng.normal(size=(12, 1)) * 2
    with jax.enable_x64(True):
        out = stats.capabilities_analysis(jnp.asarray(caps), jnp.asarray(caps))
        z = (caps - caps.mean(0)) / caps.std(0)
        np.testing.assert_allclose(np.asarray(out.score), z @ np.asarray(out.pc1), atol=1e-12)
        # each capability column is positively correlated with a score built from all of them
        assert np.all(np.asarray(out.correlations) > 0)


def test_bootstrap_is_deterministic_in_key_and_percentiles_are_correct():
    rng = np.random.default_rng(4)
    caps = rng.normal(size=(15, 3)) + rng.normal(size=(15, 1))
    target = caps[:, :1] + rng.normal(size=(15, 1))
    a = stats.bootstrap_correlations(jax.random.key(0), jnp.asarray(caps), jnp.asarray(target), n_boot=64)
    b = stats.bootstrap_correlations(jax.random.key(0), jnp.asarray(caps), jnp.asarray(target), n_boot=64)
    c = stats.bootstrap_correlations(jax.random.key(1), jnp.asarray(caps), jnp.asarray(target), n_boot=64)
    assert a.shape == (64, 1)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    samples = jnp.asarray(np.r_[np.arange(101.0), np.nan])[:, None]
    lo, hi = stats.percentile_interval(samples, 0.9)
    assert float(lo[0]) == pytest.approx(5.0) and float(hi[0]) == pytest.approx(95.0)


def test_model_missing_a_capability_gets_no_score_and_does_not_move_pc1():
    rng = np.random.default_rng(5)
    caps = rng.normal(size=(10, 3)) + rng.normal(size=(10, 1))
    target = rng.normal(size=(10, 2))
    extra_caps = np.vstack([caps, [[5.0, np.nan, 5.0]]])
    extra_target = np.vstack([target, [[9.0, 9.0]]])
    with jax.enable_x64(True):
        a = stats.capabilities_analysis(jnp.asarray(caps), jnp.asarray(target))
        b = stats.capabilities_analysis(jnp.asarray(extra_caps), jnp.asarray(extra_target))
    np.testing.assert_allclose(np.asarray(b.pc1), np.asarray(a.pc1), atol=1e-12)
    np.testing.assert_allclose(np.asarray(b.score[:10]), np.asarray(a.score), atol=1e-12)
    assert np.isnan(float(b.score[10]))
    np.testing.assert_allclose(np.asarray(b.correlations), np.asarray(a.correlations), atol=1e-12)


def test_each_bootstrap_row_is_the_pipeline_on_that_resample():
    """Resample r = PC1 fitted on the drawn models; duplicated models tie exactly (scipy on the same draw)."""
    rng = np.random.default_rng(6)
    caps = np.round(rng.normal(size=(9, 3)) + rng.normal(size=(9, 1)), 3)
    target = np.round(caps[:, :2] + rng.normal(size=(9, 2)), 2)
    key = jax.random.key(3)
    with jax.enable_x64(True):
        boot = np.asarray(stats.bootstrap_correlations(key, jnp.asarray(caps), jnp.asarray(target), n_boot=8))
        idx = np.asarray(stats.bootstrap_indices(key, 8, 9))
    assert any(len(set(r)) < 9 for r in idx)
    for b, rows in enumerate(idx):
        sample = caps[rows]
        z = (sample - sample.mean(0)) / sample.std(0)
        w, v = np.linalg.eigh(scipy.stats.spearmanr(z).statistic)
        pc1 = v[:, -1] * np.sign(v[np.argmax(np.abs(v[:, -1])), -1])
        score = (((caps - sample.mean(0)) / sample.std(0)) @ pc1)[rows]
        expected = [scipy.stats.spearmanr(target[rows, j], score).statistic for j in range(2)]
        np.testing.assert_allclose(boot[b], expected, atol=1e-12)
