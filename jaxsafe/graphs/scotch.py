"""Scotch baseline (spec: "Scotch default strategy", optional) through the system library via ctypes.

Paper A compares against Scotch with its default strategy; so does this: an
empty strategy (``SCOTCH_stratInit`` and nothing else) handed to
``SCOTCH_graphPart``, which then uses Scotch's own default partitioning
strategy. Scotch is optional: on Debian/Ubuntu it is the ``libscotch-7.0``
package (runtime library only, the ``-dev`` package is not needed);
:func:`available` says whether it was found, and asking for the method without
it raises a :class:`~jaxsafe.errors.UserError` naming the package.

Interface as :func:`jaxsafe.graphs.baselines.metis_parts`: graph as symmetric
CSR, no vertex weights (so parts are balanced by vertex count, like METIS's
defaults), edge weights as integers by the shared rule of
:func:`~jaxsafe.graphs.baselines.integer_edge_weights`. ``SCOTCH_Num`` is 32 or
64 bits depending on the build; the width is read from the library
(``SCOTCH_numSizeof``) and the integer scale is lowered when needed so that
the total edge weight Scotch sums internally fits in it.

Paper B's ordering baseline uses the same library: :func:`scotch_order`
(``SCOTCH_graphOrder`` with its own empty, i.e. default, strategy object; the
spec warns not to share one strategy between partitioning and ordering).

Determinism and threads: Scotch 7 runs multithreaded by default, and its
default context gave a different partition on every call here even after
``SCOTCH_randomSeed`` and ``SCOTCH_randomReset`` (thread scheduling). Each call
therefore binds the graph to its own context with the
``SCOTCH_OPTIONNUMDETERMINISTIC`` option, ``SCOTCH_contextRandomSeed(seed)``
and one thread (``SCOTCH_contextThreadSpawn(ctx, 1)``), like METIS: the same
seed gives the same partition. These are context options, not strategy
changes, and they handicap nothing here — deterministic mode returned the
same partitions with one thread as with Scotch's default thread count, and one
thread was faster on this 2-core shared machine (Delaunay, median of 8 seeds:
0.043 s vs 0.098 s at n = 1e5, 0.52 s vs 0.80 s at 1e6; the nondeterministic
default took 0.108 s at 1e5 with NC 0.00399–0.00433 over seeds, median
0.00410, vs 0.00414–0.00417 deterministic).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import glob
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from jaxsafe.errors import UserError
from jaxsafe.graphs.baselines import INTEGER_WEIGHT_TOP, integer_edge_weights

DEBIAN_PACKAGE = "libscotch-7.0"
_OPTION_DETERMINISTIC = 0  # SCOTCH_OPTIONNUMDETERMINISTIC in scotch.h (7.0)
# Debian ships only the versioned soname (libscotch-7.0.so) in the runtime package; find_library
# looks for the unversioned libscotch.so, which comes with the -dev package.
_SONAME_GLOBS = ("/usr/lib/*/libscotch-[0-9]*.so", "/usr/lib64/libscotch-[0-9]*.so",
                 "/usr/lib/libscotch-[0-9]*.so", "/usr/local/lib/libscotch-[0-9]*.so")


class _Scotch(NamedTuple):
    lib: ctypes.CDLL
    num: type  # numpy integer type of SCOTCH_Num


def _candidates() -> list[str]:
    found = ctypes.util.find_library("scotch")
    return ([found] if found else []) + sorted(p for g in _SONAME_GLOBS for p in glob.glob(g))


@functools.lru_cache(maxsize=None)
def _library() -> _Scotch | None:
    """Load libscotch (7.x) once; None when no candidate loads."""
    err = ctypes.util.find_library("scotcherr")
    if err:
        # upstream builds leave SCOTCH_errorPrint to the application (Debian links libscotcherr in)
        ctypes.CDLL(err, mode=ctypes.RTLD_GLOBAL)
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
            return _Scotch(lib, _declare(lib))
        except (OSError, AttributeError):  # not loadable, or not Scotch 7 (Scotch 6 has no contexts)
            continue
    return None


def _declare(lib: ctypes.CDLL) -> type:
    """Set the prototypes of the functions used (scotch.h, Scotch 7.0); return SCOTCH_Num's numpy type."""
    lib.SCOTCH_numSizeof.restype = ctypes.c_int
    size = lib.SCOTCH_numSizeof()
    num, c_num = {4: (np.int32, ctypes.c_int32), 8: (np.int64, ctypes.c_int64)}[size]
    ptr = ctypes.c_void_p
    for name, restype, argtypes in (
        ("SCOTCH_graphAlloc", ptr, []),
        ("SCOTCH_graphInit", ctypes.c_int, [ptr]),
        ("SCOTCH_graphExit", None, [ptr]),
        ("SCOTCH_graphBuild", ctypes.c_int, [ptr, c_num, c_num, ptr, ptr, ptr, ptr, c_num, ptr, ptr]),
        ("SCOTCH_graphPart", ctypes.c_int, [ptr, c_num, ptr, ptr]),
        ("SCOTCH_graphOrder", ctypes.c_int, [ptr, ptr, ptr, ptr, ptr, ptr, ptr]),
        ("SCOTCH_stratAlloc", ptr, []),
        ("SCOTCH_stratInit", ctypes.c_int, [ptr]),
        ("SCOTCH_stratExit", None, [ptr]),
        ("SCOTCH_memFree", None, [ptr]),
        ("SCOTCH_contextAlloc", ptr, []),
        ("SCOTCH_contextInit", ctypes.c_int, [ptr]),
        ("SCOTCH_contextExit", None, [ptr]),
        ("SCOTCH_contextOptionSetNum", ctypes.c_int, [ptr, ctypes.c_int, c_num]),
        ("SCOTCH_contextRandomSeed", None, [ptr, c_num]),
        ("SCOTCH_contextBindGraph", ctypes.c_int, [ptr, ptr, ptr]),
        ("SCOTCH_contextThreadSpawn", ctypes.c_int, [ptr, ctypes.c_int, ptr]),
    ):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return num


def available() -> bool:
    """Whether the Scotch library was found and loads."""
    return _library() is not None


def _require() -> _Scotch:
    scotch = _library()
    if scotch is None:
        raise UserError(f"method 'scotch' needs the Scotch 7 library, which was not found "
                        f"(Debian/Ubuntu: apt-get install {DEBIAN_PACKAGE})")
    return scotch


@contextlib.contextmanager
def _bound_graph(scotch: _Scotch, verttab: np.ndarray, edgetab: np.ndarray, edlotab: np.ndarray | None, seed: int):
    """Yield ``(bound graph, empty strategy)``: the CSR graph bound to a deterministic one-thread context.

    ``SCOTCH_graphBuild`` keeps pointers to the arrays (no copy): the caller keeps them alive.
    Each call makes its own strategy object (one must not serve both partitioning and ordering).
    """
    lib = scotch.lib
    n, nnz = len(verttab) - 1, len(edgetab)
    with contextlib.ExitStack() as cleanup:  # callbacks run in reverse: exits, then frees
        graph, strat, context, bound = (lib.SCOTCH_graphAlloc(), lib.SCOTCH_stratAlloc(),
                                        lib.SCOTCH_contextAlloc(), lib.SCOTCH_graphAlloc())
        for ptr in (graph, strat, context, bound):
            cleanup.callback(lib.SCOTCH_memFree, ptr)
        if not all((graph, strat, context, bound)):
            raise MemoryError("Scotch could not allocate its graph, strategy or context")
        _check(lib.SCOTCH_graphInit(graph), "SCOTCH_graphInit")
        cleanup.callback(lib.SCOTCH_graphExit, graph)
        _check(lib.SCOTCH_stratInit(strat), "SCOTCH_stratInit")
        cleanup.callback(lib.SCOTCH_stratExit, strat)
        _check(lib.SCOTCH_contextInit(context), "SCOTCH_contextInit")
        cleanup.callback(lib.SCOTCH_contextExit, context)
        _check(lib.SCOTCH_contextOptionSetNum(context, _OPTION_DETERMINISTIC, 1), "SCOTCH_contextOptionSetNum")
        lib.SCOTCH_contextRandomSeed(context, seed)
        _check(lib.SCOTCH_contextThreadSpawn(context, 1, None), "SCOTCH_contextThreadSpawn")
        _check(lib.SCOTCH_graphBuild(graph, 0, n, verttab.ctypes.data, None, None, None, nnz, edgetab.ctypes.data,
                                     None if edlotab is None else edlotab.ctypes.data), "SCOTCH_graphBuild")
        _check(lib.SCOTCH_contextBindGraph(context, graph, bound), "SCOTCH_contextBindGraph")
        cleanup.callback(lib.SCOTCH_graphExit, bound)
        yield bound, strat


def scotch_parts(adj: sp.csr_matrix, k: int = 2, seed: int = 0) -> np.ndarray:
    """Scotch k-way partition (default strategy) of a graph with ≥ 2 vertices; see module docstring."""
    scotch = _require()
    num = scotch.num
    verttab, edgetab = _csr_tabs(adj, num)
    num_max = int(np.iinfo(num).max)
    edlotab = integer_edge_weights(adj.data, top=min(INTEGER_WEIGHT_TOP, num_max // max(adj.nnz, 1)))
    if int(edlotab.sum()) > num_max:
        raise UserError(f"total edge weight {int(edlotab.sum())} overflows Scotch's "
                        f"{np.dtype(num).itemsize * 8}-bit integers; scale the weights down")
    edlotab = np.ascontiguousarray(edlotab, dtype=num)
    parttab = np.empty(adj.shape[0], dtype=num)
    with _bound_graph(scotch, verttab, edgetab, edlotab, seed) as (bound, strat):
        _check(scotch.lib.SCOTCH_graphPart(bound, k, strat, parttab.ctypes.data), "SCOTCH_graphPart")
    return parttab.astype(np.int64)


def scotch_order(adj: sp.csr_matrix, seed: int = 0) -> np.ndarray:
    """Scotch's fill-reducing ordering (``SCOTCH_graphOrder``, default strategy) of the graph's pattern.

    Returns ``peritab``, the inverse permutation: entry ``i`` is the vertex placed at position ``i``
    (the ``perm`` convention of :mod:`jaxsafe.graphs.ordering`). Edge weights are not passed: an
    ordering depends on the pattern only.
    """
    scotch = _require()
    num = scotch.num
    verttab, edgetab = _csr_tabs(adj, num)
    permtab, peritab = np.empty(adj.shape[0], dtype=num), np.empty(adj.shape[0], dtype=num)
    with _bound_graph(scotch, verttab, edgetab, None, seed) as (bound, strat):
        _check(scotch.lib.SCOTCH_graphOrder(bound, strat, permtab.ctypes.data, peritab.ctypes.data, None, None, None),
               "SCOTCH_graphOrder")
    return peritab.astype(np.int64)


def _csr_tabs(adj: sp.csr_matrix, num: type) -> tuple[np.ndarray, np.ndarray]:
    """The CSR index arrays as ``SCOTCH_Num`` (``verttab``, ``edgetab``), after checking they fit its width."""
    if adj.nnz > int(np.iinfo(num).max):
        raise UserError(f"graph has {adj.nnz} adjacency entries, more than Scotch's "
                        f"{np.dtype(num).itemsize * 8}-bit integers hold")
    return np.ascontiguousarray(adj.indptr, dtype=num), np.ascontiguousarray(adj.indices, dtype=num)


def _check(status: int, name: str) -> None:
    if status != 0:
        raise RuntimeError(f"{name} failed with status {status} (Scotch prints the reason on stderr)")
