"""Bootstrap of the safetywashing analysis: jaxsafe (jit + vmap) vs a pandas/numpy loop, side by side.

Both sides rerun the full pipeline (standardize, Spearman matrix, PC1 with the sign
convention, score, Spearman of every column with the score) on the SAME resamples of
the authors' base- or chat-model table, so their bootstrap correlations must agree to
round-off; the table reports wall time per 1000 resamples and the largest difference.

    python benchmarks/safetywashing.py [--kind base|chat] [--n-boot 1000] [--n-loop 100] [--rounds 5] [--allow-load]

The two sides alternate in interleaved rounds (benchmarks/_protocol.py); the
speed-up is the median of per-round ratios of time per resample.

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

from _protocol import Monitor, add_arguments, format_ratio, ratio, write_results
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
    parser.add_argument("--n-loop", type=int, default=100, help="resamples for the (slow) pandas loop, split over the rounds")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "safetywashing.json")
    add_arguments(parser)
    args = parser.parse_args()
    monitor = Monitor()

    table = load_scores(DATA / f"benchmarks_{args.kind}_models.csv")
    caps_df = table.scores[list(DEFAULT_CAPABILITIES)]
    targets_df = table.scores
    key = jax.random.key(0)
    with jax.enable_x64(True):
        caps, targets = jnp.asarray(caps_df.to_numpy(np.float64)), jnp.asarray(targets_df.to_numpy(np.float64))
        t0 = time.perf_counter()
        stats.bootstrap_correlations(key, caps, targets, n_boot=args.n_boot).block_until_ready()
        compile_s = time.perf_counter() - t0
        idx = np.asarray(stats.bootstrap_indices(key, args.n_boot, len(caps_df)))
        chunks = np.array_split(np.arange(args.n_loop), args.rounds)  # round r's pandas resamples
        ours, ref = None, []
        # Time per resample: jax runs all n_boot each round, the loop its round's share of n_loop.
        times = {"jax": [], "pandas": []}
        for r, chunk in enumerate(chunks):
            for side in (("jax", "pandas") if r % 2 == 0 else ("pandas", "jax")):
                t0 = time.perf_counter()
                if side == "jax":
                    ours = np.asarray(stats.bootstrap_correlations(key, caps, targets, n_boot=args.n_boot).block_until_ready())
                else:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # scipy warns on resamples where a column is constant (NaN on both sides)
                        ref.extend(pandas_resample(caps_df, targets_df, rows) for rows in idx[chunk])
                times[side].append((time.perf_counter() - t0) / (args.n_boot if side == "jax" else len(chunk)))
    ref = np.stack(ref)
    speedup = ratio(times["pandas"], times["jax"])
    diff = float(np.nanmax(np.abs(ref - ours[: args.n_loop])))
    nan_mismatch = int(np.sum(np.isnan(ref) != np.isnan(ours[: args.n_loop])))

    per_k = {"jaxsafe (jit+vmap)": 1000 * float(np.median(times["jax"])),
             "pandas/numpy loop": 1000 * float(np.median(times["pandas"]))}
    print(f"bootstrap of the {args.kind}-model table: {len(caps_df)} models x {targets_df.shape[1]} columns, "
          f"{jax.devices()[0].platform}, {platform.processor() or platform.machine()}")
    print(f"{'implementation':<22} {'resamples':>9} {'s / 1000 resamples':>19}")
    print(f"{'jaxsafe (jit+vmap)':<22} {args.n_boot:>9} {per_k['jaxsafe (jit+vmap)']:>19.3f}   "
          f"(+{compile_s - per_k['jaxsafe (jit+vmap)'] * args.n_boot / 1000:.1f} s compile)")
    print(f"{'pandas/numpy loop':<22} {args.n_loop:>9} {per_k['pandas/numpy loop']:>19.3f}")
    print(f"speed-up {format_ratio(speedup)} (median of {args.rounds} interleaved rounds, min–max); "
          f"max |difference| of {args.n_loop} x {targets_df.shape[1]} resampled correlations: {diff:.2e} "
          f"(NaN pattern mismatches: {nan_mismatch})")
    write_results(
        args.out,
        {
            "kind": args.kind,
            "n_models": len(caps_df),
            "n_columns": targets_df.shape[1],
            "device": jax.devices()[0].platform,
            "seconds_per_1000_resamples": per_k,
            "speedup": speedup,
            "jax_compile_seconds": compile_s - per_k["jaxsafe (jit+vmap)"] * args.n_boot / 1000,
            "n_boot_jax": args.n_boot,
            "n_boot_pandas": args.n_loop,
            "rounds": args.rounds,
            "max_abs_difference": diff,
            "nan_pattern_mismatches": nan_mismatch,
            "command": f"python benchmarks/safetywashing.py --kind {args.kind} --n-boot {args.n_boot} --n-loop {args.n_loop} --rounds {args.rounds}",
        },
        monitor, allow_load=args.allow_load,
    )


if __name__ == "__main__":
    main()
