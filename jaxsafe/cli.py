"""The ``jaxsafe`` command.

Each capability registers its own subcommands from its own module (listed in
:data:`COMMAND_MODULES`): the module exposes ``register(subparsers)``, which adds a
parser and ``set_defaults(func=...)``; ``func(args)`` returns the exit code.
User errors (:class:`~jaxsafe.errors.UserError`, missing files, bad arguments)
print one line on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Sequence

from jaxsafe.errors import UserError

COMMAND_MODULES: tuple[str, ...] = (
    "jaxsafe.demo",
    "jaxsafe.evals.cli",
    "jaxsafe.toyworld.cli",
    "jaxsafe.unlearn.cli",
    "jaxsafe.safetywashing.cli",
    "jaxsafe.lm.cli",
    "jaxsafe.graphs.cli",
    "jaxsafe.tamper.cli",
    "jaxsafe.plan",
)


def _bounded_int(lo: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
        return value

    parse.__name__ = f"integer >= {lo}"
    return parse


#: argparse ``type=`` for counts that must be positive (``--parts``, ``--batch-size``, ``--limit``).
positive_int = _bounded_int(1, "at least 1")
#: argparse ``type=`` for counts that may be zero (``--bootstrap``, ``--show``) and seeds.
nonnegative_int = _bounded_int(0, "at least 0")


def open_unit_interval(text: str) -> float:
    """argparse ``type=`` for a level or fraction strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {value:g}")
    return value


def add_run_arguments(p: argparse.ArgumentParser, *, config_help: str, out_help: str, overrides_help: str,
                      overwrite: bool = True) -> None:
    """The arguments of every command that runs a configured job into a run directory.

    ``--config`` (a YAML file for :func:`jaxsafe.config.load_config`), ``--out``, ``--resume``,
    ``--overwrite`` (when the command stages its output with :class:`jaxsafe.io.StagedDir`)
    and trailing ``key=value`` overrides, with one wording across commands.
    """
    p.add_argument("--config", type=Path, default=None, help=config_help)
    p.add_argument("--out", type=Path, required=True, help=out_help)
    p.add_argument("--resume", action="store_true", help="finish an interrupted run of --out from its checkpoints")
    if overwrite:
        p.add_argument("--overwrite", action="store_true",
                       help="replace a finished run in --out; the old one stays until the new one is complete")
    p.add_argument("overrides", nargs="*", metavar="key=value", help=overrides_help)


def enable_compilation_cache() -> Path:
    """Keep this command's XLA compilations for its later invocations; returns the cache root.

    TAR runs, red-team suites and graph partitions compile programs that take seconds each; a
    later run with the same shapes loads them from ``~/.cache/jaxsafe/xla`` instead. This is a
    setting of the command line's own process: the library sets none. A cache folder that the
    user chose (``JAX_COMPILATION_CACHE_DIR``) is kept.
    """
    import jax

    root = Path.home() / ".cache" / "jaxsafe"
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(root / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return root


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line rather than usage text plus a line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from jaxsafe import __version__

    parser = _Parser(prog="jaxsafe", description="Fast, tested JAX reimplementations of AI-safety and graph-partitioning research systems.")
    parser.add_argument("--version", action="version", version=f"jaxsafe {__version__}")
    dist = parser.add_argument_group("multi-process runs (every process runs the same command; "
                                     "SLURM and Cloud TPU are detected without these)")
    dist.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0's coordinator")
    dist.add_argument("--num-processes", type=positive_int, metavar="N", help="how many processes the job has")
    dist.add_argument("--process-id", type=nonnegative_int, metavar="I", help="this process's rank, 0 .. N-1")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        _start_processes(args)
        return int(args.func(args) or 0)
    except UserError as e:
        _one_line(str(e))
    except FileNotFoundError as e:
        _one_line(f"file not found: {e.filename or e}")
    except PermissionError as e:
        _one_line(f"permission denied: {e.filename or e}")
    except OSError as e:
        if e.filename is None:  # not about a path the user gave: a bug or the system, keep the traceback
            raise
        _one_line(f"{e.strerror or type(e).__name__}: {e.filename}")
    except KeyboardInterrupt:
        print("jaxsafe: interrupted", file=sys.stderr)
        return 130
    return 2


def _start_processes(args: argparse.Namespace) -> None:
    """Join a multi-process job when asked to (flags) or when a cluster launcher set one up."""
    import os

    flags = (args.coordinator, args.num_processes, args.process_id)
    if any(f is not None for f in flags) and any(f is None for f in flags):
        raise UserError("--coordinator, --num-processes and --process-id go together")
    if args.num_processes is not None and args.process_id >= args.num_processes:
        raise UserError(f"--process-id {args.process_id} must be below --num-processes {args.num_processes}")
    if args.coordinator is None and not (os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("SLURM_JOB_ID")
                                         or os.environ.get("TPU_WORKER_HOSTNAMES")):
        return  # a one-process job: JAX is not even imported here
    from jaxsafe.parallel import initialize_distributed

    initialize_distributed(args.coordinator, args.num_processes, args.process_id)


def _one_line(message: str) -> None:
    """The error contract: exactly one line on stderr (a message with newlines is joined)."""
    text = "; ".join(line.strip() for line in message.strip().splitlines() if line.strip())
    print(f"jaxsafe: error: {text}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
