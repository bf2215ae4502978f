"""Bootstrap of the safetywashing analysis: jaxsafe (jit + vmap) vs a pandas/numpy loop, side by side.

Both sides rerun the full pipeline (standardize, Spearman matrix, PC1 with the sign
convention, score, Spearman of every column with the score) on the SAME resamples of
the authors' base- or chat-model table, so their bootstrap correlations must agree to
round-off; the table reports wall time per 1000 resamples and the largest difference.

    python benchmarks/safetywashing.py [--kind base|chat] [--n-boot 1000] [--n-loop 100]

Reads ../shared/data/safetywashing (outside the package); writes
benchmarks/results/safetywashing.json.
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxsafe.io import atomic_write_json
from jaxsafe.safetywashing import stats
from jaxsafe.safetywashing.analysis import DEFAULT_CAPABILITIES
from jaxsafe.safetywashing.tables import load_scores

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "safetywashing"


def pandas_resample(caps: pd.DataFrame, targets: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """The reference method written plainly with pandas/numpy, for one resample ``rows``.

    PC1 and the standardization are fitted on the resampled models; the score is
    computed on the distinct models and then resampled, so that a model drawn twice
    ties exactly with itself (as in jaxsafe).
    """
    sample = caps.iloc[rows].reset_index(drop=True)
    mean, std = sample.mean(), sample.std(ddof=0)
    eigvals, eigvecs = np.linalg.eigh(((sample - mean) / std).corr(method="spearman").to_numpy())
    pc1 = eigvecs[:, -1] * np.sign(eigvecs[np.argmax(np.abs(eigvecs[:, -1])), -1])
    score = pd.Series((((caps - mean) / std).to_numpy() @ pc1)[rows])
    return targets.iloc[rows].reset_index(drop=True).corrwith(score, method="spearman").to_numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("base", "chat"), default="base")
    parser.add_argument("--n-boot", type=int, default=1000, help="resamples for jaxsafe")
    parser.add_argument("--n-loop", type=int, default=100, help="resamples for the (slow) pandas loop")
    args = parser.parse_args()

    table = load_scores(DATA / f"benchmarks_{args.kind}_models.csv")
    caps_df = table.scores[list(DEFAULT_CAPABILITIES)]
    targets_df = table.scores
    key = jax.random.key(0)
    with jax.enable_x64(True):
        caps, targets = jnp.asarray(caps_df.to_numpy(np.float64)), jnp.asarray(targets_df.to_numpy(np.float64))
        t0 = time.perf_counter()
        stats.bootstrap_correlations(key, caps, targets, n_boot=args.n_boot).block_until_ready()
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours = np.asarray(stats.bootstrap_correlations(key, caps, targets, n_boot=args.n_boot).block_until_ready())
        jax_s = time.perf_counter() - t0
        idx = np.asarray(stats.bootstrap_indices(key, args.n_boot, len(caps_df)))

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on resamples where a column is constant (NaN on both sides)
        ref = np.stack([pandas_resample(caps_df, targets_df, rows) for rows in idx[: args.n_loop]])
    loop_s = time.perf_counter() - t0
    diff = float(np.nanmax(np.abs(ref - ours[: args.n_loop])))
    nan_mismatch = int(np.sum(np.isnan(ref) != np.isnan(ours[: args.n_loop])))

    per_k = {"jaxsafe (jit+vmap)": 1000 * jax_s / args.n_boot, "pandas/numpy loop": 1000 * loop_s / args.n_loop}
    print(f"bootstrap of the {args.kind}-model table: {len(caps_df)} models x {targets_df.shape[1]} columns, "
          f"{jax.devices()[0].platform}, {platform.processor() or platform.machine()}")
    print(f"{'implementation':<22} {'resamples':>9} {'s / 1000 resamples':>19}")
    print(f"{'jaxsafe (jit+vmap)':<22} {args.n_boot:>9} {per_k['jaxsafe (jit+vmap)']:>19.3f}   (+{compile_s - jax_s:.1f} s compile)")
    print(f"{'pandas/numpy loop':<22} {args.n_loop:>9} {per_k['pandas/numpy loop']:>19.3f}")
    print(f"speed-up {per_k['pandas/numpy loop'] / per_k['jaxsafe (jit+vmap)']:.0f}x; "
          f"max |difference| of {args.n_loop} x {targets_df.shape[1]} resampled correlations: {diff:.2e} "
          f"(NaN pattern mismatches: {nan_mismatch})")
    atomic_write_json(
        REPO / "benchmarks" / "results" / "safetywashing.json",
        {
            "kind": args.kind,
            "n_models": len(caps_df),
            "n_columns": targets_df.shape[1],
            "device": jax.devices()[0].platform,
            "seconds_per_1000_resamples": per_k,
            "jax_compile_seconds": compile_s - jax_s,
            "n_boot_jax": args.n_boot,
            "n_boot_pandas": args.n_loop,
            "max_abs_difference": diff,
            "nan_pattern_mismatches": nan_mismatch,
            "command": f"python benchmarks/safetywashing.py --kind {args.kind} --n-boot {args.n_boot} --n-loop {args.n_loop}",
        },
    )


if __name__ == "__main__":
    main()
