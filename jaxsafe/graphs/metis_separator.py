"""METIS's own vertex separator (``METIS_ComputeVertexSeparator``) through ctypes — an optional baseline.

pymetis does not export the call; Debian's ``libmetis5`` (METIS 5.1.0, 32-bit
``idx_t``) does. Without the library :func:`available` is False and the tests skip.

``METIS_ComputeVertexSeparator(nvtxs, xadj, adjncy, vwgt, options, sepsize, part)``
returns ``part[v]`` ∈ {0, 1, 2} with 2 = the separator — the same labels as
:func:`jaxsafe.graphs.ordering.vertex_separator_from_bisection`. Options: METIS's
defaults with the seed set (``METIS_OPTION_SEED`` = 8 in METIS 5.1's option enum).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import numpy as np
import scipy.sparse as sp

from jaxsafe.errors import UserError

METIS_NOPTIONS = 40
METIS_OPTION_SEED = 8
METIS_OK = 1
_CANDIDATES = ("libmetis.so.5", "libmetis.so")


@functools.lru_cache(maxsize=1)
def _library():
    names = list(_CANDIDATES)
    found = ctypes.util.find_library("metis")
    if found:
        names.insert(0, found)
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            lib.METIS_ComputeVertexSeparator  # noqa: B018  (symbol present)
            return lib
        except (OSError, AttributeError):
            continue
    return None


def available() -> bool:
    """Whether a libmetis with ``METIS_ComputeVertexSeparator`` can be loaded."""
    return _library() is not None


def metis_vertex_separator(adj: sp.spmatrix, seed: int = 0) -> np.ndarray:
    """Labels 0 = A, 1 = B, 2 = S of METIS's vertex separator of the pattern of ``adj``."""
    from jaxsafe.graphs.ordering import pattern

    lib = _library()
    if lib is None:
        raise UserError("METIS_ComputeVertexSeparator needs Debian/Ubuntu's libmetis5 (apt-get install libmetis5)")
    p = pattern(adj)
    n = p.shape[0]
    if n < 3:
        return np.minimum(np.arange(n), 1).astype(np.int64)
    if p.nnz >= 2**31:
        raise UserError("graph too large for libmetis's 32-bit indices")
    idx = ctypes.c_int32
    xadj = np.ascontiguousarray(p.indptr, np.int32)
    adjncy = np.ascontiguousarray(p.indices, np.int32)
    options = np.full(METIS_NOPTIONS, -1, np.int32)
    lib.METIS_SetDefaultOptions(options.ctypes.data_as(ctypes.POINTER(idx)))
    options[METIS_OPTION_SEED] = seed
    part = np.zeros(n, np.int32)
    nv, sepsize = idx(n), idx(0)
    status = lib.METIS_ComputeVertexSeparator(
        ctypes.byref(nv), xadj.ctypes.data_as(ctypes.POINTER(idx)), adjncy.ctypes.data_as(ctypes.POINTER(idx)),
        None, options.ctypes.data_as(ctypes.POINTER(idx)), ctypes.byref(sepsize), part.ctypes.data_as(ctypes.POINTER(idx)))
    if status != METIS_OK:
        raise RuntimeError(f"METIS_ComputeVertexSeparator failed with status {status}")
    return part.astype(np.int64)
