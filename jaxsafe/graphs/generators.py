"""Graph generators for training and tests (all deterministic given ``seed``).

Paper A trains on Delaunay triangulations of uniformly random points in
rectangles and tests on a wider rectangle; grids, meshes with holes and random
geometric graphs give other families for tests and generalization checks. Each
generator returns ``(adj, coords)``: a clean symmetric CSR adjacency with unit
weights (see :func:`jaxsafe.graphs.io.clean_adjacency`) and the vertex
coordinates (useful for plots).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.spatial import Delaunay, cKDTree

from jaxsafe.errors import UserError
from jaxsafe.graphs.io import clean_adjacency


def _from_edges(i: np.ndarray, j: np.ndarray, n: int) -> sp.csr_matrix:
    a = sp.coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)).tocsr()
    a.data[:] = 1.0  # duplicate triangle edges were summed; unit weights
    return clean_adjacency(a)


def _triangulation_edges(simplices: np.ndarray, n: int) -> sp.csr_matrix:
    k = simplices.shape[1]
    pairs = [(a, b) for a in range(k) for b in range(a + 1, k)]
    i = np.concatenate([simplices[:, a] for a, _ in pairs])
    j = np.concatenate([simplices[:, b] for _, b in pairs])
    return _from_edges(i, j, n)


def delaunay(n: int, width: float = 1.0, height: float = 1.0, seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray]:
    """Delaunay triangulation of ``n`` uniform random points in [0, width]×[0, height]."""
    if n < 3:
        raise UserError(f"a Delaunay graph needs n >= 3 points, got {n}")
    pts = np.random.default_rng(seed).random((n, 2)) * np.array([width, height])
    return _triangulation_edges(Delaunay(pts).simplices, n), pts


def grid2d(nx: int, ny: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """The nx×ny 4-neighbour grid."""
    idx = np.arange(nx * ny).reshape(ny, nx)
    i = np.concatenate([idx[:, :-1].ravel(), idx[:-1, :].ravel()])
    j = np.concatenate([idx[:, 1:].ravel(), idx[1:, :].ravel()])
    xs, ys = np.meshgrid(np.arange(nx), np.arange(ny))
    return _from_edges(i, j, nx * ny), np.stack([xs.ravel(), ys.ravel()], 1).astype(float)


def grid3d(nx: int, ny: int, nz: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """The nx×ny×nz 6-neighbour grid."""
    idx = np.arange(nx * ny * nz).reshape(nz, ny, nx)
    i = np.concatenate([idx[:, :, :-1].ravel(), idx[:, :-1, :].ravel(), idx[:-1].ravel()])
    j = np.concatenate([idx[:, :, 1:].ravel(), idx[:, 1:, :].ravel(), idx[1:].ravel()])
    zs, ys, xs = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    return _from_edges(i, j, idx.size), np.stack([xs.ravel(), ys.ravel(), zs.ravel()], 1).astype(float)


def delaunay_with_holes(n: int, holes: int = 3, width: float = 1.0, height: float = 1.0,
                        seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray]:
    """A triangular mesh of a rectangle with ``holes`` random circular holes.

    Points are drawn outside the holes and triangles whose centroid falls in a
    hole are removed, as a mesher would do for a domain with holes.
    """
    rng = np.random.default_rng(seed)
    centres = rng.random((holes, 2)) * [width * 0.8, height * 0.8] + [width * 0.1, height * 0.1]
    radii = rng.uniform(0.05, 0.12, holes) * min(width, height)

    def outside(p):
        return np.all(np.linalg.norm(p[:, None, :] - centres[None], axis=2) > radii, axis=1)

    pts = np.empty((0, 2))
    while len(pts) < n:
        cand = rng.random((2 * n, 2)) * [width, height]
        pts = np.concatenate([pts, cand[outside(cand)]])[:n]
    tri = Delaunay(pts).simplices
    keep = outside(pts[tri].mean(axis=1))
    return _triangulation_edges(tri[keep], n), pts


def random_geometric(n: int, radius: float | None = None, seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray]:
    """Random geometric graph: points in the unit square joined when closer than ``radius``.

    The default radius sqrt(8 / (π n)) gives an expected degree of about 8; the
    graph may be disconnected (which is what tests of disconnected inputs want).
    """
    radius = radius if radius is not None else float(np.sqrt(8.0 / (np.pi * n)))
    pts = np.random.default_rng(seed).random((n, 2))
    pairs = cKDTree(pts).query_pairs(radius, output_type="ndarray")
    return _from_edges(pairs[:, 0], pairs[:, 1], n), pts


def family_graph(family: str, n: int, seed: int, rng: np.random.Generator, width: float = 1.0) -> sp.csr_matrix:
    """A connected training graph of about ``n`` vertices from one of ``config.FAMILIES``.

    ``delaunay`` (in ``[0, width]×[0, 1]``), ``holes`` (1–4 holes, largest component),
    ``geometric`` (largest component), ``grid2d`` (aspect ratio in [1, 2]), ``grid3d``
    (sides within ×0.8–1.25 of ``n^(1/3)``). ``seed`` fixes the points; ``rng`` draws the
    hole count and grid shapes (nothing for Delaunay, so callers keep their draw order).
    """
    from jaxsafe.graphs.partition import largest_component

    if family == "delaunay":
        return delaunay(n, width, 1.0, seed=seed)[0]
    if family == "holes":
        return largest_component(delaunay_with_holes(n, int(rng.integers(1, 5)), seed=seed)[0])
    if family == "geometric":
        return largest_component(random_geometric(n, seed=seed)[0])
    if family == "grid2d":
        aspect = rng.uniform(1.0, 2.0)
        nx = max(int(round(np.sqrt(n * aspect))), 2)
        return grid2d(nx, max(n // nx, 2))[0]
    if family == "grid3d":
        side = rng.uniform(0.8, 1.25, 3) * n ** (1 / 3)
        return grid3d(*(max(int(round(x)), 2) for x in side))[0]
    raise UserError(f"unknown graph family '{family}'")
