"""Training support: next-token loss, trainable-subset selection, a generic jitted step.

The step factory is what the RMU and TAR trainers reuse: the model is split into
(graphdef, state); the gradient is taken only with respect to the parameters a
filter selects (e.g. ``layers.5-7.mlp.down_proj``), the rest stay frozen, and the
step is a pure, jitted ``(TrainState, batch) -> (TrainState, metrics)``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxsafe.errors import UserError


def next_token_loss(logits: jax.Array, input_ids: jax.Array, loss_mask: jax.Array) -> jax.Array:
    """Mean cross-entropy −log p(x_{t+1} | x_≤t) over the tokens t+1 where ``loss_mask`` is 1.

    ``loss_mask`` is aligned with ``input_ids`` (1 = this token is a prediction target;
    its first column is never a target). Computed in float32; 0 if nothing is masked in.
    """
    logits = logits[:, :-1].astype(jnp.float32)
    targets = input_ids[:, 1:]
    mask = loss_mask[:, 1:].astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    return jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1.0)


@dataclasses.dataclass(frozen=True)
class PathSelector:
    """Matches parameter paths by dotted patterns, e.g. ``layers.5-7.mlp.down_proj``.

    A pattern matches a path when each of its components matches the path's
    component at the same place (the path may continue: ``layers.3`` selects the
    whole layer). A component is ``a-b`` (an integer range, inclusive), an integer,
    or a glob (``*``, ``*_proj``).
    """

    patterns: tuple[str, ...]

    def __call__(self, path: tuple, _value: Any = None) -> bool:
        return any(self._matches(p.split("."), path) for p in self.patterns)

    @staticmethod
    def _matches(components: Sequence[str], path: tuple) -> bool:
        if len(components) > len(path):
            return False
        for comp, part in zip(components, path):
            lo, dash, hi = comp.partition("-")
            if dash and lo.isdigit() and hi.isdigit():
                if not (isinstance(part, int) and int(lo) <= part <= int(hi)):
                    return False
            elif not fnmatch.fnmatchcase(str(part), comp):
                return False
        return True


def select_params(model_or_state, selection: str | Sequence[str]):
    """An NNX filter for the parameters named by ``selection`` (comma-separated patterns).

    Every pattern must select at least one parameter of ``model_or_state`` (a module
    or an ``nnx.State``), so a typo is a :class:`UserError`, not a silently frozen model.
    """
    patterns = tuple(p.strip() for p in (selection.split(",") if isinstance(selection, str) else selection))
    if not patterns or not all(patterns):
        raise UserError(f"empty parameter selection {selection!r}")
    state = model_or_state if isinstance(model_or_state, nnx.State) else nnx.state(model_or_state, nnx.Param)
    paths = [p for p, v in nnx.to_flat_state(state) if isinstance(v, nnx.Param)]
    for pattern in patterns:
        if not any(PathSelector((pattern,))(p) for p in paths):
            examples = ", ".join(".".join(map(str, p)) for p in paths[:3])
            raise UserError(f"parameter selection {pattern!r} matches no parameter (paths look like: {examples}, ...)")
    return nnx.All(nnx.Param, PathSelector(patterns))


class TrainState(NamedTuple):
    """Everything a step changes: step count, all model variables, optimizer state of the trainable ones."""

    step: jax.Array
    params: nnx.State
    opt_state: optax.OptState


def init_train_state(model: nnx.Module, optimizer: optax.GradientTransformation, trainable_filter=nnx.Param
                     ) -> tuple[nnx.GraphDef, TrainState]:
    """Split ``model`` into (graphdef, :class:`TrainState`) with optimizer state for the trainable subset."""
    graphdef, params = nnx.split(model)
    trainable = nnx.filter_state(params, trainable_filter)
    if not jax.tree.leaves(trainable):
        raise UserError("the trainable-parameter filter selects nothing")
    return graphdef, TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(trainable))


def make_train_step(graphdef: nnx.GraphDef, loss_fn: Callable[[nnx.Module, Any], tuple[jax.Array, dict]],
                    optimizer: optax.GradientTransformation, trainable_filter=nnx.Param
                    ) -> Callable[[TrainState, Any], tuple[TrainState, dict]]:
    """A jitted pure step ``(state, batch) -> (state, metrics)``.

    ``loss_fn(model, batch) -> (loss, metrics)`` gets the merged model; any randomness
    or frozen reference outputs it needs travel in ``batch``. Gradients flow only to
    the variables ``trainable_filter`` selects; the others are passed through
    unchanged. Metrics always include ``loss`` and the gradient's global ``grad_norm``.
    The input state is donated (its buffers are reused for the output).
    """

    def step(state: TrainState, batch) -> tuple[TrainState, dict]:
        trainable, frozen = nnx.split_state(state.params, trainable_filter, ...)

        def objective(trainable):
            return loss_fn(nnx.merge(graphdef, trainable, frozen), batch)

        (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(trainable)
        updates, opt_state = optimizer.update(grads, state.opt_state, trainable)
        trainable = optax.apply_updates(trainable, updates)
        metrics = {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads)}
        return TrainState(state.step + 1, nnx.merge_state(trainable, frozen), opt_state), metrics

    return jax.jit(step, donate_argnums=0)


def lm_loss_fn(model: nnx.Module, batch: dict) -> tuple[jax.Array, dict]:
    """The plain fine-tuning objective for :func:`make_train_step`: batch has
    ``input_ids``, ``attention_mask`` and ``loss_mask`` ([B, T] each)."""
    logits = model(batch["input_ids"], batch["attention_mask"])
    return next_token_loss(logits, batch["input_ids"], batch["loss_mask"]), {}
