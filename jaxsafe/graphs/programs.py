"""Jitted functions whose compiled executables are kept on disk.

A fresh process that calls a jitted function traces and lowers it, and only then
can the persistent compilation cache be asked for the compiled code (hashing the
lowered module for the key, then deserializing the executable). For the GNN's
per-level functions and the RL rollouts that was most of a warm ``jaxsafe
partition`` (docs/graphs.md, "Command-line latency"). A :class:`Program` whose
directory is set (:func:`set_directory`; only the CLI sets one) compiles each new
input signature once (with XLA's client, past jax's compilation cache: see
:meth:`Program._compile`), stores XLA's own serialization of the executable
(``Client.serialize_executable``, the format of jax's compilation cache too;
nothing pickled) with its output tree structure (a pytree protocol buffer), and
in later processes deserializes it and runs it on the flat arguments: no
tracing, lowering or cache key. Each program name also keeps the list of its
files the last process used (``NAME.recent``); at a program's first call a
background thread starts loading those (:func:`_prefetch`). Without a directory a
:class:`Program` is exactly ``jax.jit``.

A stored executable is found by a digest of: the program's name and static
arguments, the input signature (pytree structure, shapes, dtypes), the source
of ``jaxsafe/graphs``, the jax, jaxlib and flax versions, the backend and the
host's CPU features (XLA compiles for them), and ``XLA_FLAGS``, so an edit of the
code, an upgrade or another machine never runs a stale executable. An
unreadable file is compiled again. The directory is the user's own cache,
written only by this module (like ``~/.cache/jaxsafe/xla``, which jax loads the
same way); it is not a place for files from others.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import platform
import re
import struct
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
from jax.extend.backend import get_compile_options

from jaxsafe.errors import UserError
from jaxsafe.io import atomic_write_bytes

_directory: Path | None = None
#: In this process: programs compiled and stored, loaded from disk, and run as plain ``jax.jit``
#: although a directory was set (outputs that cannot be stored, see :class:`Program`).
counts = {"compiled": 0, "loaded": 0, "plain": 0}
_MAGIC = b"jaxsafe-executable-1\n"
_used: dict[str, list[str]] = {}  # program name -> its files used in this process, in order
_prefetched: dict[Path, Future] = {}
_loader: ThreadPoolExecutor | None = None


def set_directory(path: str | Path | None) -> None:
    """Keep compiled programs under ``path`` (``None``: do not, the default)."""
    global _directory
    _directory = None if path is None else Path(path)
    _used.clear()
    _prefetched.clear()


def _prefetch(name: str) -> None:
    """Start loading, in a background thread, the files the last process used for program ``name``.

    A warm CLI call on the same kind of graph needs the same executables: the thread
    deserializes them while the calling thread computes (XLA runs without the GIL), so the
    first call waits for fewer loads (idle, 10⁵ Delaunay vertices: ``rl`` 0.84 instead of
    1.01 s; ``gnn``, whose loads come between short computations, unchanged). A file the
    call does not need costs a background load, finished before the process exits.
    """
    global _loader
    try:
        names = (_directory / f"{name}.recent").read_text().split()
    except OSError:
        return
    if _loader is None:
        _loader = ThreadPoolExecutor(1, thread_name_prefix="jaxsafe-programs")
    for file in names:
        path = _directory / file
        if path not in _prefetched:
            _prefetched[path] = _loader.submit(_read, path)


@atexit.register
def _finish() -> None:
    """At exit: record each program's files of this process, if they changed, for the next one's prefetch."""
    for name, files in _used.items() if _directory is not None else ():
        index = _directory / f"{name}.recent"
        try:
            if not index.is_file() or index.read_text().split() != files:
                atomic_write_bytes(index, "\n".join(files).encode())
        except (OSError, UserError):  # an unwritable cache directory costs speed, not the answer
            pass


def directory() -> Path | None:
    return _directory


def _cpu_features() -> str:
    """The host CPU's feature flags (Linux), which XLA's CPU code is compiled for."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return ""


@functools.cache
def _environment() -> str:
    """Everything besides the arguments that decides what a compiled program is."""
    import flax
    import jaxlib

    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    device = jax.devices()[0]
    return "\n".join([f"jax {jax.__version__} jaxlib {jaxlib.__version__} flax {flax.__version__}",
                      f"{device.platform} {device.device_kind} {device.client.platform_version}",
                      platform.machine(), _cpu_features(), os.environ.get("XLA_FLAGS", ""), digest.hexdigest()])


def describe(value: Any) -> str:
    """``repr`` without memory addresses (an NNX GraphDef names functions ``at 0x...``)."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))


class Program:
    """``jax.jit(fun, static_argnums=...)``, with its executables kept on disk when a directory is set.

    ``name`` names the files (one per input signature); ``salt`` is anything else
    the program depends on that the arguments do not show (e.g. the module
    structure a function closes over). Outputs must be arrays, or tuples, lists,
    dicts and ``None`` around them, none weakly typed; otherwise the program runs
    as plain ``jax.jit``.
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
            call = self._loaded[key] = self._load_or_compile(statics, treedef, leaves, key[2])
        return call(*leaves)

    def prefetch(self) -> None:
        """Start loading the files the last process used (:func:`_prefetch`), once per process.

        The first call does it anyway; a caller that knows the program comes later (the RL
        rollouts, after the coarsening) starts it earlier, so more of the loading overlaps.
        """
        if _directory is not None and self.name not in _used:
            _used[self.name] = []
            _prefetch(self.name)

    def _load_or_compile(self, statics: tuple, treedef, leaves: list, avals: tuple) -> Callable:
        signature = "\n".join([self.name, self.salt, describe(statics), str(treedef),
                               " ".join(str(a) for a in avals), _environment()])
        path = _directory / f"{self.name}-{hashlib.sha256(signature.encode()).hexdigest()[:40]}.xla"
        self.prefetch()
        _used[self.name].append(path.name)
        try:
            future = _prefetched.pop(path, None)
            executable, out_tree = _read(path) if future is None else future.result()
            counts["loaded"] += 1
        except Exception:  # missing, truncated, or not ours: compile anew
            stored = self._compile(statics, treedef, leaves, path)
            if stored is None:
                return self._plain(statics, treedef)
            executable, out_tree = stored
        return functools.partial(_execute, executable, out_tree)

    def _compile(self, statics: tuple, treedef, leaves: list, path: Path):
        """Compile for ``leaves``' signature and store; ``None`` when the executable cannot stand alone."""
        def flat(*xs):
            return self.fun(*_merge(self.static_argnums, statics, treedef.unflatten(xs)))

        # keep_unused: the executable then takes every flat argument, in order
        traced = jax.jit(flat, keep_unused=True).trace(*leaves)
        lowered = traced.lower()
        outs = jax.tree.leaves(traced.out_avals)
        if any(o.weak_type for o in outs):  # the executable's outputs would lose the weak type
            return None
        try:
            tree = lowered.out_tree.serialize_using_proto()
        except ValueError:  # a user-defined pytree node (e.g. a NamedTuple) in the outputs
            return None
        # XLA itself, not jax's compile: an executable that jax loaded from its persistent cache
        # serializes without its compiled kernels ("Function ... not found" when run from the file)
        device = jax.devices()[0]
        try:
            executable = device.client.compile_and_load(lowered.as_text(), [device], get_compile_options(1, 1))
            if (len(executable.get_parameter_layouts()) != len(leaves)
                    or len(executable.get_output_layouts()) != len(outs)):
                return None
            serialized = device.client.serialize_executable(executable)
        except Exception:  # XLA's client API is not jax's public one: if this jaxlib's differs, plain jit
            return None
        counts["compiled"] += 1
        blob = _MAGIC + struct.pack("<Q", len(tree)) + tree + serialized
        try:
            atomic_write_bytes(path, blob)
        except UserError:  # an unwritable cache directory costs speed, not the answer
            pass
        return executable, lowered.out_tree

    def _plain(self, statics: tuple, treedef) -> Callable:
        counts["plain"] += 1
        return lambda *xs: self.jitted(*_merge(self.static_argnums, statics, treedef.unflatten(xs)))


def _read(path: Path):
    """``(executable, output tree)`` from a file written by :meth:`Program._compile`."""
    blob = path.read_bytes()
    if not blob.startswith(_MAGIC):
        raise ValueError(f"{path}: not a kept executable")
    start = len(_MAGIC) + 8
    (size,) = struct.unpack("<Q", blob[len(_MAGIC):start])
    out_tree = jax.tree_util.PyTreeDef.deserialize_using_proto(jax.tree_util.default_registry, blob[start:start + size])
    device = jax.devices()[0]
    return device.client.deserialize_executable(blob[start + size:], [device]), out_tree


def _execute(executable, out_tree, *leaves):
    """Run a loaded executable on the flat arguments (NumPy ones are placed on the device first)."""
    results = executable.execute_sharded(jax.device_put(list(leaves))).disassemble_into_single_device_arrays()
    return out_tree.unflatten([r[0] for r in results])


def _merge(static_argnums: tuple, statics: tuple, dynamic: list) -> list:
    """The positional arguments from the static ones and the others."""
    args, rest, fixed = [], iter(dynamic), dict(zip(static_argnums, statics))
    for i in range(len(static_argnums) + len(dynamic)):
        args.append(fixed[i] if i in fixed else next(rest))
    return args
