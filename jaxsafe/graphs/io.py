"""Graphs in and out: Matrix Market, METIS graph files, edge lists, jraph tuples.

Every reader returns a clean undirected graph as a ``scipy.sparse.csr_matrix``
adjacency ``A`` (float64): symmetric (``A = max(A, Aᵀ)`` entrywise, so an edge
listed in one direction only keeps its weight and a symmetric file is unchanged),
no self-loops (dropped: they never count in a cut), no explicit zeros. Edge
weights are kept. Bad files raise :class:`~jaxsafe.errors.UserError` naming the
file and the line (wrong header, non-square size, negative weights, indices out
of range, malformed lines). Untrusted files are only parsed.

The rest of :mod:`jaxsafe.graphs` works on this adjacency; :func:`to_graphs_tuple`
turns it into the ``jraph.GraphsTuple`` (both edge directions, weights in
``edges``) that the GNN layers consume.
"""

from __future__ import annotations

import os
from pathlib import Path

import jraph
import numpy as np
import scipy.sparse as sp

from jaxsafe.errors import UserError
from jaxsafe.io import atomic_write_text

FORMATS = ("mtx", "metis", "edgelist")
_SUFFIXES = {".mtx": "mtx", ".graph": "metis", ".metis": "metis", ".edges": "edgelist", ".txt": "edgelist", ".el": "edgelist"}


def clean_adjacency(a: sp.spmatrix | np.ndarray) -> sp.csr_matrix:
    """Symmetrize with the entrywise maximum, drop self-loops and zeros; float64 CSR.

    Raises UserError for non-square input or negative weights (a cut with negative
    weights is not a partitioning objective).
    """
    a = sp.csr_matrix(a, dtype=np.float64)
    if a.shape[0] != a.shape[1]:
        raise UserError(f"adjacency must be square, got {a.shape[0]}x{a.shape[1]}")
    if a.nnz and a.data.min() < 0:
        raise UserError("edge weights must be non-negative")
    a = a.maximum(a.T).tocsr()
    a.setdiag(0)
    a.eliminate_zeros()
    a.sort_indices()
    return a


def read_graph(path: str | os.PathLike, fmt: str | None = None, *, pattern: bool = False) -> sp.csr_matrix:
    """Read a graph file; the format comes from ``fmt`` or the suffix.

    Suffixes: ``.mtx`` (Matrix Market), ``.graph``/``.metis`` (METIS), ``.edges``,
    ``.el``, ``.txt`` (edge list). ``pattern=True`` ignores stored values and
    uses unit weights (useful for matrices with negative off-diagonals such as
    discretized Laplacians).
    """
    path = Path(path)
    if fmt is None:
        fmt = _SUFFIXES.get(path.suffix.lower())
        if fmt is None:
            raise UserError(f"{path}: cannot tell the graph format from the suffix '{path.suffix}' "
                            f"(use .mtx, .graph/.metis or .edges/.el/.txt)")
    if fmt not in FORMATS:
        raise UserError(f"unknown graph format '{fmt}' (choose from {', '.join(FORMATS)})")
    if not path.is_file():
        raise UserError(f"graph file not found: {path}")
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file") from None
    reader = {"mtx": _parse_mtx, "metis": _parse_metis, "edgelist": _parse_edgelist}[fmt]
    rows, cols, vals, n, first_line = reader(lines, path, pattern)
    return _assemble(rows, cols, vals, n, path, first_line, one_based=fmt != "edgelist")


def _fail(path: Path, line: int, msg: str) -> UserError:
    return UserError(f"{path}:{line}: {msg}")


def _numeric_block(lines: list[str], start: int, path: Path, ncols: tuple[int, ...]) -> np.ndarray:
    """Parse lines[start:] as a float table whose rows have one of ``ncols`` columns."""
    body = lines[start:]
    table: list[list[float]] = []
    width = None
    for i, ln in enumerate(body):
        s = ln.strip()
        if not s or s[0] in "%#":
            continue
        parts = s.split()
        if len(parts) not in ncols or (width is not None and len(parts) != width):
            want = width if width is not None else " or ".join(map(str, ncols))
            raise _fail(path, start + i + 1, f"expected {want} numbers, got {len(parts)}: '{s[:60]}'")
        width = len(parts)
        try:
            table.append([float(p) for p in parts])
        except ValueError:
            raise _fail(path, start + i + 1, f"not a number in '{s[:60]}'") from None
        table[-1].append(start + i + 1)  # remember the line number for later errors
    return np.asarray(table, dtype=np.float64).reshape(-1, (width or ncols[0]) + 1)


def _parse_mtx(lines, path, pattern):
    if not lines or not lines[0].lower().startswith("%%matrixmarket"):
        raise _fail(path, 1, "not a Matrix Market file (first line must start with '%%MatrixMarket')")
    head = lines[0].lower().split()
    if len(head) != 5 or head[1] != "matrix" or head[2] != "coordinate":
        raise _fail(path, 1, "only '%%MatrixMarket matrix coordinate <field> <symmetry>' is supported")
    field, symmetry = head[3], head[4]
    if field not in ("real", "integer", "pattern", "double"):
        raise _fail(path, 1, f"unsupported field '{field}' (real, integer or pattern)")
    if symmetry not in ("general", "symmetric"):
        raise _fail(path, 1, f"unsupported symmetry '{symmetry}' (general or symmetric)")
    k = 1
    while k < len(lines) and (not lines[k].strip() or lines[k].lstrip().startswith("%")):
        k += 1
    if k == len(lines):
        raise _fail(path, k, "missing the size line 'rows cols entries'")
    size = lines[k].split()
    if len(size) != 3 or not all(s.isdigit() for s in size):
        raise _fail(path, k + 1, f"size line must be 'rows cols entries', got '{lines[k].strip()[:60]}'")
    nr, nc, nnz = map(int, size)
    if nr != nc:
        raise _fail(path, k + 1, f"matrix is not square ({nr}x{nc}); a graph needs a square adjacency")
    table = _numeric_block(lines, k + 1, path, (2,) if field == "pattern" else (3,))
    if len(table) != nnz:
        raise _fail(path, len(lines), f"size line announces {nnz} entries but the file has {len(table)}")
    vals = np.ones(len(table)) if field == "pattern" or pattern else table[:, 2]
    return table[:, 0], table[:, 1], vals, nr, table[:, -1]


def _parse_metis(lines, path, pattern):
    k = 0
    while k < len(lines) and (not lines[k].strip() or lines[k].lstrip().startswith("%")):
        k += 1
    if k == len(lines):
        raise UserError(f"{path}: empty METIS file (no header line 'n m [fmt [ncon]]')")
    head = lines[k].split()
    if not 2 <= len(head) <= 4 or not all(h.isdigit() for h in head):
        raise _fail(path, k + 1, f"METIS header must be 'n m [fmt [ncon]]', got '{lines[k].strip()[:60]}'")
    n, m = int(head[0]), int(head[1])
    fmt = head[2].zfill(3) if len(head) > 2 else "000"
    ncon = int(head[3]) if len(head) > 3 else (1 if fmt[1] == "1" else 0)
    if set(fmt) - {"0", "1"} or len(fmt) != 3:
        raise _fail(path, k + 1, f"bad METIS fmt field '{head[2]}'")
    has_size, has_vw, has_ew = fmt[0] == "1", fmt[1] == "1", fmt[2] == "1"
    skip = int(has_size) + (ncon if has_vw else 0)
    fast = _metis_adjacency(lines, k, n, m, skip, has_ew)
    if fast is not None:
        rows, cols, w, where = fast
        return rows, cols, np.ones(len(cols)) if pattern else w, n, where
    # irregular file: the line-by-line parse below names the offending line
    rows, cols, vals, where = [], [], [], []
    v = 0
    for i in range(k + 1, len(lines)):
        s = lines[i].strip()
        if s.startswith("%"):
            continue
        if v == n:
            if s:
                raise _fail(path, i + 1, f"more vertex lines than the {n} announced in the header")
            continue
        try:
            nums = [float(t) for t in s.split()]
        except ValueError:
            raise _fail(path, i + 1, f"not a number in '{s[:60]}'") from None
        nums = nums[skip:]
        if has_ew:
            if len(nums) % 2:
                raise _fail(path, i + 1, "edge weights announced but the line has an odd number of neighbour/weight entries")
            nbr, w = nums[0::2], nums[1::2]
        else:
            nbr, w = nums, [1.0] * len(nums)
        rows.extend([v + 1] * len(nbr))
        cols.extend(nbr)
        vals.extend(w)
        where.extend([i + 1] * len(nbr))
        v += 1
    if v < n:
        raise _fail(path, len(lines), f"header announces {n} vertices but the file has {v} vertex lines")
    if len(cols) != 2 * m:
        raise _fail(path, k + 1, f"header announces {m} edges but the adjacency lists hold {len(cols)} entries (expected {2 * m})")
    vals_arr = np.ones(len(vals)) if pattern else np.asarray(vals, dtype=np.float64)
    return np.asarray(rows, np.float64), np.asarray(cols, np.float64), vals_arr, n, np.asarray(where)


def _metis_adjacency(lines: list[str], k: int, n: int, m: int, skip: int, has_ew: bool):
    """The adjacency lists after METIS header line ``k`` parsed in bulk, or ``None`` if anything is irregular.

    One split of all vertex lines and one NumPy conversion instead of a ``float()`` per
    token (10⁵ Delaunay vertices: ≈ 3× faster). ``None`` (missing or extra lines, a
    non-number, an odd neighbour/weight count, a wrong edge count) sends the caller
    to its line-by-line parse, which reports the line. Returns ``(rows, cols, weights,
    line numbers)`` with 1-based vertex ids, like that parse.
    """
    body = [i for i in range(k + 1, len(lines)) if not lines[i].lstrip().startswith("%")]
    if len(body) < n or any(lines[i].strip() for i in body[n:]):
        return None
    text = [lines[i] for i in body[:n]]
    counts = np.fromiter((len(t.split()) for t in text), np.int64, n)
    tokens = " ".join(text).split()
    try:
        nums = np.array(tokens, np.int64)
    except (ValueError, OverflowError):
        try:
            nums = np.array(tokens, np.float64)
        except ValueError:
            return None
    line = np.repeat(np.arange(n), counts)
    pos = np.arange(len(nums)) - np.repeat(np.cumsum(counts) - counts, counts) - skip
    keep = pos >= 0
    if has_ew and np.any(np.maximum(counts - skip, 0) % 2):
        return None
    nbr = keep & (pos % 2 == 0) if has_ew else keep
    if nbr.sum() != 2 * m:
        return None
    weights = nums[keep & (pos % 2 == 1)].astype(np.float64) if has_ew else np.ones(2 * m)
    return line[nbr] + 1, nums[nbr], weights, np.asarray(body)[line[nbr]] + 1


def _parse_edgelist(lines, path, pattern):
    table = _numeric_block(lines, 0, path, (2, 3))
    if len(table) == 0:
        raise UserError(f"{path}: edge list holds no edges")
    # table columns: u, v[, w], line number
    vals = np.ones(len(table)) if table.shape[1] == 3 or pattern else table[:, 2]
    ids = table[:, :2]
    if np.any(ids < 0):
        bad = int(np.argmax((ids < 0).any(axis=1)))
        raise _fail(path, int(table[bad, -1]), "vertex ids must be non-negative (edge lists are 0-based)")
    return table[:, 0], table[:, 1], vals, int(ids.max()) + 1, table[:, -1]


def _assemble(rows, cols, vals, n, path, line_of, one_based):
    off = 1 if one_based else 0
    for arr in (rows, cols):
        bad = (arr != np.round(arr)) | (arr < off) | (arr >= n + off)
        if bad.any():
            i = int(np.argmax(bad))
            raise _fail(path, int(line_of[i]), f"vertex index {arr[i]:g} out of range {off}..{n - 1 + off}")
    if np.any(vals < 0) or not np.all(np.isfinite(vals)):
        i = int(np.argmax((vals < 0) | ~np.isfinite(vals)))
        raise _fail(path, int(line_of[i]), f"edge weight {vals[i]:g} is not a non-negative number "
                                           f"(read with pattern=True / --unweighted to ignore values)")
    if n == 0:
        raise UserError(f"{path}: graph has no vertices")
    a = sp.coo_matrix((vals, (rows.astype(np.int64) - off, cols.astype(np.int64) - off)), shape=(n, n))
    return clean_adjacency(a)


def write_metis(path: str | os.PathLike, adj: sp.csr_matrix) -> None:
    """Write ``adj`` as a METIS graph file (edge weights written when not all 1)."""
    adj = clean_adjacency(adj)
    n = adj.shape[0]
    weighted = adj.nnz and not np.all(adj.data == 1)
    ints = weighted and np.all(adj.data == np.round(adj.data))
    out = [f"{n} {adj.nnz // 2}" + (" 001" if weighted else "")]
    for v in range(n):
        lo, hi = adj.indptr[v], adj.indptr[v + 1]
        nbr = adj.indices[lo:hi] + 1
        if weighted:
            w = adj.data[lo:hi]
            ws = [str(int(x)) if ints else repr(float(x)) for x in w]
            out.append(" ".join(f"{u} {x}" for u, x in zip(nbr, ws)))
        else:
            out.append(" ".join(map(str, nbr)))
    atomic_write_text(path, "\n".join(out) + "\n")


def write_partition(path: str | os.PathLike, parts: np.ndarray) -> None:
    """One part id per line, vertex order (the METIS ``.part`` convention)."""
    atomic_write_text(path, "".join(f"{int(p)}\n" for p in parts))


def to_graphs_tuple(adj: sp.csr_matrix, nodes: np.ndarray | None = None) -> jraph.GraphsTuple:
    """One-graph ``GraphsTuple``: every undirected edge in both directions, weights in ``edges``.

    ``receivers`` are the CSR rows, so messages flow sender → receiver and a
    receiver's incoming edges are its adjacency row.
    """
    coo = adj.tocoo()
    return jraph.GraphsTuple(
        nodes=nodes,
        edges=coo.data.astype(np.float32),
        senders=coo.col.astype(np.int32),
        receivers=coo.row.astype(np.int32),
        n_node=np.array([adj.shape[0]], np.int32),
        n_edge=np.array([coo.nnz], np.int32),
        globals=None,
    )


def from_graphs_tuple(graph: jraph.GraphsTuple) -> sp.csr_matrix:
    """The adjacency of a one-graph ``GraphsTuple`` (inverse of :func:`to_graphs_tuple`)."""
    n = int(np.sum(graph.n_node))
    w = np.ones(len(graph.senders)) if graph.edges is None else np.asarray(graph.edges, np.float64).reshape(-1)
    return clean_adjacency(sp.coo_matrix((w, (np.asarray(graph.receivers), np.asarray(graph.senders))), shape=(n, n)))
