"""``jaxsafe unlearn rmu``: evaluate, unlearn with RMU, evaluate again, save the model."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from jaxsafe.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("unlearn", help="remove hazardous knowledge from a model (RMU)")
    methods = p.add_subparsers(dest="method", metavar="METHOD", required=True)
    r = methods.add_parser("rmu", help="representation misdirection for unlearning (Li et al. 2024)")
    r.add_argument("--config", type=Path, default=None, help="YAML config, e.g. configs/rmu/toyworld.yaml (without one: built-in defaults plus the overrides)")
    r.add_argument("--out", type=Path, required=True, help="run directory: metrics, checkpoints, model/, results.json")
    r.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    r.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. steps=20 alpha=50")
    r.set_defaults(func=run_rmu)


def run_rmu(args: argparse.Namespace) -> int:
    from jaxsafe.config import load_config
    from jaxsafe.unlearn.config import RMUConfig
    from jaxsafe.unlearn.pipeline import unlearn_and_evaluate

    cfg = load_config(RMUConfig, args.config, args.overrides)
    if not cfg.model and not cfg.world:
        raise UserError("no model: set 'model' (a Hugging Face directory or hub name) or 'world' (a toy-world folder)")
    t0 = time.perf_counter()
    results = unlearn_and_evaluate(cfg, args.out, resume=args.resume)
    print(f"{'set':<16}{'before':>9}{'after':>9}")
    for name in results["before"]:
        print(f"{name:<16}{results['before'][name]:>9.3f}{results['after'][name]:>9.3f}")
    print(f"results in {args.out / 'results.json'}; model in {args.out / 'model'} ({time.perf_counter() - t0:.0f} s)")
    return 0
