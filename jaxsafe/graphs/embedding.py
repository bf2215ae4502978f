"""Paper A's spectral embedding module: a multilevel GNN that predicts the Fiedler vector.

Architecture (≈6.5k parameters, spec "Embedding module"): on the coarsest graph
a SAGEConv 2→32; going up each level, interpolate then two SAGEConv 32→32 whose
weights are shared across levels; an MLP 32→16→32→32→2; the two columns are
orthonormalized by QR. Activations are tanh.

Coarsest start: the paper feeds ``eye(2)`` to a 2-vertex coarsest graph. Our
coarsening stops at any size (see ``coarsen.py``), so the start features are
the exact two lowest eigenvectors of the coarsest graph's Laplacian, scaled by
``√n_c`` so entries are O(1) like ``eye(2)``'s (for 2 vertices they are
``eye(2)`` up to a rotation). For ``n_c = 1`` the second column is 0.

Laplacian: we use ``L_sym = I − D^{-1/2} A D^{-1/2}`` (``kind="sym"``) by default.
QR makes the columns Euclidean-orthonormal and the Rayleigh quotient
``xᵀLx/xᵀx`` is the Euclidean one, which matches the *symmetric* ``L_sym``
(eigenvectors orthonormal, Courant–Fischer applies: the loss minimum is the sum
of the two smallest eigenvalues at the eigenvectors). With ``L_rw`` (the
authors' choice, ``kind="rw"``) the eigenvectors are only D-orthogonal, so the
loss minimum is not at its eigenvectors. The Fiedler vector of ``L_rw`` is
recovered as ``D^{-1/2} x₂``. Both are supported; docs/graphs.md reports which
partitions better.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh
from flax import nnx

from jaxsafe.graphs.batching import PaddedLevel
from jaxsafe.graphs.coarsen import Level
from jaxsafe.graphs.layers import SAGEConv
from jaxsafe.graphs.losses import LAPLACIANS


class SpectralEmbedding(nnx.Module):
    """Predicts two orthonormal columns spanning the low eigenspace of the Laplacian."""

    def __init__(self, hidden: int = 32, *, rngs: nnx.Rngs):
        self.conv_in = SAGEConv(2, hidden, rngs=rngs)
        self.conv_a = SAGEConv(hidden, hidden, rngs=rngs)
        self.conv_b = SAGEConv(hidden, hidden, rngs=rngs)
        widths = (hidden, 16, 32, 32, 2)
        self.mlp = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])

    def start(self, level: PaddedLevel, x0: jax.Array) -> jax.Array:
        return jnp.tanh(self.conv_in(level.graph, x0))

    def up(self, level: PaddedLevel, x_coarse: jax.Array) -> jax.Array:
        """Interpolate from the next coarser level, then two shared convolutions."""
        x = x_coarse[level.cmap]
        x = jnp.tanh(self.conv_a(level.graph, x))
        return jnp.tanh(self.conv_b(level.graph, x))

    def features(self, level: PaddedLevel, x: jax.Array) -> jax.Array:
        """The MLP's two output columns (padding rows zeroed), before orthonormalization."""
        for i, lin in enumerate(self.mlp):
            x = lin(x)
            if i + 1 < len(self.mlp):
                x = jnp.tanh(x)
        return jnp.where(level.mask[:, None], x, 0.0)

    def head(self, level: PaddedLevel, x: jax.Array) -> jax.Array:
        """:meth:`features`, orthonormalized by QR (the loss needs orthonormal columns)."""
        q, _ = jnp.linalg.qr(self.features(level, x))
        return q


def embed(call, levels: list[PaddedLevel], x0: jax.Array, depth: jax.Array | None = None,
          orthonormalize: bool = True) -> jax.Array:
    """The embedding forward pass over padded levels (finest first); returns the QR columns.

    ``orthonormalize=False`` returns the columns before QR (same span): inference
    orthonormalizes them in float64 NumPy (:func:`fiedler_from_embedding`), which
    on CPU is ~20× faster than XLA's Householder QR of a tall ``[N, 2]`` array.

    ``call(name, *args)`` runs a method of :class:`SpectralEmbedding` — jitted per
    level at inference (:class:`~jaxsafe.graphs.batching.Compiled`), plain inside
    the jitted training step. With ``depth`` (training groups), levels at or
    past ``depth − 1`` are copies of the coarsest graph and only interpolate.
    """
    x = call("start", levels[-1], x0)
    for i in range(len(levels) - 2, -1, -1):
        new = call("up", levels[i], x)
        x = new if depth is None else jnp.where(i < depth - 1, new, x[levels[i].cmap])
    return call("head" if orthonormalize else "features", levels[0], x)


def inv_sqrt_degree(adj: sp.spmatrix) -> np.ndarray:
    """``D^{-1/2}`` as a vector (0 for isolated vertices)."""
    d = np.asarray(adj.sum(axis=1)).ravel()
    return np.where(d > 0, 1.0 / np.sqrt(np.maximum(d, 1e-300)), 0.0)


def sym_laplacian(adj: sp.spmatrix) -> tuple[sp.csr_matrix, np.ndarray]:
    """``L_sym`` and ``D^{-1/2}`` (0 for isolated vertices)."""
    s = inv_sqrt_degree(adj)
    lap = sp.identity(adj.shape[0], format="csr") - sp.diags(s) @ adj @ sp.diags(s)
    return lap.tocsr(), s


DENSE_EIGH_MAX = 256  # above this many vertices the start eigenvectors come from sparse shift-invert ARPACK


def coarsest_features(level: Level, kind: str, num_nodes: int) -> np.ndarray:
    """Start features: the two lowest Laplacian eigenvectors of the start graph, ×√n_c, padded.

    The start graph is the coarsest level in training; at inference on deep
    hierarchies it can be a finer one (``ModelConfig.max_up_levels``), with up
    to a few thousand vertices, hence sparse ARPACK (shift-invert just below 0,
    ``L_sym`` is positive semi-definite) above ``DENSE_EIGH_MAX`` vertices.
    """
    if kind not in LAPLACIANS:
        raise ValueError(f"unknown Laplacian '{kind}'")
    n = level.n
    lap, s = sym_laplacian(level.adj)
    if n > DENSE_EIGH_MAX:
        vals, vecs = eigsh(lap, k=2, sigma=-1e-3, which="LM", v0=np.sqrt(np.maximum(1.0 - lap.diagonal(), 0) + 1.0))
        vecs = vecs[:, np.argsort(vals)]
    else:
        vecs = np.linalg.eigh(lap.toarray())[1][:, :2]
    if kind == "rw":
        vecs = vecs * s[:, None]
        vecs /= np.maximum(np.linalg.norm(vecs, axis=0), 1e-30)
    vecs = vecs * np.sign(vecs[np.argmax(np.abs(vecs), axis=0), [0, 1][: vecs.shape[1]]])
    out = np.zeros((num_nodes, 2), np.float32)
    out[:n, : vecs.shape[1]] = vecs * np.sqrt(n)
    return out


def fiedler_from_embedding(adj: sp.csr_matrix, q: np.ndarray, kind: str) -> np.ndarray:
    """The Fiedler vector of ``L_rw`` estimated from the two predicted columns.

    A Rayleigh–Ritz step in the span of the columns (a 2×2 eigenproblem) picks
    the non-trivial direction, so the estimate does not depend on the column
    order, rotation or scaling the network settled on (``q`` need not be
    orthonormal). Returned with unit norm.
    """
    s = inv_sqrt_degree(adj)
    if kind == "rw":  # columns approximate L_rw eigenvectors: map them to L_sym's (D^{1/2} x)
        q = q * np.where(s > 0, 1.0 / np.maximum(s, 1e-300), 0.0)[:, None]
    basis, _ = np.linalg.qr(q)
    lap_basis = basis - s[:, None] * (adj @ (s[:, None] * basis))  # L_sym·basis without forming L_sym
    small = basis.T @ lap_basis
    _, vecs = np.linalg.eigh((small + small.T) / 2)
    f = s * (basis @ vecs[:, -1])
    return f / max(np.linalg.norm(f), 1e-30)
