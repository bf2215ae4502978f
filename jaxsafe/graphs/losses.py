"""Paper A's two training losses, on padded ``jraph.GraphsTuple`` graphs.

Both act on the finest graph. Padding nodes have degree 0 and zero rows in the
inputs, so they contribute nothing; ``num_nodes`` is the real vertex count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jraph

from jaxsafe.graphs.layers import degrees, neighbour_sum

LAPLACIANS = ("sym", "rw")


def laplacian_apply(graph: jraph.GraphsTuple, x: jax.Array, kind: str = "sym") -> jax.Array:
    """``L x`` for ``L_sym = I − D^{-1/2} A D^{-1/2}`` or ``L_rw = I − D⁻¹A`` (rows of degree-0 vertices: ``x``)."""
    d = degrees(graph, x.shape[0])
    safe = jnp.maximum(d, 1e-30)
    if kind == "sym":
        s = jnp.where(d > 0, jax.lax.rsqrt(safe), 0.0)[:, None]
        return x - s * neighbour_sum(graph, s * x, graph.edges)
    if kind == "rw":
        return x - jnp.where(d > 0, 1.0 / safe, 0.0)[:, None] * neighbour_sum(graph, x, graph.edges)
    raise ValueError(f"unknown Laplacian '{kind}' (choose from {LAPLACIANS})")


def rayleigh_loss(x: jax.Array, graph: jraph.GraphsTuple, num_nodes: jax.Array, kind: str = "sym") -> jax.Array:
    """Paper A's embedding loss ``Σ_i [ (1/n)‖L x_i − ρ(x_i) x_i‖² + ρ(x_i) ]``, ``ρ(x) = xᵀLx / xᵀx``.

    Minimized over orthonormal columns by the eigenvectors of the smallest
    eigenvalues: the ``ρ`` term pulls the span towards the low spectrum, the
    residual term makes each column an eigenvector rather than a mixture.
    """
    lx = laplacian_apply(graph, x, kind)
    rho = jnp.sum(x * lx, axis=0) / jnp.maximum(jnp.sum(x * x, axis=0), 1e-30)
    residual = jnp.sum((lx - rho * x) ** 2, axis=0) / num_nodes
    return jnp.sum(residual + rho)


def expected_normalized_cut(y: jax.Array, graph: jraph.GraphsTuple) -> jax.Array:
    """Paper A's partitioning loss: ``E[cut]/Γ₀ + E[cut]/Γ₁``.

    ``y`` is ``[N, 2]`` side probabilities, ``Γ = yᵀd`` the expected volumes and
    ``E[cut] = Σ_{(i,j)∈E, both directions} w_ij y_i0 y_j1``; for a hard
    partition this is exactly the normalized cut ``cut·(1/vol A + 1/vol B)``.
    """
    gamma = y.T @ degrees(graph, y.shape[0])
    ecut = jnp.sum(graph.edges * y[graph.receivers, 0] * y[graph.senders, 1])
    return jnp.sum(ecut / jnp.maximum(gamma, 1e-30))
