"""Paper A's partitioning module: a V-cycle GNN from the Fiedler estimate to side probabilities.

Architecture (≈3.5k parameters, spec "Partitioning module"): input
``(f − mean f)·√n`` (``f`` the unit-norm Fiedler estimate from the embedding
module); SAGEConv 1→16; going down, at each level two pre-smoothing SAGEConv
16→16, keep a skip copy, restrict to the next level (mean over merged
vertices); at the coarsest one SAGEConv; going up ``x = (interpolate(x) + skip)/2``
then two post-smoothing SAGEConv; MLP 16→16→16→16→2 and softmax. Convolutions
are shared across levels; activations tanh. Trained with
:func:`jaxsafe.graphs.losses.expected_normalized_cut`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxsafe.graphs.batching import PaddedLevel
from jaxsafe.graphs.layers import SAGEConv


def restrict(x: jax.Array, level: PaddedLevel, num_coarse: int) -> jax.Array:
    """Mean of the fine vertices merged into each coarse vertex."""
    total = jax.ops.segment_sum(x, level.cmap, num_segments=num_coarse)
    count = jax.ops.segment_sum(jnp.ones(x.shape[0], x.dtype), level.cmap, num_segments=num_coarse)
    return total / jnp.maximum(count, 1.0)[:, None]


class PartitionModule(nnx.Module):
    """Maps the Fiedler estimate on a hierarchy to ``[n, 2]`` side probabilities."""

    def __init__(self, hidden: int = 16, *, rngs: nnx.Rngs):
        self.conv_in = SAGEConv(1, hidden, rngs=rngs)
        self.pre = nnx.List([SAGEConv(hidden, hidden, rngs=rngs) for _ in range(2)])
        self.bottom_conv = SAGEConv(hidden, hidden, rngs=rngs)
        self.post = nnx.List([SAGEConv(hidden, hidden, rngs=rngs) for _ in range(2)])
        widths = (hidden, 16, 16, 16, 2)
        self.mlp = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])

    def start(self, level: PaddedLevel, f: jax.Array) -> jax.Array:
        return jnp.tanh(self.conv_in(level.graph, f))

    def down(self, level: PaddedLevel, x: jax.Array, coarse_mask: jax.Array,
             active: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """Pre-smoothing, then restriction to the next level (``coarse_mask``'s rows).

        Returns ``(skip, coarse)``: the smoothed values (the skip copy) and their
        restriction. ``active`` false (a training group's copy of its coarsest graph):
        the input passes through instead. One function, so inference runs (and a
        fresh process loads) one program per level going down instead of two.
        """
        skip = x
        for conv in self.pre:
            skip = jnp.tanh(conv(level.graph, skip))
        kept = skip if active is None else jnp.where(active, skip, x)
        return skip, restrict(kept, level, coarse_mask.shape[0])

    def bottom(self, level: PaddedLevel, x: jax.Array) -> jax.Array:
        return jnp.tanh(self.bottom_conv(level.graph, x))

    def up(self, level: PaddedLevel, x_coarse: jax.Array, skip: jax.Array) -> jax.Array:
        x = (x_coarse[level.cmap] + skip) / 2
        for conv in self.post:
            x = jnp.tanh(conv(level.graph, x))
        return x

    def head(self, x: jax.Array) -> jax.Array:
        for i, lin in enumerate(self.mlp):
            x = lin(x)
            if i + 1 < len(self.mlp):
                x = jnp.tanh(x)
        return jax.nn.softmax(x, axis=-1)


def vcycle(call, levels: list[PaddedLevel], f_in: jax.Array, depth: jax.Array | None = None) -> jax.Array:
    """The V-cycle over padded levels (finest first); returns ``[N, 2]`` probabilities.

    ``call`` as in :func:`jaxsafe.graphs.embedding.embed`. With ``depth``, levels
    at or past ``depth − 1`` are copies of the coarsest graph: going down they
    only pass values through, the bottom convolution runs on the last copy (the
    same graph), going up they only interpolate.
    """
    x = call("start", levels[0], f_in)
    skips = []
    for i in range(len(levels) - 1):
        skip, x = call("down", levels[i], x, levels[i + 1].mask, None if depth is None else i < depth - 1)
        skips.append(skip)
    x = call("bottom", levels[-1], x)
    for i in range(len(levels) - 2, -1, -1):
        new = call("up", levels[i], x, skips[i])
        x = new if depth is None else jnp.where(i < depth - 1, new, x[levels[i].cmap])
    return call("head", x)
