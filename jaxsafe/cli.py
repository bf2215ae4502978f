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
        _one_line(str(e))
    except FileNotFoundError as e:
        _one_line(f"file not found: {e.filename or e}")
    except PermissionError as e:
        _one_line(f"permission denied: {e.filename or e}")
    except (IsADirectoryError, NotADirectoryError) as e:
        _one_line(f"{e.strerror}: {e.filename or e}")
    except KeyboardInterrupt:
        print("jaxsafe: interrupted", file=sys.stderr)
        return 130
    return 2


def _one_line(message: str) -> None:
    """The error contract: exactly one line on stderr (a message with newlines is joined)."""
    text = "; ".join(line.strip() for line in message.strip().splitlines() if line.strip())
    print(f"jaxsafe: error: {text}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
