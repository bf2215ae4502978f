"""``jaxsafe unlearn rmu``: evaluate, unlearn with RMU, evaluate again, save the model.

Everything that can be checked without loading the model is checked first (config
types and ranges, the toy world's files, ``layer`` against the checkpoint's
``config.json``, the output folder). The run is built in a hidden sibling of
``--out`` and renamed into place when complete (:class:`jaxsafe.io.StagedDir`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from jaxsafe.cli import add_run_arguments, enable_compilation_cache
from jaxsafe.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("unlearn", help="remove hazardous knowledge from a model (RMU)")
    methods = p.add_subparsers(dest="method", metavar="METHOD", required=True)
    r = methods.add_parser("rmu", help="representation misdirection for unlearning (Li et al. 2024)")
    add_run_arguments(r, config_help="YAML config, e.g. configs/rmu/toyworld.yaml (without one: built-in defaults plus the overrides)",
                      out_help="run directory: metrics, checkpoints, model/, results.json",
                      overrides_help="config overrides, e.g. steps=20 alpha=50")
    r.set_defaults(func=run_rmu)


def check_layers(cfg) -> None:
    """``layer`` (and the ``update`` selector's layers) within a local checkpoint's ``num_hidden_layers``."""
    import re

    config_json = Path(cfg.model) / "config.json"
    if not config_json.is_file():
        return  # a hub name: checked once the model is loaded
    try:
        n_layers = int(json.loads(config_json.read_text())["num_hidden_layers"])
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise UserError(f"{config_json}: cannot read num_hidden_layers ({type(e).__name__})") from None
    if not 0 <= cfg.layer < n_layers:
        raise UserError(f"layer {cfg.layer} is outside the model {cfg.model} ({n_layers} layers: 0-{n_layers - 1}); "
                        f"set layer= (and update=) for this model")
    for lo, hi in re.findall(r"layers\.(\d+)(?:-(\d+))?", cfg.update_selector()):
        if int(hi or lo) >= n_layers:
            raise UserError(f"update {cfg.update_selector()!r} names layer {int(hi or lo)}, outside the model {cfg.model} "
                            f"({n_layers} layers: 0-{n_layers - 1})")


def run_rmu(args: argparse.Namespace) -> int:
    from jaxsafe.config import load_config
    from jaxsafe.io import StagedDir
    from jaxsafe.unlearn.config import RMUConfig
    from jaxsafe.unlearn.world import resolve_world

    cfg = load_config(RMUConfig, args.config, args.overrides)
    if not cfg.model and not cfg.world:
        raise UserError("no model: set 'model' (a Hugging Face directory or hub name) or 'world' (a toy-world folder)")
    cfg = resolve_world(cfg)
    check_layers(cfg)
    stage = StagedDir(args.out, cfg, resume=args.resume, overwrite=args.overwrite, what="run")
    if stage.done:
        print(f"{args.out} is already complete (same config); its results:")
        _print_table(json.loads((stage.out / "results.json").read_text()))
        return 0

    from jaxsafe.unlearn.pipeline import unlearn_and_evaluate

    t0 = time.perf_counter()
    enable_compilation_cache()
    results = unlearn_and_evaluate(cfg, stage.start(), resume=stage.resuming)
    stage.commit()
    _print_table(results)
    print(f"results in {args.out / 'results.json'}; model in {args.out / 'model'} ({time.perf_counter() - t0:.0f} s)")
    return 0


def _print_table(results: dict) -> None:
    print(f"{'set':<16}{'before':>9}{'after':>9}")
    for name in results["before"]:
        print(f"{name:<16}{results['before'][name]:>9.3f}{results['after'][name]:>9.3f}")
