"""``jaxsafe toyworld build``: the synthetic knowledge world, its corpora and question sets, and the base/control models."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("toyworld", help="the toy knowledge world for unlearning and tamper-resistance experiments")
    sub = p.add_subparsers(dest="toyworld_command", metavar="ACTION", parser_class=type(p))
    sub.required = True
    b = sub.add_parser("build", help="generate the world, its files and the base/control models; print their accuracies")
    b.add_argument("--out", type=Path, required=True, help="output folder (layout: see docs/toyworld.md)")
    b.add_argument("--seed", type=int, default=None, help="world and training seed (default: the config's, 0)")
    b.add_argument("--config", type=Path, default=None, help="YAML build config (default: built-in, = configs/toyworld/default.yaml)")
    b.add_argument("--resume", action="store_true", help="continue interrupted training runs under OUT/runs")
    b.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.steps=100")
    b.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    from jaxsafe.config import load_config
    from jaxsafe.toyworld.build import BuildConfig, build

    overrides = list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])
    cfg = load_config(BuildConfig, args.config, overrides)
    build(args.out, cfg, resume=args.resume)
    return 0
