"""The trained GNN bisector of paper A: both modules, their weights, and inference.

:class:`GNNBisector` bundles the spectral embedding module and the partitioning
module with the hierarchy settings they were trained with. Weights are stored
as safetensors (never pickle) with the model config in the file's metadata;
the package ships trained weights (``weights/gnn_bisection.safetensors``) so
``jaxsafe partition`` works out of the box.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import time
from importlib import resources
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import safetensors.numpy as stn
import scipy.sparse as sp
from flax import nnx

from jaxsafe.errors import UserError
from jaxsafe.graphs.batching import Compiled, PaddedLevel, locality_ranks, masked_mean, pad_levels
from jaxsafe.graphs.coarsen import Hierarchy, build_hierarchy
from jaxsafe.graphs.config import ModelConfig
from jaxsafe.graphs.embedding import SpectralEmbedding, coarsest_features, embed, fiedler_from_embedding
from jaxsafe.graphs.partition_module import PartitionModule, vcycle
from jaxsafe.graphs.programs import Program
from jaxsafe.io import atomic_write_bytes

WEIGHTS_FILE = "gnn_bisection.safetensors"


def partition_input(f: np.ndarray | jax.Array, mask, n) -> jax.Array:
    """The partitioning module's input ``(f − mean f)·√n`` (``f`` unit-norm, padded ``[N]``)."""
    f = jnp.asarray(f)[:, None]
    return jnp.where(mask[:, None], (f - masked_mean(f, mask, n)) * jnp.sqrt(n), 0.0)


# one program instead of seven op-by-op ones, each traced in a fresh process
_partition_input = Program(partition_input, "partition_input")


class GNNBisector:
    """Paper A's two modules plus the settings they need at inference."""

    def __init__(self, config: ModelConfig, embedding: SpectralEmbedding, partition: PartitionModule):
        self.config, self.embedding, self.partition = config, embedding, partition
        self._compiled: tuple[Compiled, Compiled] | None = None

    @classmethod
    def init(cls, config: ModelConfig = ModelConfig(), seed: int = 0) -> "GNNBisector":
        rngs = nnx.Rngs(seed)
        return cls(config, SpectralEmbedding(config.embed_hidden, rngs=rngs),
                   PartitionModule(config.part_hidden, rngs=rngs))

    # -- weights ---------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        tensors = {}
        for prefix, module in (("embedding", self.embedding), ("partition", self.partition)):
            for key, value in _flatten(nnx.to_pure_dict(nnx.state(module, nnx.Param))).items():
                tensors[f"{prefix}.{key}"] = np.asarray(value)
        meta = {"config": json.dumps(dataclasses.asdict(self.config))}
        atomic_write_bytes(path, stn.save(tensors, metadata=meta))

    @classmethod
    def load(cls, path: str | Path | None = None) -> "GNNBisector":
        """Load weights (default: the ones shipped in the package)."""
        if path is None:
            data = resources.files("jaxsafe.graphs").joinpath("weights").joinpath(WEIGHTS_FILE).read_bytes()
            source = f"shipped {WEIGHTS_FILE}"
        else:
            path = Path(path)
            if not path.is_file():
                raise UserError(f"weights file not found: {path}")
            data, source = path.read_bytes(), str(path)
        try:
            (header_len,) = struct.unpack("<Q", data[:8])
            meta = json.loads(data[8: 8 + header_len]).get("__metadata__", {})
            config = ModelConfig(**json.loads(meta["config"]))
            tensors = stn.load(data)
        except (KeyError, TypeError, ValueError, struct.error) as e:
            raise UserError(f"{source}: not a GNN bisector weights file ({e})") from None
        # abstract modules: no initializer runs (their compilation cost 1.7 s here); one trace for both
        model = cls(config, *nnx.eval_shape(lambda: (SpectralEmbedding(config.embed_hidden, rngs=nnx.Rngs(0)),
                                                     PartitionModule(config.part_hidden, rngs=nnx.Rngs(0)))))
        for prefix, module in (("embedding", model.embedding), ("partition", model.partition)):
            state = nnx.state(module, nnx.Param)
            pure = _flatten(nnx.to_pure_dict(state))
            for key, value in pure.items():
                name = f"{prefix}.{key}"
                if name not in tensors:
                    raise UserError(f"{source}: missing tensor '{name}'")
                if tensors[name].shape != np.shape(value):
                    raise UserError(f"{source}: tensor '{name}' has shape {tensors[name].shape}, expected {np.shape(value)}")
                pure[key] = jax.device_put(tensors[name])  # jnp.asarray would compile a program per shape
            nnx.replace_by_pure_dict(state, _unflatten(pure))
            nnx.update(module, state)
        return model

    # -- inference -------------------------------------------------------------------
    def hierarchy(self, adj: sp.csr_matrix, seed: int = 0) -> Hierarchy:
        return build_hierarchy(adj, coarsest_size=self.config.coarsest_size, seed=seed)

    def predict(self, adj: sp.csr_matrix, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        """Fiedler estimate ``f`` and side probabilities ``y [n, 2]`` of a connected graph.

        Returns ``(f, y, seconds)`` with the wall time split into ``hierarchy``
        (coarsening and padding) and ``network`` (both modules). Runs on the
        ELL inference layout (``pad_levels(..., ell=True)``; equal to the
        edge layout within float32 rounding, tested) with vertices stored in
        :func:`~jaxsafe.graphs.batching.locality_ranks` order.
        """
        t0 = time.perf_counter()
        h = self.hierarchy(adj, seed)
        ranks = locality_ranks(h)
        levels = pad_levels(h, ell=True, ranks=ranks)
        t1 = time.perf_counter()
        f = self.fiedler(h, levels, ranks)
        y = self.probabilities(levels, f, ranks)
        t2 = time.perf_counter()
        return f, y, {"hierarchy": t1 - t0, "network": t2 - t1}

    def _modules(self) -> tuple[Compiled, Compiled]:
        if self._compiled is None:
            self._compiled = (Compiled(self.embedding), Compiled(self.partition))
        return self._compiled

    def fiedler(self, h: Hierarchy, levels: list[PaddedLevel], ranks: list[np.ndarray] | None = None) -> np.ndarray:
        """Run the embedding module level by level; Fiedler estimate of the finest graph.

        Starts at level ``min(depth − 1, max_up_levels)`` (see :class:`ModelConfig`).
        ``ranks``: the row order the levels were padded in (``pad_levels``), if any.
        """
        emb, _ = self._modules()
        start = min(h.depth - 1, self.config.max_up_levels)
        x0 = coarsest_features(h.levels[start], self.config.laplacian, levels[start].mask.shape[0])
        if ranks is not None:
            x0[ranks[start]] = x0[: h.levels[start].n].copy()
        q = np.asarray(embed(emb, levels[: start + 1], x0, orthonormalize=False), np.float64)
        q = q[: h.levels[0].n] if ranks is None else q[ranks[0]]
        return fiedler_from_embedding(h.levels[0].adj, q, self.config.laplacian)

    def probabilities(self, levels: list[PaddedLevel], f: np.ndarray, ranks: list[np.ndarray] | None = None
                      ) -> np.ndarray:
        """Run the partitioning module's V-cycle level by level (``ranks`` as in :meth:`fiedler`)."""
        _, part = self._modules()
        top = levels[0]
        rows = np.arange(len(f)) if ranks is None else ranks[0]
        f_pad = np.zeros(top.mask.shape[0], np.float32)
        f_pad[rows] = f
        y = vcycle(part, levels, _partition_input(f_pad, top.mask, top.n))
        return np.asarray(y, np.float64)[rows]


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _unflatten(flat: dict) -> dict:
    tree: dict = {}
    for key, v in flat.items():
        *parents, leaf = key.split(".")
        node = tree
        for p in parents:
            node = node.setdefault(int(p) if p.isdigit() else p, {})
        node[int(leaf) if leaf.isdigit() else leaf] = v
    return tree
