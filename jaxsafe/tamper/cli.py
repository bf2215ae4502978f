"""``jaxsafe tamper tar`` and ``jaxsafe attack`` (a red-team suite, or a worst-case search).

Imports are lazy: ``jaxsafe --help`` does not load JAX. Everything that can be checked
without loading a model is checked first (arguments, config, the toy world's files, the
output folder). A TAR run is built in a hidden sibling of ``--out`` and renamed into
place when complete (:class:`jaxsafe.io.StagedDir`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxsafe.cli import add_run_arguments, enable_compilation_cache, nonnegative_int, positive_int
from jaxsafe.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("tamper", help="tamper-resistant safeguards (TAR, Tamirisa et al. 2024)")
    methods = p.add_subparsers(dest="method", metavar="METHOD", required=True)
    t = methods.add_parser("tar", help="random mapping, then TAR's adversarial meta-learning; evaluate and red-team")
    add_run_arguments(t, config_help="YAML config, e.g. configs/tar/toyworld.yaml",
                      out_help="run directory: model/, results.json, runs of each stage",
                      overrides_help="config overrides, e.g. steps=20 adversary.num=2")
    t.set_defaults(func=run_tar)

    a = subparsers.add_parser("attack", help="fine-tuning and activation attacks on a model: a suite, or a worst-case search")
    a.add_argument("--model", type=Path, required=True, help="Hugging Face model directory to attack")
    a.add_argument("--world", type=Path, default=None,
                   help="toy world with the attack corpora and questions (default: the model folder's parent, "
                        "when it is one)")
    a.add_argument("--suite", type=Path, default=None, help="suite YAML, e.g. configs/attacks/redteam.yaml")
    a.add_argument("--out", type=Path, default=None, help="output folder (default: MODEL/../attacks or ../search)")
    a.add_argument("--budget", type=positive_int, default=64, help="search: number of sampled attacks")
    a.add_argument("--lanes", type=positive_int, default=8, help="search: attacks per vmapped batch")
    a.add_argument("--steps", default="50,100,200", help="search: attack lengths to sample from (comma-separated)")
    a.add_argument("--epsilon", type=float, default=None,
                   help="largest benign-accuracy drop in points for an admissible attack (default: the suite's, or 10)")
    a.add_argument("--questions", type=nonnegative_int, default=0, help="questions per evaluation set (0 = all)")
    a.add_argument("--format", choices=("cloze", "letter"), default="cloze", help="question scoring format")
    a.add_argument("--sequential", action="store_true", help="run attacks one at a time instead of vmapped (for timing)")
    a.add_argument("--refusal", default=None, metavar="TEXT",
                   help="also score the fraction of prompts whose answer is more likely than TEXT (TAR's refusal "
                        "variant: answered_E, answered_A, answered_benign), e.g. 'I cannot help with that.'; "
                        "search: maximize answered_E, with harmful completions among the data streams")
    a.add_argument("--seed", type=nonnegative_int, default=0, help="search: sampling seed")
    a.add_argument("overrides", nargs="*", metavar="[search] key=value",
                   help="'search' first: sample --budget attacks and report the worst case (otherwise: run --suite); "
                        "then suite overrides for every attack, e.g. steps=50")
    a.set_defaults(func=run_attack)


def run_tar(args: argparse.Namespace) -> int:
    from jaxsafe.config import load_config
    from jaxsafe.io import StagedDir, check_input_file, check_output_dir
    from jaxsafe.tamper.config import TARConfig, resolve_world

    cfg = load_config(TARConfig, args.config, args.overrides)
    check_output_dir(args.out)
    cfg = resolve_world(cfg)
    if cfg.needs_forget:
        check_input_file(cfg.forget, "forget")
    check_input_file(cfg.retain, "retain")
    if cfg.suite:
        check_input_file(cfg.suite, "suite")
    if cfg.tr_loss == "dpo":  # the preference pairs are read (and checked) before anything is staged
        from jaxsafe.tamper.pipeline import preference_pairs

        if cfg.preferences:
            check_input_file(cfg.preferences, "preferences")
        preference_pairs(cfg)
    stage = StagedDir(args.out, cfg, resume=args.resume, overwrite=args.overwrite, what="run")
    if stage.done:
        print(f"{args.out} is already complete (same config): {args.out / 'results.json'}")
        return 0
    from jaxsafe.tamper.pipeline import tar_and_evaluate

    enable_compilation_cache()
    tar_and_evaluate(cfg, stage.start(), resume=stage.resuming)
    stage.commit()
    print(f"wrote {args.out / 'results.json'} and {args.out / 'model'}")
    return 0


def _world_for(model: Path, world: Path | None) -> Path:
    if world is not None:
        return world
    parent = model.resolve().parent
    if (parent / "corpora").is_dir() and (parent / "mcq").is_dir():
        return parent
    raise UserError(f"{model} is not inside a toy world; pass --world (the folder with corpora/ and mcq/)")


def run_attack(args: argparse.Namespace) -> int:
    from jaxsafe.tamper.config import world_files

    args.action = "suite"
    if args.overrides and args.overrides[0] in ("suite", "search"):
        args.action = args.overrides.pop(0)
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise UserError(f"attack: {bad[0]!r} is neither 'search' nor a key=value override")

    if not (args.model / "config.json").is_file():
        raise UserError(f"{args.model} is not a Hugging Face model directory (no config.json)")
    world = _world_for(args.model, args.world)
    world_files(world)  # checked before anything heavy loads
    if args.refusal is not None and not args.refusal.strip():
        raise UserError("--refusal needs a non-empty text (the refusal, e.g. 'I cannot help with that.')")
    if args.epsilon is not None and not args.epsilon >= 0:
        raise UserError(f"--epsilon must be a number of points >= 0, got {args.epsilon}")
    from jaxsafe.io import check_output_dir

    out = check_output_dir(args.out or args.model.resolve().parent / ("search" if args.action == "search" else "attacks"))
    if args.action == "suite":
        if args.suite is None:
            raise UserError("attack: --suite FILE is needed (e.g. configs/attacks/redteam.yaml)")
        from jaxsafe.tamper.attacks import load_suite

        suite = load_suite(args.suite, args.overrides)
        if args.epsilon is not None:
            import dataclasses

            suite = dataclasses.replace(suite, epsilon=args.epsilon)
        from jaxsafe.tamper.pipeline import attack_model, load

        enable_compilation_cache()  # the full suite compiles 17 programs; a model of the same shapes reuses them
        model, tokenizer = load(args.model)
        attack_model(model, tokenizer, suite, world, out, fmt=args.format, limit=args.questions,
                     vmap=not args.sequential, refusal=args.refusal)
        print(f"wrote {out}/attacks.json, summary.json, curves.png")
        return 0
    if args.overrides:
        raise UserError("attack search takes no key=value overrides")
    try:
        steps = tuple(int(x) for x in args.steps.split(","))
    except ValueError:
        raise UserError(f"--steps must be comma-separated integers, got {args.steps!r}") from None
    if not steps or min(steps) < 1:
        raise UserError("--steps must be positive")
    from jaxsafe.tamper.pipeline import load, search

    enable_compilation_cache()
    model, tokenizer = load(args.model)
    search(model, tokenizer, world, out, budget=args.budget, lanes=args.lanes,
           epsilon=10.0 if args.epsilon is None else args.epsilon, seed=args.seed, fmt=args.format,
           limit=args.questions, steps=steps, refusal=args.refusal)
    print(f"wrote {out}/search.json" + (f" and {out}/best.yaml" if (out / "best.yaml").is_file() else ""))
    return 0
