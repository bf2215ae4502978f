"""Device meshes and sharding rules.

jaxsafe shards with ``jax.jit`` over a :class:`jax.sharding.Mesh` with three named
axes — ``data`` (pure data parallelism), ``fsdp`` (data parallelism whose
parameters are also sharded, ZeRO-3 style) and ``tensor`` (Megatron-style model
parallelism). Arrays are placed with ``NamedSharding`` and everything inside
``jit`` follows by GSPMD propagation; no library code uses ``shard_map``.

Arrays are annotated with *logical* axis names ("batch", "embed", "mlp", ...).
Model parameters carry theirs as NNX metadata set where they are created
(``out_sharding``, e.g. ``("layers", "embed", "mlp")`` for the stacked gate
projections); :func:`param_shardings` / :func:`shard_params` read it.
:data:`DEFAULT_RULES` maps logical names to mesh axes. A dimension that a mesh axis
does not divide is left replicated instead of failing, so tiny test models shard too.
Multi-host runs call :func:`initialize_distributed` once, before anything else
touches JAX (``jaxsafe --coordinator HOST:PORT --num-processes N --process-id I ...``
does it for the command line); every process then runs the same program, and
:func:`is_primary` decides which one writes files.
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxsafe.errors import UserError

AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axis (or tuple of mesh axes, or None for replicated)
DEFAULT_RULES: Mapping[str, str | tuple[str, ...] | None] = {
    "batch": ("data", "fsdp"),
    "seq": None,
    "embed": "fsdp",
    "mlp": "tensor",
    "heads": "tensor",
    "kv_heads": "tensor",
    "head_dim": None,
    "vocab": "tensor",
    "layers": None,
    "nodes": ("data", "fsdp"),
}


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh with axes ("data", "fsdp", "tensor"); one size may be -1 (use what is left)."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = [data, fsdp, tensor]
    if sizes.count(-1) > 1:
        raise UserError("at most one mesh axis size may be -1")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if known <= 0 or len(devices) % known:
            raise UserError(f"mesh sizes {sizes} do not divide the {len(devices)} devices")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices) or min(sizes) < 1:
        raise UserError(f"mesh data={sizes[0]} fsdp={sizes[1]} tensor={sizes[2]} needs {math.prod(sizes)} devices, have {len(devices)}")
    return Mesh(np.asarray(devices).reshape(sizes), AXES)


def logical_to_spec(
    logical_axes: Sequence[str | None],
    mesh: Mesh,
    rules: Mapping[str, Any] = DEFAULT_RULES,
    shape: Sequence[int] | None = None,
) -> P:
    """PartitionSpec for an array whose dimensions carry ``logical_axes``.

    A mesh axis is used at most once per array; with ``shape`` given, a dimension not
    divisible by its mesh axes' total size stays replicated.
    """
    used: set[str] = set()
    spec = []
    for dim, name in enumerate(logical_axes):
        if name is not None and name not in rules:
            raise ValueError(f"unknown logical axis {name!r}; known: {sorted(rules)}")
        target = rules.get(name) if name is not None else None
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        axes = tuple(a for a in axes if a not in used and mesh.shape[a] > 1)
        if shape is not None and axes and shape[dim] % math.prod(mesh.shape[a] for a in axes):
            axes = ()
        used.update(axes)
        spec.append(axes[0] if len(axes) == 1 else (axes or None))
    return P(*spec)


def logical_to_sharding(
    logical_axes: Sequence[str | None],
    mesh: Mesh,
    rules: Mapping[str, Any] = DEFAULT_RULES,
    shape: Sequence[int] | None = None,
) -> NamedSharding:
    return NamedSharding(mesh, logical_to_spec(logical_axes, mesh, rules, shape))


def shard_pytree(tree: Any, logical_axes: Any, mesh: Mesh, rules: Mapping[str, Any] = DEFAULT_RULES) -> Any:
    """Place every array of ``tree`` by the matching entry (a tuple of names) of ``logical_axes``."""
    def place(x, axes):
        return jax.device_put(x, logical_to_sharding(axes, mesh, rules, np.shape(x)))

    return jax.tree.map(place, tree, logical_axes, is_leaf=lambda a: isinstance(a, tuple))


def param_axes(var: Any, path: tuple = ()) -> tuple[str | None, ...]:
    """The logical axes an NNX variable was created with (its ``out_sharding`` metadata)."""
    axes = var.get_metadata().get("out_sharding") if hasattr(var, "get_metadata") else None
    if axes is None:
        name = ".".join(map(str, path)) or "a variable"
        raise ValueError(f"{name} has no logical sharding axes (create it with out_sharding=... metadata)")
    if len(axes) != len(var.shape):
        raise ValueError(f"{'.'.join(map(str, path))}: logical axes {axes} do not fit shape {tuple(var.shape)}")
    return tuple(axes)


def param_shardings(state: Any, mesh: Mesh, rules: Mapping[str, Any] = DEFAULT_RULES) -> Any:
    """A ``NamedSharding`` for every variable of an ``nnx.State`` (or Module), from its logical axes."""
    from flax import nnx

    if isinstance(state, nnx.Module):
        state = nnx.state(state)
    flat = [(path, logical_to_sharding(param_axes(var, path), mesh, rules, var.shape))
            for path, var in nnx.to_flat_state(state)]
    return nnx.from_flat_state(flat)


def shard_params(model_or_state: Any, mesh: Mesh, rules: Mapping[str, Any] = DEFAULT_RULES) -> Any:
    """Place every parameter by its logical axes: a Module is updated in place (and returned),
    a State is returned placed."""
    from flax import nnx

    if isinstance(model_or_state, nnx.Module):
        state = nnx.state(model_or_state)
        nnx.update(model_or_state, shard_params(state, mesh, rules))
        return model_or_state
    return jax.device_put(model_or_state, param_shardings(model_or_state, mesh, rules))


def batch_sharding(mesh: Mesh, ndim: int = 1) -> NamedSharding:
    """Sharding of an array whose leading axis is the batch."""
    return NamedSharding(mesh, logical_to_spec(("batch",) + (None,) * (ndim - 1), mesh))


def shard_batch(tree: Any, mesh: Mesh) -> Any:
    """Split every array of ``tree`` along its leading (batch) axis over data × fsdp."""
    n = mesh.shape["data"] * mesh.shape["fsdp"]

    def place(x):
        x = np.asarray(x) if not isinstance(x, jax.Array) else x
        if x.shape[0] % n:
            raise UserError(f"batch size {x.shape[0]} is not divisible by the {n} data-parallel devices")
        return jax.device_put(x, batch_sharding(mesh, x.ndim))

    return jax.tree.map(place, tree)


def to_host(x: jax.Array) -> np.ndarray:
    """The whole value of ``x`` as a NumPy array, in every process.

    A result sharded over a multi-process mesh spans devices this process cannot
    read; it is all-gathered across processes (every process must call this, as
    with any collective). Arrays this process holds entirely are just copied."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def barrier(name: str) -> None:
    """Wait until every process has reached ``barrier(name)`` (nothing with one process):
    e.g. before the others read what the primary process has just written."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def primary_value(value: int) -> int:
    """The primary process's ``value``, in every process (a broadcast when there are
    several): e.g. how much of an interrupted job the primary found done, so that all
    processes resume at the same point."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Start multi-host JAX (``jax.distributed.initialize``) when asked to or when a launcher set it up.

    Returns True if JAX now spans several processes. With no arguments it initializes
    only if the environment names a coordinator (``JAX_COORDINATOR_ADDRESS``) or a
    cluster JAX detects by itself (SLURM, Cloud TPU, ...) — call it before any other
    JAX use in a multi-host job.
    """
    explicit = coordinator_address is not None or num_processes is not None
    if explicit or os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("SLURM_JOB_ID") or os.environ.get("TPU_WORKER_HOSTNAMES"):
        # CPU processes exchange collectives through gloo (GPU and TPU use their own transport)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id)
    return jax.process_count() > 1


def is_primary() -> bool:
    """Whether this process writes the job's files (process 0; always true in a one-process job).

    Every process runs the same program on its part of the data; checkpoints are
    written by all of them together (orbax), everything else by the primary alone.
    """
    return jax.process_index() == 0


def data_parallel_mesh(count: int) -> Mesh | None:
    """A mesh with ``count`` devices on its ``data`` axis (-1: every device of every process),
    or None for one device."""
    total = jax.device_count()
    count = total if count == -1 else count
    if count == 1:
        return None
    if count < 1 or count > total:
        raise UserError(f"data_parallel={count}: {total} devices available")
    if jax.process_count() > 1 and count != total:
        raise UserError(f"data_parallel={count}: a multi-process run uses every device (data_parallel=-1 or {total})")
    return make_mesh(data=count, devices=jax.devices()[:count])


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """``tree`` copied whole onto every device of ``mesh`` (unchanged without a mesh)."""
    return tree if mesh is None else jax.device_put(tree, NamedSharding(mesh, P()))
