"""ECDSep — Energy Conserving Descent with separable chaos — as an optax transformation.

De Luca, Gatti & Silverstein, "Improving Energy Conserving Descent for Machine
Learning: Theory and Practice" (arXiv:2306.00352). The parameters ``q`` move as a
particle whose energy ``H = log(s + |p|²) + η·log F̃(q)`` is conserved, with
``F̃ = F − F0``; the particle speeds up where the loss is low, so the time average
of its positions concentrates there. A small random rotation of the momentum (ν)
makes the motion chaotic without changing ``|p|``.

Numerics. All scalars (F̃, V = F̃^η, E, |p|²) are carried as logarithms, so that
``F̃ = 1e-8, η = 5`` (``V = 1e-40``, ``E/V ≈ 1e40``) neither under- nor overflows
in float32 or bfloat16. The momentum is stored as a unit direction ``p̂`` (a
pytree, float32 or wider) plus the scalar ``log |p|²``; every pytree-wide product
is rescaled by the larger of the two log-magnitudes before it is formed. Sums and
norms are global over all leaves and accumulated in float32 or wider (float64
when ``jax_enable_x64`` is on).

Cost. A step makes two sweeps over memory. Pass 1 takes the global sums as dots of
stored arrays (u·g and g·g; u·u only with noise or when flagged, see RENORM_EVERY;
u·q, g·q, q·q with weight decay), from which ‖p_new‖² follows in closed form; pass 2
writes the new direction and the update, which ``optax.apply_updates`` fuses into
the parameter write. Without noise and weight decay that is 9 passes over an array
of the parameters' size: 3 reads in dots, then u, g, p read and u, p written, plus a
read of the new direction (XLA:CPU does not fuse two outputs into one loop). Adam
makes 10 (benchmarks/optimizers.py counts them in the compiled HLO).
"""

from __future__ import annotations

import inspect
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxsafe.errors import UserError

NOISE_KINDS = ("gaussian", "hash")
# Without noise, ‖direction‖² is known in closed form (1, the direction being w/‖w‖)
# and u·u is measured only at the start, every RENORM_EVERY applied steps (bounding
# the float rounding drift to ~1e-6 in float32), and after a step whose closed-form
# ‖w‖² lost digits to cancellation (α² + β²‖G‖² ≥ WELL_CONDITIONED·‖w‖²: the force
# nearly reversed p).
RENORM_EVERY = 16
WELL_CONDITIONED = 10.0


class EcdsepState(NamedTuple):
    """State of :func:`ecdsep`.

    The momentum is ``p = exp(½·log_p2) · direction / ‖direction‖``.

    Attributes:
      count: applied steps (skipped calls do not count); the learning-rate
        schedule and the noise stream are indexed by it.
      direction: ``p̂`` up to a positive factor (≈ 1; the rotation's normalization
        is taken at the next step), shaped like the parameters, float32 or wider.
      log_p2: ``log |p|²`` (``-inf`` while ``p = 0``).
      log_energy: ``log E``, fixed at the first applied step.
      direction_norm2: ``‖direction‖²`` where the last applied step knows it in
        closed form (ν = 0 and a well-conditioned ``‖w‖²``: 1, or 0 for a zero
        direction); NaN where it must be measured (noise, start, ill-conditioned
        step, and every ``RENORM_EVERY`` applied steps).
      key: PRNG key (raw ``uint32[2]``) the noise is derived from.
      skipped: whether the last call was skipped (non-positive or non-finite
        ``F̃``, ``V ≤ eps2``, or a non-finite step).
      num_skipped: how many calls were skipped in total.
    """

    count: jax.Array
    direction: optax.Updates
    log_p2: jax.Array
    log_energy: jax.Array
    direction_norm2: jax.Array
    key: jax.Array
    skipped: jax.Array
    num_skipped: jax.Array


def _scalar_dtype():
    """float64 when x64 is on, else float32: the dtype of energies and norms."""
    return jnp.promote_types(jnp.result_type(float), jnp.float32)


def _wide(dtype):
    """The dtype the momentum is kept and updated in: the parameter's, at least float32."""
    return jnp.promote_types(dtype, jnp.float32)


def _is_static_zero(x) -> bool:
    return isinstance(x, (int, float)) and x == 0


def _lowbias32(x):
    """A 32-bit integer mixing function (xor-shift-multiply; bijective on uint32)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


# y = x·(B + D·x²) maps x, the standardized sum of the four bytes of a uniform
# 32-bit hash (Irwin–Hall, n = 4: kurtosis 2.7, 1021 levels 0.0068 apart), to the
# normal's kurtosis 3 at variance 1: (B, D) solve E y² = 1, E y⁴ = 3 with the exact
# moments of x (μ4 = 2.7, μ6 = 10.929, μ8 = 55.80, μ10 = 331.35, μ12 = 2187.3).
# Then E y⁶ = 14.46 (normal: 15), |y| ≤ 4.04, and sup |F_y − Φ| = 0.0032, about
# half of it the steps of the grid.
_CUBIC_B = 0.9490332780919546
_CUBIC_D = 0.01864238250204504
_BYTES_MEAN = 4 * 255 / 2
_BYTES_INV_STD = 1.0 / math.sqrt(4 * (256**2 - 1) / 12)


def _hash_normal(shape, key, dtype):
    """Counter-based, nearly normal draws: mean 0, variance 1, kurtosis 3.

    Element ``i`` of the leaf (row-major) is ``lowbias32(i·k₀' + k₁)`` with
    ``k₀' = k₀ | 1`` (odd, so distinct indices stay distinct; the key changes the
    affine map every step), whose four bytes are summed, standardized and bent by a
    cubic to the normal's fourth moment. The index is built from iotas, so the draw
    fuses into the update (no random-number state, no extra pass over memory) and is
    the same whatever the sharding; it costs about as much as a uniform from the same
    hash (the byte sum is two masked adds). tests/optim/test_ecdsep_noise.py compares
    it with N(0, 1): moments, tails, shape, correlations across coordinates, steps
    and leaves.
    """
    index = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(len(shape))):
        index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(stride)
        stride *= shape[axis]
    bits = _lowbias32(index * (key[0] | jnp.uint32(1)) + key[1])
    pairs = (bits & jnp.uint32(0x00FF00FF)) + ((bits >> 8) & jnp.uint32(0x00FF00FF))  # bytes 0+1, 2+3
    total = (pairs & 0xFFFF) + (pairs >> 16)
    x = (total.astype(jnp.float32) - _BYTES_MEAN) * _BYTES_INV_STD
    return (x * (_CUBIC_B + _CUBIC_D * x * x)).astype(dtype)


def _draw_noise(kind: str, key, count, shapes_dtypes):
    """The standard (mean 0, variance 1) draws for one applied step, one array per leaf."""
    step_key = jax.random.fold_in(key, count)
    leaf_keys = [jax.random.fold_in(step_key, i) for i in range(len(shapes_dtypes))]
    if kind == "gaussian":
        return [jax.random.normal(k, shape, dtype) for k, (shape, dtype) in zip(leaf_keys, shapes_dtypes)]
    return [_hash_normal(shape, k, dtype) for k, (shape, dtype) in zip(leaf_keys, shapes_dtypes)]


def _contract(a, b, dtype):
    """Σ a·b over all axes as one dot (XLA reads both arrays in place), in ``dtype``."""
    axes = tuple(range(a.ndim))
    return jax.lax.dot_general(a, b, ((axes, axes), ((), ())), preferred_element_type=a.dtype).astype(dtype)


def _validate(learning_rate, eta, f0, nu, s, delta_energy, weight_decay, eps1, eps2):
    checks = {
        "learning_rate": (learning_rate, lambda v: v >= 0, ">= 0"),
        "eta": (eta, lambda v: v > 0, "> 0 (the paper uses 1 <= eta <= 5)"),
        "nu": (nu, lambda v: v >= 0, ">= 0"),
        "s": (s, lambda v: v > 0, "> 0"),
        "delta_energy": (delta_energy, lambda v: v >= 0, ">= 0"),
        "weight_decay": (weight_decay, lambda v: v >= 0, ">= 0"),
        "eps1": (eps1, lambda v: v >= 0, ">= 0"),
        "eps2": (eps2, lambda v: v >= 0, ">= 0"),
        "f0": (f0, math.isfinite, "finite"),
    }
    for name, (value, ok, what) in checks.items():
        if isinstance(value, (int, float)) and not (math.isfinite(value) and ok(value)):
            raise UserError(f"ecdsep: {name} must be {what}, got {value!r}")


def _build(learning_rate, eta, f0, nu, s, delta_energy, weight_decay, conserve_energy, eps1, eps2, seed, noise_kind):
    _validate(learning_rate, eta, f0, nu, s, delta_energy, weight_decay, eps1, eps2)
    if noise_kind not in NOISE_KINDS:
        raise UserError(f"ecdsep: noise must be one of {', '.join(map(repr, NOISE_KINDS))}, got {noise_kind!r}")
    no_noise = _is_static_zero(nu)
    no_decay = _is_static_zero(weight_decay)
    log_eps2 = (math.log(eps2) if eps2 > 0 else -math.inf) if isinstance(eps2, (int, float)) else None

    def init_fn(params):
        sdt = _scalar_dtype()
        return EcdsepState(
            count=jnp.zeros([], jnp.int32),
            direction=jax.tree.map(lambda q: jnp.zeros(q.shape, _wide(q.dtype)), params),
            log_p2=jnp.full([], -jnp.inf, sdt),
            log_energy=jnp.zeros([], sdt),
            direction_norm2=jnp.full([], jnp.nan, sdt),
            key=jax.random.PRNGKey(seed),
            skipped=jnp.zeros([], bool),
            num_skipped=jnp.zeros([], jnp.int32),
        )

    def update_fn(updates, state, params=None, *, value=None, noise=None, **extra_args):
        del extra_args  # other transformations' arguments, forwarded by optax.chain
        if params is None:
            raise UserError("ecdsep: update needs params (the weight-decay term and F̃ depend on them)")
        if value is None:
            raise UserError("ecdsep: update needs value= (the loss at params); the energy is computed from it")
        sdt = _scalar_dtype()
        grads, treedef = jax.tree.flatten(updates)
        qs = treedef.flatten_up_to(params)
        old_dirs = treedef.flatten_up_to(state.direction)
        wide_g = [g.astype(u.dtype) for g, u in zip(grads, old_dirs)]
        wide_q = [q.astype(u.dtype) for q, u in zip(qs, old_dirs)]

        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        lr, eta_, f0_, s_, de, wd, e1 = (jnp.asarray(v, sdt) for v in (lr, eta, f0, s, delta_energy, weight_decay, eps1))
        le2 = jnp.asarray(log_eps2, sdt) if log_eps2 is not None else jnp.log(jnp.asarray(eps2, sdt))
        first = state.count == 0

        # Pass 1 reads the stored arrays only: every global sum the step needs is a
        # contraction of u (direction), g and q, so no temporary pytree is formed.
        # The direction u is p̂ up to a positive factor; at the first step u = −g.
        def dot(a, b):
            return sum(_contract(x, y, sdt) for x, y in zip(a, b))

        gg, ug = dot(wide_g, wide_g), dot(old_dirs, wide_g)
        if no_noise:  # u·u is known unless flagged: skip that pass (lax.cond reads u only when needed)
            measure = jnp.isnan(state.direction_norm2) | (state.count % RENORM_EVERY == 0)
            uu = jax.lax.cond(measure, lambda us: dot(us, us), lambda us: state.direction_norm2, old_dirs)
        else:
            uu = dot(old_dirs, old_dirs)
        uu, ug = jnp.where(first, gg, uu), jnp.where(first, -gg, ug)
        if no_decay:
            qq, u_force, force2 = jnp.zeros([], sdt), ug, gg  # force G = g
        else:  # G = g + wd·q (coupled L2), ‖q‖² enters F̃
            qq, gq, uq = dot(wide_q, wide_q), dot(wide_g, wide_q), dot(old_dirs, wide_q)
            uq = jnp.where(first, -gq, uq)
            u_force, force2 = ug + wd * uq, gg + 2.0 * wd * gq + wd * wd * qq
        inv_u = jnp.where(uu > 0, jax.lax.rsqrt(jnp.where(uu > 0, uu, 1.0)), 0.0)

        ft = jnp.asarray(value, sdt) + 0.5 * wd * qq - f0_
        log_ft = jnp.log(ft)
        log_v = eta_ * log_ft

        # First applied step: E = V·(s + δE_eff), |p|² = δE_eff (δE_eff = δE if s == 1 else 1).
        de_eff = jnp.where(s_ == 1, de, 1.0)
        log_e = jnp.where(first, log_v + jnp.log(s_ + de_eff), state.log_energy)
        lp2 = jnp.where(first, jnp.where(gg > 0, jnp.log(de_eff), -jnp.inf), state.log_p2)
        lp2 = jnp.where(uu > 0, lp2, -jnp.inf)  # no direction (zero gradient at the start): p = 0

        # Energy conservation: |p|² → p2* = E/V − s, i.e. p ← c·p.
        d = log_e - log_v
        p2_star = jnp.exp(d) - s_
        log_p2_star = d + jnp.log1p(-s_ * jnp.exp(-d))
        keep = (jnp.abs(p2_star - jnp.exp(lp2)) < e1) | (p2_star < 0) | jnp.isneginf(lp2) | ~jnp.asarray(conserve_energy)
        log_cp = jnp.where(keep, 0.5 * lp2, 0.5 * log_p2_star)  # log |c·p|

        # p ← c·p − lr·(η/F̃)·G = e^m·w, w = α·û − β·G with m the larger log-magnitude.
        log_force = jnp.log(eta_) - log_ft
        m = jnp.maximum(log_cp, log_force)
        m = jnp.where(jnp.isfinite(m), m, 0.0)
        a_unit = jnp.where(uu > 0, jnp.exp(log_cp - m), 0.0)  # |c·p|·e^−m
        beta = lr * jnp.exp(log_force - m)

        # ‖w‖² from the pass-1 sums, split along û so that no large terms cancel:
        # ‖w‖² = (α − β·û·G)² + β²·(‖G‖² − (û·G)²). Where w ≈ 0 (the force reverses
        # p) the second term's rounding, ~eps·β²‖G‖², bounds the error.
        u_hat_force = u_force * inv_u
        w2 = (a_unit - beta * u_hat_force) ** 2 + beta * beta * jnp.maximum(force2 - u_hat_force**2, 0.0)
        w_norm = jnp.sqrt(w2)
        inv_w = jnp.where(w2 > 0, 1.0 / jnp.where(w2 > 0, w_norm, 1.0), 0.0)
        log_r = m + jnp.log(w_norm)  # log |p| after the force step

        # q ← q + 2·lr·p/(s + |p|²) = q + [2·lr/(s/|p| + |p|)]·p̂ (bounded by lr, no overflow).
        step = 2.0 * lr / (s_ * jnp.exp(-log_r) + jnp.exp(log_r))
        step_len = jnp.where(jnp.isneginf(log_r) | (w2 == 0), 0.0, step)

        # Rotation p̂ ← (p̂ + ν·z)/‖p̂ + ν·z‖; the normalization is left to the next
        # step's pass 1 (u·u), which is exact and costs nothing extra.
        alpha = a_unit * inv_u
        ws = [jnp.where(first, -g, u) * alpha.astype(u.dtype) - beta.astype(u.dtype) * (g if no_decay else g + wd.astype(g.dtype) * q)
              for u, g, q in zip(old_dirs, wide_g, wide_q)]
        if no_noise:
            zs = [None] * len(ws)
        else:
            shapes_dtypes = [(w.shape, w.dtype) for w in ws]
            if noise is None:
                zs = _draw_noise(noise_kind, state.key, state.count, shapes_dtypes)
            else:
                zs = [z.astype(dt) for z, (_, dt) in zip(treedef.flatten_up_to(noise), shapes_dtypes)]
            nu_ = jnp.asarray(nu, sdt)

        # ‖new direction‖² = w2_true/w2; the closed form's rounding, ~eps·(α² + β²‖G‖²),
        # is negligible unless the force nearly reverses p (w2 ≪ α² + β²‖G‖²).
        if no_noise:
            conditioned = (a_unit**2 + beta * beta * force2) < WELL_CONDITIONED * w2
            new_norm2 = jnp.where(w2 > 0, jnp.where(conditioned, 1.0, jnp.nan), 0.0).astype(sdt)
        else:
            new_norm2 = jnp.full([], jnp.nan, sdt)
        applied = (ft > 0) & jnp.isfinite(ft) & (log_v > le2) & jnp.isfinite(log_e) & jnp.isfinite(w2) & jnp.isfinite(step_len) & jnp.isfinite(uu)
        # The update is read back from the new direction (step·(u_new − ν·z) = k·w), so
        # no fusion reads the old direction after its buffer is overwritten in place.
        new_dirs, new_updates = [], []
        for w, z, u, g in zip(ws, zs, old_dirs, grads):
            unit = w * inv_w.astype(w.dtype)
            new_dir = jnp.where(applied, unit if z is None else unit + nu_.astype(w.dtype) * z, u)
            moved = new_dir if z is None else new_dir - nu_.astype(w.dtype) * z
            new_dirs.append(new_dir)
            new_updates.append(jnp.where(applied, step_len.astype(w.dtype) * moved, 0).astype(g.dtype))
        new_state = EcdsepState(
            count=state.count + applied.astype(jnp.int32),
            direction=treedef.unflatten(new_dirs),
            log_p2=jnp.where(applied, 2.0 * log_r, state.log_p2),
            log_energy=jnp.where(applied, log_e, state.log_energy),
            direction_norm2=jnp.where(applied, new_norm2, state.direction_norm2),
            key=state.key,
            skipped=~applied,
            num_skipped=state.num_skipped + (~applied).astype(jnp.int32),
        )
        return treedef.unflatten(new_updates), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def ecdsep(
    learning_rate: float | Callable[[jax.Array], jax.Array],
    eta: float,
    *,
    f0: float = 0.0,
    nu: float = 1e-5,
    s: float = 1.0,
    delta_energy: float = 0.0,
    weight_decay: float = 0.0,
    conserve_energy: bool = True,
    eps1: float = 1e-10,
    eps2: float = 1e-40,
    seed: int = 0,
    noise: str = "hash",
) -> optax.GradientTransformationExtraArgs:
    r"""ECDSep (De Luca, Gatti & Silverstein, arXiv:2306.00352) as an optax transformation.

    Each call receives the gradient ``g`` and the loss ``L`` (``value=``) at the
    current parameters ``q`` and does, with all sums global over the pytree:

    1. ``F̃ = L + ½·wd·‖q‖² − F0``, ``V = F̃^η`` (kept as ``log V = η·log F̃``).
    2. Skip if ``F̃ ≤ 0``, ``V ≤ eps2``, anything is NaN/inf: updates are zero and
       the state is unchanged except ``skipped``/``num_skipped``.
    3. First applied step: ``E = V·(s + δE_eff)`` (``δE_eff = δE`` if ``s == 1``
       else 1) and ``p = −g·sqrt(δE_eff/‖g‖²)``.
    4. ``c = sqrt((E/V − s)/|p|²)`` (energy conservation), or 1 when
       ``conserve_energy`` is off, ``|E/V − s − |p|²| < eps1``, ``E/V < s`` or ``p = 0``.
    5. ``p ← c·p − lr·(η/F̃)·(g + wd·q)``.
    6. update ``= 2·lr·p/(s + |p|²)`` (step length ≤ lr).
    7. ``p ← |p|·(p̂ + ν·z)/‖p̂ + ν·z‖``, ``z`` standard normal (see ``noise``).

    Args:
      learning_rate: Δt, the time step (paper: Δt; reference: ``lr``). A schedule
        is evaluated at the number of *applied* steps (``state.count``); under
        ``optax.inject_hyperparams`` the schedule counts every call instead.
      eta: η, the power of the loss in the potential ``V = F̃^η`` (reference: ``eta``).
      f0: F0, a constant below the loss minimum (reference: ``F0``).
      nu: ν, the size of the random momentum rotation (reference: ``nu``); 0
        makes the optimizer deterministic and skips the rotation entirely.
      s: the constant ``s`` in ``log(s + |p|²)`` (reference: ``s``).
      delta_energy: δE, the initial kinetic energy ``|p₀|²`` (reference: ``deltaEn``).
      weight_decay: coupled L2 weight decay, added to the loss as ``½·wd·‖q‖²``.
      conserve_energy: rescale ``|p|`` to conserve ``H`` (reference: ``consEn``).
      eps1: tolerance on ``|p2* − |p|²|`` below which no rescaling happens.
      eps2: steps with ``V ≤ eps2`` are skipped.
      seed: seeds the noise ``z``; draws depend only on ``(seed, state.count)``.
      noise: how ``z`` is drawn. ``"hash"`` (default): nearly normal draws from a
        counter-based integer hash (mean 0, variance 1, kurtosis 3, |z| ≤ 4.04,
        within 0.0032 of the normal CDF), fused into the update at about the
        cost of ν = 0. ``"gaussian"``: exact ``jax.random.normal`` draws (the
        authors' choice), which cost 10-20 Adam updates on CPU. docs/optim.md
        has the statistics and the cost of both.

    Returns:
      An ``optax.GradientTransformationExtraArgs``. Its update is
      ``update(grads, state, params, *, value, noise=None)``: ``value`` is the
      loss at ``params``; ``noise`` (optional) is a pytree like ``params`` of
      standard-normal draws ``z`` to use for this step (to replay a recorded run),
      otherwise the optimizer draws its own from ``state.key`` as the
      constructor's ``noise`` says.

    Where the authors' optimizer misbehaves, this one:

    * uses ``learning_rate`` schedules (the reference ignores them and always
      uses the constructor's lr);
    * sums ``|p|²`` and ``‖q‖²`` in float32, or float64 with x64 on, for every
      parameter dtype (the reference: float32 unless the default dtype is float64);
    * skips every step with ``F̃ ≤ 0`` (loss below F0), for any η — the
      reference freezes there for odd or non-integer η but *ascends* for even η;
    * with a zero gradient at the first step starts from ``p = 0`` (the
      reference divides 0/0 and its parameters become NaN);
    * skips a step whose loss is ``+inf`` (the reference takes a pure-inertia
      step there, and fixes ``E = inf`` if it is the first);
    * never returns NaN/inf updates: a step that would is skipped, and
      ``state.skipped`` says so.

    Like the reference, ``E`` is fixed by the first applied step's loss (in
    minibatch training, the first batch's); with gradient accumulation, feed the
    mean loss of the same micro-batches as the mean gradient, as
    ``jaxsafe.train.make_step(..., microbatches=k)`` does.
    Under ``optax.inject_hyperparams`` pass ``static_args=("nu",)`` to keep ``ν = 0``
    static (a traced ν always draws noise), and note that ``eps2 = 1e-40`` as a
    float32 array is subnormal (flushed to 0: only ``F̃ ≤ 0`` skips).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxsafe.optim import ecdsep
      >>> loss = lambda x: jnp.sum((x - 1.0) ** 2)
      >>> opt = ecdsep(0.05, eta=1.0)
      >>> x = jnp.zeros(3); state = opt.init(x)
      >>> value, g = jax.value_and_grad(loss)(x)
      >>> updates, state = opt.update(g, state, x, value=value)
      >>> x = optax.apply_updates(x, updates)

    References:
      G. Bruno De Luca, A. Gatti, E. Silverstein, "Improving Energy Conserving
      Descent for Machine Learning: Theory and Practice", arXiv:2306.00352.
    """
    return _build(learning_rate, eta, f0, nu, s, delta_energy, weight_decay, conserve_energy, eps1, eps2, seed, noise_kind=noise)


def ecdsep_hash_noise(*args, **kwargs) -> optax.GradientTransformationExtraArgs:
    """:func:`ecdsep` with ``noise="hash"`` (now its default; kept for existing callers)."""
    return ecdsep(*args, **{**kwargs, "noise": "hash"})


ecdsep_hash_noise.__signature__ = inspect.signature(ecdsep)  # so optax.inject_hyperparams sees the names
