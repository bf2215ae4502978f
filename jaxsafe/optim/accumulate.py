"""Gradient accumulation that averages the loss value together with the gradient.

ECDSep computes its energy from the loss value (``value=``), so an accumulated
step must see the mean loss of the same micro-batches whose gradients it averages.
``optax.MultiSteps`` averages only the gradients and forwards the *last*
micro-batch's extra arguments, which would give ECDSep a gradient and a loss from
different batches.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxsafe.errors import UserError


class AccumulateState(NamedTuple):
    """State of :func:`accumulate_gradients`.

    Attributes:
      mini_step: micro-batches accumulated so far in this step, in ``[0, every_k)``.
      grad_sum: running sum of the gradients (float32 or wider).
      value_sum: running sum of the loss values.
      inner_state: the wrapped transformation's state.
    """

    mini_step: jax.Array
    grad_sum: optax.Updates
    value_sum: jax.Array
    inner_state: optax.OptState


def accumulate_gradients(inner: optax.GradientTransformation, every_k: int) -> optax.GradientTransformationExtraArgs:
    """Apply ``inner`` once every ``every_k`` calls, to the mean gradient and mean loss.

    Calls 1..k−1 of each group return zero updates and only accumulate; call k
    calls ``inner.update(mean_grad, inner_state, params, value=mean_value, **extra)``
    (``extra`` from that last call, e.g. ``noise=``) and resets the sums. The
    result equals one step of ``inner`` on the concatenated batch when the loss is
    a mean over equal-sized micro-batches.

    Args:
      inner: the transformation to wrap, typically :func:`jaxsafe.optim.ecdsep`.
      every_k: number of micro-batches per applied step (a Python int ≥ 1).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose update needs ``value=``.

    Example:
      >>> opt = accumulate_gradients(ecdsep(0.1, eta=1.0), every_k=4)
      >>> # per micro-batch: value, g = jax.value_and_grad(loss)(params, mb)
      >>> # updates, state = opt.update(g, state, params, value=value)
    """
    if not isinstance(every_k, int) or every_k < 1:
        raise UserError(f"accumulate_gradients: every_k must be an int >= 1, got {every_k!r}")
    inner = optax.with_extra_args_support(inner)
    acc_dtype = lambda x: jnp.promote_types(x.dtype, jnp.float32)  # noqa: E731

    def init_fn(params):
        return AccumulateState(
            mini_step=jnp.zeros([], jnp.int32),
            grad_sum=jax.tree.map(lambda p: jnp.zeros(p.shape, acc_dtype(p)), params),
            value_sum=jnp.zeros([], jnp.promote_types(jnp.result_type(float), jnp.float32)),
            inner_state=inner.init(params),
        )

    def update_fn(updates, state, params=None, *, value=None, **extra_args):
        if value is None:
            raise UserError("accumulate_gradients: update needs value= (the micro-batch loss)")
        grad_sum = jax.tree.map(lambda a, g: a + g.astype(a.dtype), state.grad_sum, updates)
        value_sum = state.value_sum + jnp.asarray(value, state.value_sum.dtype)
        last = state.mini_step == every_k - 1

        def apply():
            mean_g = jax.tree.map(lambda a, g: (a / every_k).astype(g.dtype), grad_sum, updates)
            return inner.update(mean_g, state.inner_state, params, value=value_sum / every_k, **extra_args)

        def hold():
            return jax.tree.map(jnp.zeros_like, updates), state.inner_state

        new_updates, inner_state = jax.lax.cond(last, apply, hold)
        return new_updates, AccumulateState(
            mini_step=jnp.where(last, 0, state.mini_step + 1),
            grad_sum=jax.tree.map(lambda a: jnp.where(last, jnp.zeros_like(a), a), grad_sum),
            value_sum=jnp.where(last, jnp.zeros_like(value_sum), value_sum),
            inner_state=inner_state,
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
