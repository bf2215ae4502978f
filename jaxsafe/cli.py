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
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line rather than usage text plus a line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from jaxsafe import __version__

    parser = _Parser(prog="jaxsafe", description="Fast, tested JAX reimplementations of AI-safety and graph-partitioning research systems.")
    parser.add_argument("--version", action="version", version=f"jaxsafe {__version__}")
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
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"jaxsafe: error: {e}", file=sys.stderr)
    except FileNotFoundError as e:
        print(f"jaxsafe: error: file not found: {e.filename or e}", file=sys.stderr)
    except PermissionError as e:
        print(f"jaxsafe: error: permission denied: {e.filename or e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("jaxsafe: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
