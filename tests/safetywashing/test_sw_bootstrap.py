"""Bootstrap intervals cover a known capabilities correlation at close to the nominal rate."""

import jax
import numpy as np
import pytest
import scipy.stats

from jaxsafe.safetywashing import stats, synthetic

N_MODELS, N_CAPS, NOISE = 30, 4, 0.5
RHOS = (0.0, 0.4, 0.7, 0.9)


def test_true_correlation_formula_matches_a_large_sample():
    """The ground truth used below: the population PC1 weights exchangeable columns equally."""
    n = 200_000
    caps, safety = synthetic.synthetic_arrays(jax.random.key(7), n, N_CAPS, np.asarray(RHOS, np.float32), NOISE)
    caps, safety = np.asarray(caps, np.float64), np.asarray(safety, np.float64)
    score = ((caps - caps.mean(0)) / caps.std(0)).mean(axis=1)
    for j, rho in enumerate(RHOS):
        est = scipy.stats.spearmanr(safety[:, j], score).statistic
        assert est == pytest.approx(synthetic.true_capabilities_correlation(rho, NOISE, N_CAPS), abs=0.01)


def test_percentile_intervals_have_near_nominal_coverage():
    reps, n_boot, level = 300, 400, 0.9
    rhos = np.asarray(RHOS, np.float32)
    truth = np.array([synthetic.true_capabilities_correlation(r, NOISE, N_CAPS) for r in RHOS])

    @jax.jit
    def interval(key):
        k_data, k_boot = jax.random.split(key)
        caps, safety = synthetic.synthetic_arrays(k_data, N_MODELS, N_CAPS, rhos, NOISE)
        return stats.percentile_interval(stats.bootstrap_correlations(k_boot, caps, safety, n_boot=n_boot), level)

    lo, hi = (np.asarray(v) for v in jax.lax.map(interval, jax.random.split(jax.random.key(0), reps)))
    covered = (lo <= truth) & (truth <= hi)
    # binomial s.e. of a coverage near 0.9 over 300 replications is 0.017
    np.testing.assert_allclose(covered.mean(axis=0), level, atol=0.05)
    assert covered.mean() == pytest.approx(level, abs=0.03)
    # intervals narrow as the correlation approaches 1 (Spearman's variance shrinks)
    width = (hi - lo).mean(axis=0)
    assert np.all(np.diff(width) < 0)
