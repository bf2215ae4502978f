"""``jaxsafe demo``: a short tour of every capability on small embedded defaults.

Each capability adds one entry ``(name, "module:function")`` to :data:`DEMO_STEPS`;
the function takes the output folder and prints a few lines. Nothing here reads
the network or files outside the package.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import time
from pathlib import Path

from jaxsafe.errors import UserError

DEMO_STEPS: tuple[tuple[str, str], ...] = (
    ("foundation", "jaxsafe.demo:foundation_demo"),
    ("lm", "jaxsafe.lm.demo:demo"),
    ("safetywashing", "jaxsafe.safetywashing.cli:demo"),
    ("graphs", "jaxsafe.graphs.cli:demo"),
    ("optim", "jaxsafe.optim.demo:demo"),
    ("toyworld", "jaxsafe.toyworld.build:demo"),
    ("rmu", "jaxsafe.unlearn.demo:demo"),
    ("tar", "jaxsafe.tamper.demo:demo"),
)


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="a short tour of every capability on small built-in examples")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for the demo's outputs (default: demo_out)")
    p.add_argument("--only", default=None, help="comma-separated step names to run: " + ", ".join(n for n, _ in DEMO_STEPS))
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    names = [n for n, _ in DEMO_STEPS]
    chosen = names if not args.only else [s.strip() for s in args.only.split(",")]
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise UserError(f"unknown demo step '{unknown[0]}' (steps: {', '.join(names)})")
    from jaxsafe.io import check_output_dir

    check_output_dir(args.out, "--out")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, target in DEMO_STEPS:
        if name not in chosen:
            continue
        module, func = target.split(":")
        print(f"== {name} ==", flush=True)
        shutil.rmtree(args.out / name, ignore_errors=True)  # the demo's own folder: each run starts afresh
        t0 = time.perf_counter()
        getattr(importlib.import_module(module), func)(args.out / name)
        print(f"   ({time.perf_counter() - t0:.1f} s)\n", flush=True)
    print(f"demo outputs in {args.out.resolve()}")
    return 0


def foundation_demo(out_dir: Path) -> None:
    """Train a least-squares model with the shared loop, kill it halfway (simulated), resume it."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxsafe.parallel import make_mesh
    from jaxsafe.runs import RunDir, train_loop

    mesh = make_mesh()
    print(f"   devices: {jax.device_count()} ({jax.default_backend()}); mesh {dict(mesh.shape)}")
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((64, 8)), rng.standard_normal(64)

    @jax.jit
    def step(w, batch):
        xa, xb = batch
        loss, g = jax.value_and_grad(lambda w: jnp.mean((xa @ w - xb) ** 2))(w)
        return w - 0.05 * g, {"loss": loss}

    def batch_fn(k):
        idx = np.random.default_rng(k).choice(64, 16, replace=False)
        return a[idx], b[idx]

    half = train_loop(RunDir(out_dir / "full"), jnp.zeros(8), step, batch_fn, 40, checkpoint_every=10)
    train_loop(RunDir(out_dir / "resumed"), jnp.zeros(8), step, batch_fn, 20, checkpoint_every=10)
    resumed = train_loop(RunDir(out_dir / "resumed", resume=True), jnp.zeros(8), step, batch_fn, 40, checkpoint_every=10)
    print(f"   40 steps straight vs 20 + resume 20: max |Δw| = {float(jnp.max(jnp.abs(half - resumed))):.1e}")
    print(f"   final loss {RunDir(out_dir / 'full', resume=True).metrics()[-1]['loss']:.4f}; run dir {out_dir / 'full'}")
