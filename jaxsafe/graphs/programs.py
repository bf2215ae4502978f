"""Jitted functions whose traced programs are kept on disk with ``jax.export``.

A fresh process that calls a jitted function first traces and lowers it, and only
then can the persistent compilation cache be asked for the compiled code. For the
GNN's per-level functions and the RL rollouts that was most of a warm
``jaxsafe partition`` (docs/graphs.md, "Command-line latency"). A :class:`Program`
whose directory is set (:func:`set_directory`; only the CLI sets one) exports each
new input signature once (``jax.export``: StableHLO in a flatbuffer, nothing
pickled), stores it there, and in later processes deserializes it instead of
tracing; the persistent compilation cache then serves the compiled code. Without a
directory a :class:`Program` is exactly ``jax.jit``.

A stored program is found by a digest of: the program's name and static arguments,
the input signature (pytree structure, shapes, dtypes), the source of
``jaxsafe/graphs``, and the jax, jaxlib and flax versions and the backend, so an
edit of the code or an upgrade never runs a stale program. An unreadable file is
exported again.
"""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import jax

from jaxsafe.errors import UserError
from jaxsafe.io import atomic_write_bytes

_directory: Path | None = None
#: In this process: programs traced and exported, loaded from disk, and run as plain ``jax.jit``
#: although a directory was set (their outputs cannot be serialized, or flatbuffers is missing).
counts = {"exported": 0, "loaded": 0, "plain": 0}


def set_directory(path: str | Path | None) -> None:
    """Keep exported programs under ``path`` (``None``: do not, the default)."""
    global _directory
    _directory = None if path is None else Path(path)


def directory() -> Path | None:
    return _directory


@functools.cache
def _environment() -> str:
    """Everything besides the arguments that decides what a traced program is."""
    import flax
    import jaxlib

    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    device = jax.devices()[0]
    return (f"jax {jax.__version__} jaxlib {jaxlib.__version__} flax {flax.__version__} "
            f"{device.platform} {device.device_kind} {digest.hexdigest()}")


def describe(value: Any) -> str:
    """``repr`` without memory addresses (an NNX GraphDef names functions ``at 0x...``)."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))


class Program:
    """``jax.jit(fun, static_argnums=...)``, with its traced programs kept on disk when a directory is set.

    ``name`` names the files (one per input signature); ``salt`` is anything else
    the traced program depends on that the arguments do not show (e.g. the module
    structure a function closes over). Outputs must be arrays or tuples, lists and
    dicts of them (what ``jax.export`` serializes); otherwise the program runs as
    plain ``jax.jit``.
    """

    def __init__(self, fun: Callable, name: str, *, static_argnums: Sequence[int] = (), salt: str = ""):
        self.fun, self.name, self.salt = fun, name, salt
        self.static_argnums = tuple(static_argnums)
        self.jitted = jax.jit(fun, static_argnums=self.static_argnums)
        self._loaded: dict = {}  # (statics, treedef, avals) -> callable on the flat arguments

    def __call__(self, *args):
        if _directory is None:
            return self.jitted(*args)
        statics = tuple(args[i] for i in self.static_argnums)
        dynamic = [a for i, a in enumerate(args) if i not in self.static_argnums]
        leaves, treedef = jax.tree.flatten(dynamic)
        key = (statics, treedef, tuple(jax.typeof(x) for x in leaves))
        call = self._loaded.get(key)
        if call is None:
            call = self._loaded[key] = self._load_or_export(statics, treedef, leaves, key[2])
        return call(*leaves)

    def _load_or_export(self, statics: tuple, treedef, leaves: list, avals: tuple) -> Callable:
        signature = "\n".join([self.name, self.salt, describe(statics), str(treedef),
                               " ".join(str(a) for a in avals), _environment()])
        path = _directory / f"{self.name}-{hashlib.sha256(signature.encode()).hexdigest()[:40]}.jaxexport"
        try:
            exported = jax.export.deserialize(bytearray(path.read_bytes()))
            counts["loaded"] += 1
        except Exception:  # missing, truncated, or written by another version: export anew
            exported = self._export(statics, treedef, leaves, path)
            if exported is None:
                return self._plain(statics, treedef)
        return jax.jit(exported.call)

    def _export(self, statics: tuple, treedef, leaves: list, path: Path):
        def flat(*xs):
            return self.fun(*_merge(self.static_argnums, statics, treedef.unflatten(xs)))

        try:
            exported = jax.export.export(jax.jit(flat))(*leaves)
            blob = exported.serialize()
        except (TypeError, ValueError, NotImplementedError, ImportError):
            return None  # an output pytree export cannot serialize, or no flatbuffers package: plain jit
        counts["exported"] += 1
        try:
            atomic_write_bytes(path, bytes(blob))
        except UserError:  # an unwritable cache directory costs speed, not the answer
            pass
        return exported

    def _plain(self, statics: tuple, treedef) -> Callable:
        counts["plain"] += 1
        return lambda *xs: self.jitted(*_merge(self.static_argnums, statics, treedef.unflatten(xs)))


def _merge(static_argnums: tuple, statics: tuple, dynamic: list) -> list:
    """The positional arguments from the static ones and the others."""
    args, rest, fixed = [], iter(dynamic), dict(zip(static_argnums, statics))
    for i in range(len(static_argnums) + len(dynamic)):
        args.append(fixed[i] if i in fixed else next(rest))
    return args
