"""`jaxsafe demo` step: ECDSep and Adam side by side on the Rosenbrock function."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import optax

from jaxsafe.io import atomic_write_json
from jaxsafe.optim.ecdsep import ecdsep


def _rosenbrock(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def _final_loss(opt, steps: int, needs_value: bool) -> float:
    x0 = jnp.array([-1.5, 2.0])

    def step(carry, _):
        x, state = carry
        value, grads = jax.value_and_grad(_rosenbrock)(x)
        updates, state = opt.update(grads, state, x, **({"value": value} if needs_value else {}))
        return (optax.apply_updates(x, updates), state), None

    (x, _), _ = jax.jit(lambda x: jax.lax.scan(step, (x, opt.init(x)), None, length=steps))(x0)
    return float(_rosenbrock(x))


def demo(out_dir: Path) -> None:
    """Minimize Rosenbrock from (−1.5, 2) for 500 steps with ECDSep and with Adam; print both losses."""
    steps = 500
    losses = {
        "ecdsep(lr=0.1, eta=1)": _final_loss(ecdsep(0.1, eta=1.0), steps, True),
        "adam(lr=0.03)": _final_loss(optax.adam(0.03), steps, False),
    }
    for name, loss in losses.items():
        print(f"   {name:24s} Rosenbrock loss after {steps} steps: {loss:.3g}")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "rosenbrock.json", {"steps": steps, "final_loss": losses})
