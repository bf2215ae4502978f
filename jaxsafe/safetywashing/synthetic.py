"""Synthetic benchmark tables with a known capabilities correlation.

Model m has a latent capability g_m ~ N(0, 1). Each of k capability benchmarks
is g_m + noise * e_mj, and a "safety" benchmark with coupling rho is
rho * g_m + sqrt(1 - rho^2) * u_m (all e, u standard normal, independent).

As the number of models grows, PC1 weights the k exchangeable capability columns
equally, so the capabilities score tends to g + noise * mean_j(e_j), whose
correlation with g is r = 1 / sqrt(1 + noise^2 / k). For a bivariate normal with
Pearson correlation c, Spearman's correlation is (6 / pi) * arcsin(c / 2)
(Pearson 1907), so the population capabilities correlation of the safety
benchmark is (6 / pi) * arcsin(rho * r / 2): a ground truth against which the
bootstrap intervals' coverage can be checked. Used by the demo, the tests and the
benchmark script; it never touches the authors' data.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxsafe.safetywashing.tables import ScoreTable


def synthetic_arrays(
    key: jax.Array, n_models: int, n_capabilities: int, rhos: jax.Array, noise: float
) -> tuple[jax.Array, jax.Array]:
    """(capabilities (n, k), safety (n, len(rhos))) drawn from the model above."""
    kg, kc, ks = jax.random.split(key, 3)
    g = jax.random.normal(kg, (n_models, 1))
    caps = g + noise * jax.random.normal(kc, (n_models, n_capabilities))
    rhos = jnp.asarray(rhos)
    safety = rhos * g + jnp.sqrt(1.0 - rhos**2) * jax.random.normal(ks, (n_models, rhos.shape[0]))
    return caps, safety


def true_capabilities_correlation(rho: float, noise: float, n_capabilities: int) -> float:
    """Population Spearman correlation of a safety benchmark with the capabilities score."""
    r = 1.0 / math.sqrt(1.0 + noise**2 / n_capabilities)
    return 6.0 / math.pi * math.asin(rho * r / 2.0)


def synthetic_table(
    seed: int,
    n_models: int,
    capability_names: Sequence[str],
    safety: Mapping[str, float],
    noise: float = 0.3,
) -> ScoreTable:
    """A :class:`ScoreTable` of synthetic models ``synthetic-model-00`` ... (scores rounded to 4 decimals).

    ``safety`` maps each safety benchmark name to its coupling rho with the latent capability.
    """
    caps, safe = synthetic_arrays(
        jax.random.key(seed), n_models, len(capability_names), jnp.asarray(list(safety.values())), noise
    )
    models = [f"synthetic-model-{i:02d}" for i in range(n_models)]
    data = np.round(np.concatenate([np.asarray(caps), np.asarray(safe)], axis=1).astype(np.float64), 4)
    scores = pd.DataFrame(data, index=models, columns=[*capability_names, *safety])
    flop = pd.Series(np.exp(np.asarray(caps).mean(axis=1) + 50.0), index=models)
    return ScoreTable(scores=scores, flop=flop, names=pd.Series(models, index=models))
