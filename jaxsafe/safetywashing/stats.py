"""Pure array functions for the safetywashing analysis (Ren et al. 2024, arXiv:2407.21792).

Everything here takes and returns arrays, handles missing values (NaN) pairwise,
and is written with ``jax.numpy`` so that the whole pipeline can be ``vmap``-ed over
bootstrap resamples of the models. Rows are models, columns are benchmarks.

The method (spec ``safetywashing.md``, steps 2-6):

* standardize every column, z = (x - mean) / std with the *population* std;
* Spearman correlation matrix of the capability columns (pairwise complete rows);
* PC1 = eigenvector of its largest eigenvalue, sign chosen so that its
  largest-magnitude entry is positive; explained variance = lambda_1 / sum(lambda);
* capabilities score of a model = z_capabilities(model) . PC1;
* capabilities correlation of a benchmark = Spearman(benchmark, score) over the
  models where both are present.

Ties get average ranks, as in ``scipy.stats.spearmanr`` and ``pandas.DataFrame.corr``.
Ranks are computed by pairwise comparison (O(n^2) per column), which is exact,
branch-free and cheap for the few dozen models of a benchmark table.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp


def masked_ranks(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Average (tie-aware) 1-based ranks of ``x`` among the entries where ``mask`` is true.

    rank_i = #{j in mask: x_j < x_i} + (#{j in mask: x_j == x_i} + 1) / 2, which is the
    mean of the positions a block of tied values occupies. Entries outside the mask get 0.
    """
    x = jnp.where(mask, x, 0.0)
    pair = mask[None, :] & mask[:, None]
    below = jnp.sum(pair & (x[None, :] < x[:, None]), axis=1)
    equal = jnp.sum(pair & (x[None, :] == x[:, None]), axis=1)
    return jnp.where(mask, below.astype(x.dtype) + (equal.astype(x.dtype) + 1.0) / 2.0, 0.0)


def _masked_pearson(a: jax.Array, b: jax.Array, mask: jax.Array) -> jax.Array:
    """Pearson correlation of ``a`` and ``b`` over ``mask``; NaN if either is constant there."""
    w = mask.astype(a.dtype)
    n = jnp.sum(w)
    da = (a - jnp.sum(w * a) / n) * w
    db = (b - jnp.sum(w * b) / n) * w
    return jnp.sum(da * db) / jnp.sqrt(jnp.sum(da * da) * jnp.sum(db * db))


def spearman(x: jax.Array, y: jax.Array) -> jax.Array:
    """Spearman correlation of two columns over the rows where both are present (not NaN).

    Returns NaN when fewer than two rows remain or either column is constant on them.
    """
    mask = ~jnp.isnan(x) & ~jnp.isnan(y)
    return _masked_pearson(masked_ranks(x, mask), masked_ranks(y, mask), mask)


@jax.jit
def spearman_with(columns: jax.Array, y: jax.Array) -> jax.Array:
    """Spearman correlation of every column of ``columns`` (n, k) with ``y`` (n,): shape (k,)."""
    return jax.vmap(spearman, in_axes=(1, None))(columns, y)


def spearman_matrix(columns: jax.Array) -> jax.Array:
    """(k, k) Spearman matrix of the columns of ``columns`` (n, k), pairwise complete rows."""
    return jax.vmap(spearman_with, in_axes=(None, 1))(columns, columns)


def pairwise_counts(columns: jax.Array, y: jax.Array) -> jax.Array:
    """Number of rows where both ``columns[:, j]`` and ``y`` are present, per column."""
    return jnp.sum(~jnp.isnan(columns) & ~jnp.isnan(y)[:, None], axis=0)


def column_moments(columns: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-column mean and population std (ddof = 0) ignoring NaN cells.

    A constant column's std 0 becomes NaN, so its z-scores are all NaN, as in the reference analysis.
    """
    mean = jnp.nanmean(columns, axis=0)
    std = jnp.sqrt(jnp.nanmean((columns - mean) ** 2, axis=0))
    return mean, jnp.where(std > 0, std, jnp.nan)


def first_component(corr: jax.Array) -> tuple[jax.Array, jax.Array]:
    """PC1 of a correlation matrix and the fraction of variance it explains.

    PC1 is the unit eigenvector of the largest eigenvalue, with its sign fixed so
    that its largest-magnitude entry is positive (an eigenvector's sign is
    otherwise arbitrary, and it decides the sign of every capabilities correlation).
    """
    eigvals, eigvecs = jnp.linalg.eigh(corr)
    pc1 = eigvecs[:, -1]
    pc1 = pc1 * jnp.sign(pc1[jnp.argmax(jnp.abs(pc1))])
    return pc1, eigvals[-1] / jnp.sum(eigvals)


class CapabilitiesFit(NamedTuple):
    """What :func:`fit_capabilities` learns from the capability columns of a set of models."""

    mean: jax.Array  # (k,) column means
    std: jax.Array  # (k,) population stds
    pc1: jax.Array  # (k,) loadings of the capability benchmarks
    explained_variance: jax.Array  # scalar fraction lambda_1 / sum(lambda)


def fit_capabilities(capabilities: jax.Array) -> CapabilitiesFit:
    """Standardization moments and PC1 of the (n_models, k) capability scores.

    Only models with every capability value enter the fit, so that adding a
    partly evaluated model does not move everyone else's score.
    """
    complete = ~jnp.any(jnp.isnan(capabilities), axis=1, keepdims=True)
    kept = jnp.where(complete, capabilities, jnp.nan)
    mean, std = column_moments(kept)
    pc1, explained = first_component(spearman_matrix((kept - mean) / std))
    return CapabilitiesFit(mean, std, pc1, explained)


def capabilities_score(capabilities: jax.Array, fit: CapabilitiesFit) -> jax.Array:
    """Score of each model: its standardized capability row . PC1 (NaN if a value is missing)."""
    return ((capabilities - fit.mean) / fit.std) @ fit.pc1


class Capabilities(NamedTuple):
    """Output of :func:`capabilities_analysis`."""

    pc1: jax.Array  # (k,) loadings of the capability benchmarks
    explained_variance: jax.Array  # scalar fraction lambda_1 / sum(lambda)
    score: jax.Array  # (n,) capabilities score per model (NaN if a capability is missing)
    correlations: jax.Array  # (t,) Spearman(target column, score), in [-1, 1]


@jax.jit
def capabilities_analysis(capabilities: jax.Array, targets: jax.Array) -> Capabilities:
    """The whole capabilities-correlation computation for one table.

    Args:
      capabilities: (n_models, k) raw scores of the capability benchmarks.
      targets: (n_models, t) columns to correlate with the capabilities score
        (raw values suffice: Spearman only sees ranks).

    Returns:
      :class:`Capabilities`; a model missing a capability value has a NaN score
      and drops out of every correlation (pairwise).
    """
    fit = fit_capabilities(capabilities)
    score = capabilities_score(capabilities, fit)
    return Capabilities(fit.pc1, fit.explained_variance, score, spearman_with(targets, score))


def bootstrap_indices(key: jax.Array, n_boot: int, n_models: int) -> jax.Array:
    """(n_boot, n_models) row indices drawn with replacement: one resample of the models per row."""
    return jax.random.randint(key, (n_boot, n_models), 0, n_models)


@functools.partial(jax.jit, static_argnames=("n_boot", "batch_size"))
def bootstrap_correlations(
    key: jax.Array, capabilities: jax.Array, targets: jax.Array, n_boot: int, batch_size: int = 64
) -> jax.Array:
    """Capabilities correlations recomputed on ``n_boot`` resamples of the models.

    Each resample draws n models with replacement and reruns the full pipeline
    (standardization, Spearman matrix, PC1, score, correlations), so the spread
    includes the uncertainty in PC1 itself. Resamples are processed ``batch_size``
    at a time (vmap inside ``lax.map``) to bound memory.

    Returns:
      (n_boot, t) correlations; NaN where a resample leaves a column constant.
    """
    idx = bootstrap_indices(key, n_boot, capabilities.shape[0])

    def one(rows):
        fit = fit_capabilities(capabilities[rows])
        # score the distinct models, then pick: a model drawn twice gets bit-identical
        # scores (a tie), which a matmul over the duplicated rows does not guarantee
        score = capabilities_score(capabilities, fit)[rows]
        return spearman_with(targets[rows], score)

    return jax.lax.map(one, idx, batch_size=batch_size)


def percentile_interval(samples: jax.Array, level: float) -> tuple[jax.Array, jax.Array]:
    """Two-sided percentile bootstrap interval per column, ignoring NaN resamples."""
    alpha = (1.0 - level) / 2.0
    lo, hi = jnp.nanquantile(samples, jnp.array([alpha, 1.0 - alpha]), axis=0)
    return lo, hi
