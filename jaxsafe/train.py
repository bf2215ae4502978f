"""The training core: one pure step that every jaxsafe trainer runs on.

A trainer supplies a loss ``loss_fn(params, batch, frozen) -> (loss, metrics)``
over the *trainable* parameters only; everything held fixed (the rest of the
model, reference activations, control vectors) travels in ``frozen``. The core
turns it into

    state, metrics = step(state, batch, frozen)

with ``state`` a :class:`TrainState` (step count, trainable parameters, optimizer
state) and the optimizer any optax transformation — ``optimizer.update`` always
receives ``value=loss``, so loss-aware ones such as ECDSep drive every trainer.
The step is not jitted: callers jit it (and donate ``state``), ``lax.scan`` it
(TAR's inner attacks) or ``vmap`` it (several attacks at once).

Parameter subsets are named by dotted patterns (:func:`select`): ``layers.0-2.mlp.down_proj``
selects the down-projections of layers 0–2. When a model stores its layers
stacked (one array with a leading layer axis), a layer range selects a *slice*
of that axis: only the slice is trained and held in the optimizer state, and
:meth:`Selection.merge` writes it back into the full array.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any, Callable, NamedTuple, Sequence

import jax
import optax
from flax import nnx

from jaxsafe.errors import UserError

LossFn = Callable[[Any, Any, Any], tuple[jax.Array, dict]]


class TrainState(NamedTuple):
    """Everything a step changes: the step count, the trainable parameters and their optimizer state."""

    step: jax.Array
    params: Any
    opt_state: optax.OptState


def init_state(params: Any, optimizer: optax.GradientTransformation) -> TrainState:
    """A fresh :class:`TrainState` at step 0 for the trainable ``params``."""
    return TrainState(jax.numpy.zeros((), jax.numpy.int32), params, optimizer.init(params))


def loss_and_grad(loss_fn: LossFn, params: Any, batch: Any, frozen: Any = None) -> tuple[tuple[jax.Array, dict], Any]:
    """``((loss, metrics), ∇_params loss)`` of ``loss_fn(params, batch, frozen)``."""
    return jax.value_and_grad(loss_fn, has_aux=True)(params, batch, frozen)


def apply_gradients(optimizer: optax.GradientTransformationExtraArgs, state: TrainState, grads: Any,
                    loss: jax.Array) -> TrainState:
    """One optimizer step from ``grads`` (taken at ``state.params``, where the loss was ``loss``)."""
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params, value=loss)
    return TrainState(state.step + 1, optax.apply_updates(state.params, updates), opt_state)


def split_microbatches(batch: Any, microbatches: int) -> Any:
    """``batch`` with every array of a leading (batch) axis B reshaped to [k, B/k, ...].

    Microbatch j holds rows j, j + k, j + 2k, ...: the reshape keeps the batch axis
    major, so a batch sharded over the data axis stays sharded in each microbatch (a
    contiguous split would put each microbatch on one device). 0-d leaves (a topic
    index) are shared by every microbatch.
    """
    k = microbatches

    def split(x):
        x = jax.numpy.asarray(x)
        if x.ndim == 0:
            return jax.numpy.broadcast_to(x, (k,))
        if x.shape[0] % k:
            raise UserError(f"microbatches={k} does not divide the batch of {x.shape[0]} rows")
        return x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1)

    return jax.tree.map(split, batch)


def _check_microbatches(microbatches: Any) -> None:
    if not isinstance(microbatches, int) or isinstance(microbatches, bool) or microbatches < 1:
        raise UserError(f"microbatches must be an int >= 1, got {microbatches!r}")


def accumulated_loss_and_grad(loss_fn: LossFn, params: Any, batch: Any, frozen: Any = None, *,
                              microbatches: int = 1) -> tuple[tuple[jax.Array, dict], Any]:
    """:func:`loss_and_grad` computed over ``microbatches`` slices of ``batch`` in a ``lax.scan``.

    Returns the mean of the microbatches' losses, metrics and gradients (summed in
    float32 or wider, returned in the parameters' dtypes). Only one microbatch's
    activations are alive at a time. The mean equals the full batch's loss and gradient
    when the loss is a mean over rows of equal weight (a token-mean loss over rows of
    unequal token counts weighs each microbatch's tokens by 1/k, not by its share).
    """
    _check_microbatches(microbatches)
    if microbatches == 1:
        return loss_and_grad(loss_fn, params, batch, frozen)
    jnp = jax.numpy
    wide = lambda x: jnp.promote_types(x.dtype, jnp.float32)  # noqa: E731

    def body(grad_sum, micro):
        (loss, metrics), grads = loss_and_grad(loss_fn, params, micro, frozen)
        grad_sum = jax.tree.map(lambda a, g: a + g.astype(a.dtype), grad_sum, grads)
        return grad_sum, (loss, metrics)

    zeros = jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), wide(p)), params)
    grad_sum, (losses, metrics) = jax.lax.scan(body, zeros, split_microbatches(batch, microbatches))
    grads = jax.tree.map(lambda a, p: (a / microbatches).astype(p.dtype), grad_sum, params)
    mean = lambda x: jnp.mean(x, axis=0)  # noqa: E731
    return (mean(losses), jax.tree.map(mean, metrics)), grads


def make_step(loss_fn: LossFn, optimizer: optax.GradientTransformationExtraArgs, *, microbatches: int = 1
              ) -> Callable[[TrainState, Any, Any], tuple[TrainState, dict]]:
    """The pure step ``(state, batch, frozen) -> (state, metrics)`` of ``loss_fn`` under ``optimizer``.

    ``optimizer`` must accept ``value=`` (``optax.with_extra_args_support`` makes any
    transformation do so; :func:`jaxsafe.optim.factory.make_optimizer` returns such).
    Metrics are the loss function's own plus ``loss`` and the gradient's global
    ``grad_norm``, all as device arrays (nothing is moved to the host).

    ``microbatches=k`` accumulates the gradient over k slices of each batch
    (:func:`accumulated_loss_and_grad`) before one optimizer update: the same step on
    the same batch, with the activations of B/k rows instead of B in memory.
    """
    _check_microbatches(microbatches)

    def step(state: TrainState, batch: Any, frozen: Any = None) -> tuple[TrainState, dict]:
        (loss, metrics), grads = accumulated_loss_and_grad(loss_fn, state.params, batch, frozen,
                                                           microbatches=microbatches)
        new_state = apply_gradients(optimizer, state, grads, loss)
        return new_state, {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads)}

    return step


def model_loss(graphdef: nnx.GraphDef, selection: "Selection | None",
               objective: Callable[[nnx.Module, Any], tuple[jax.Array, dict]]) -> LossFn:
    """Adapt ``objective(model, batch) -> (loss, metrics)`` to the core's ``loss_fn``.

    ``frozen`` is then the model's full parameter state; the trainable ``params``
    are written into it (:meth:`Selection.merge`) and the model is rebuilt from
    ``graphdef``. With ``selection=None`` the params are the whole state.
    """

    def loss_fn(params, batch, frozen):
        state = params if selection is None else selection.merge(params, frozen)
        return objective(nnx.merge(graphdef, state), batch)

    return loss_fn


# -- parameter subsets ------------------------------------------------------------------

def _match(components: Sequence[str], path: tuple) -> tuple[bool, tuple[int, int] | None]:
    """Whether ``components`` match a prefix of ``path``, and the layer slice they select.

    A numeric component (``3`` or ``0-2``) facing a path component that is not an
    integer names rows of a stacked array (its leading axis) and consumes no path
    component.
    """
    rows = None
    i = 0
    for comp in components:
        lo, dash, hi = comp.partition("-")
        numeric = (lo.isdigit() and hi.isdigit()) if dash else comp.isdigit()
        first, last = (int(lo), int(hi)) if dash else ((int(comp), int(comp)) if numeric else (0, 0))
        if i >= len(path):
            return False, None
        part = path[i]
        if numeric and not isinstance(part, int):
            if rows is not None:
                return False, None
            rows = (first, last + 1)
            continue
        if numeric:
            if not first <= part <= last:
                return False, None
        elif not fnmatch.fnmatchcase(str(part), comp):
            return False, None
        i += 1
    return True, rows


@dataclasses.dataclass(frozen=True)
class Selection:
    """The trainable part of a parameter state: for each selected path, ``None`` (the
    whole array) or ``(start, stop)`` rows of its leading (layer) axis."""

    parts: tuple[tuple[tuple, tuple[int, int] | None], ...]

    def split(self, params: nnx.State) -> nnx.State:
        """The trainable subset of ``params`` (sliced where a layer range was selected).

        Whole arrays (and a range covering the whole layer axis) are the same buffers as
        in ``params``: copy them before donating the subset to a step that also reads
        ``params``.
        """
        parts = dict(self.parts)
        chosen = []
        for path, var in nnx.to_flat_state(params):
            if path in parts:
                rows = parts[path]
                chosen.append((path, var if rows is None else var.replace(var[...][rows[0]:rows[1]])))
        return nnx.from_flat_state(chosen)

    def merge(self, trainable: nnx.State, params: nnx.State) -> nnx.State:
        """``params`` with the trainable subset written in (traceable; gradients flow to ``trainable``)."""
        parts = dict(self.parts)
        new = dict(nnx.to_flat_state(trainable))
        merged = []
        for path, var in nnx.to_flat_state(params):
            if path in new:
                rows = parts[path]
                value = new[path][...]
                if rows is not None:
                    value = jax.lax.dynamic_update_slice_in_dim(var[...], value.astype(var[...].dtype), rows[0], 0)
                var = var.replace(value)
            merged.append((path, var))
        return nnx.from_flat_state(merged)


def _union(a: tuple[int, int] | None, b: tuple[int, int] | None, name: str) -> tuple[int, int] | None:
    """Rows selected by two patterns on one array: the whole array, or one contiguous range."""
    if a is None or b is None:
        return None
    if max(a[0], b[0]) > min(a[1], b[1]):
        raise UserError(f"parameter selection: rows {a[0]}-{a[1] - 1} and {b[0]}-{b[1] - 1} of {name} are not "
                        "contiguous; select one range per array")
    return min(a[0], b[0]), max(a[1], b[1])


def select(params: nnx.State | nnx.Module, selection: str | Sequence[str]) -> Selection:
    """The :class:`Selection` named by ``selection`` (comma-separated dotted patterns).

    A pattern matches a parameter path when each component matches the path's
    component at the same place (the path may continue: ``layers.3`` is the whole
    layer). A component is an integer, an inclusive range ``a-b`` or a glob
    (``*``, ``*_proj``). Every pattern must select something, so a typo is an
    error, not a silently frozen model.
    """
    patterns = tuple(p.strip() for p in (selection.split(",") if isinstance(selection, str) else selection))
    if not patterns or not all(patterns):
        raise UserError(f"empty parameter selection {selection!r}")
    state = params if isinstance(params, nnx.State) else nnx.state(params, nnx.Param)
    flat = [(path, var) for path, var in nnx.to_flat_state(state) if isinstance(var, nnx.Param)]
    parts: dict[tuple, tuple[int, int] | None] = {}
    for pattern in patterns:
        hits = 0
        for path, var in flat:
            ok, rows = _match(pattern.split("."), path)
            if not ok:
                continue
            name = ".".join(map(str, path))
            shape = tuple(var.shape)  # also for abstract (ShapeDtypeStruct) states
            if rows is not None and (not shape or rows[1] > shape[0]):
                raise UserError(f"parameter selection {pattern!r}: rows {rows[0]}-{rows[1] - 1} are outside "
                                f"{name} of shape {tuple(shape)}")
            parts[path] = _union(parts[path], rows, name) if path in parts else rows
            hits += 1
        if not hits:
            examples = ", ".join(".".join(map(str, p)) for p, _ in flat[:3])
            raise UserError(f"parameter selection {pattern!r} matches no parameter (paths look like: {examples}, ...)")
    return Selection(tuple((p, parts[p]) for p, _ in flat if p in parts))
