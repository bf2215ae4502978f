"""``jaxsafe toyworld build``: the synthetic knowledge world, its corpora and question sets, and the base/control models.

The world is built in a hidden sibling of ``--out`` (``.NAME.partial``) and renamed
into place when complete (:class:`jaxsafe.io.StagedDir`): a failing or killed build
leaves what was at ``--out`` untouched, and ``--resume`` finishes it.
"""

from __future__ import annotations

import argparse
import json

from jaxsafe.cli import add_run_arguments, enable_compilation_cache


def register(subparsers) -> None:
    p = subparsers.add_parser("toyworld", help="the toy knowledge world for unlearning and tamper-resistance experiments")
    sub = p.add_subparsers(dest="toyworld_command", metavar="ACTION", parser_class=type(p))
    sub.required = True
    b = sub.add_parser("build", help="generate the world, its files and the base/control models; print their accuracies")
    add_run_arguments(b, config_help="YAML build config (default: built-in, = configs/toyworld/default.yaml)",
                      out_help="output folder (layout: see docs/toyworld.md)",
                      overrides_help="config overrides, e.g. train.steps=100")
    b.add_argument("--seed", type=int, default=None, help="world and training seed (default: the config's, 0)")
    b.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    from jaxsafe.config import load_config
    from jaxsafe.io import StagedDir
    from jaxsafe.toyworld.config import BuildConfig

    overrides = list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])
    cfg = load_config(BuildConfig, args.config, overrides)
    stage = StagedDir(args.out, cfg, resume=args.resume, overwrite=args.overwrite, what="toy world")

    from jaxsafe.toyworld.build import build, format_table

    if stage.done:
        print(f"{args.out} is already complete (same config); its results:")
        print(format_table(json.loads((stage.out / "results.json").read_text())))
        return 0
    enable_compilation_cache()
    build(stage.start(), cfg, resume=stage.resuming)
    stage.commit()
    print(f"toy world in {args.out}")
    return 0
