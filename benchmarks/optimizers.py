"""ECDSep vs SGD+momentum, Adam and AdamW: quality on four small tasks, and update cost.

Usage: python benchmarks/optimizers.py [--quick] [--cost-only] [--rounds N] [--allow-load]

Quality: every optimizer runs a small learning-rate sweep on each task with 3
seeds (seed = start-point perturbation / initialization + batch order + noise);
the learning rate with the best mean final metric is reported as mean ± std.
Tasks (no downloads): Rosenbrock (d=2) and Zakharov (d=10) from the spec, with
the start perturbed per seed; softmax regression and a 64-128-10 MLP on
scikit-learn's bundled digits (test accuracy on a fixed 20% split).

Cost: one jitted, donated update (+ apply_updates) on a ~10M-parameter pytree,
every optimizer timed in the same run in interleaved rounds; the ratio to Adam is
the median of per-round ratios, and the compiled HLO's passes over memory are counted.

Writes benchmarks/results/optimizers.json and docs/img/optim_curves.png, prints a table;
follows benchmarks/_protocol.py (no results file from a loaded machine without
--allow-load). --cost-only times the updates alone and writes optimizers_cost.json.
"""

from __future__ import annotations

import argparse
import math
import re
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from _protocol import Monitor, add_arguments, add_cpu_time_argument, clock, interleaved, ratio, write_results
from jaxsafe.optim.ecdsep import EcdsepState, ecdsep

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)


def optimizers():
    """name -> (factory(lr), lr sweep, needs value=)."""
    return {
        "sgd_momentum": (lambda lr: optax.sgd(lr, momentum=0.9), (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1), False),
        "adam": (lambda lr: optax.adam(lr), (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1), False),
        "adamw": (lambda lr: optax.adamw(lr, weight_decay=1e-2), (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1), False),
        "ecdsep": (lambda lr: ecdsep(lr, eta=1.0), (0.01, 0.03, 0.1, 0.3, 1.0, 3.0), True),
        "ecdsep_gaussian": (lambda lr: ecdsep(lr, eta=1.0, noise="gaussian"), (0.01, 0.03, 0.1, 0.3, 1.0, 3.0), True),
    }


# ------------------------------------------------------------------ tasks


def rosenbrock(x):
    return jnp.sum((1 - x[:-1]) ** 2 + 100 * (x[1:] - x[:-1] ** 2) ** 2)


def zakharov(x):
    i = jnp.arange(1, x.shape[0] + 1)
    s2 = jnp.sum(0.5 * i * x)
    return jnp.sum(x**2) + s2**2 + s2**4


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int32)
    perm = np.random.default_rng(0).permutation(len(y))
    n_test = len(y) // 5
    te, tr = perm[:n_test], perm[n_test:]
    return jnp.asarray(x[tr]), jnp.asarray(y[tr]), jnp.asarray(x[te]), jnp.asarray(y[te])


def _xent(logits, y):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


def make_tasks(quick: bool):
    xtr, ytr, xte, yte = _digits()
    steps = 100 if quick else None

    def synthetic(fn, x0, n):
        def init(seed):
            return x0 + 0.1 * jax.random.normal(jax.random.PRNGKey(seed), x0.shape)

        return dict(init=init, loss=lambda p, seed, t: fn(p), steps=steps or n, metric=lambda p: fn(p), metric_name="final loss", higher=False)

    def mlp_apply(p, x):
        if "w2" not in p:
            return x @ p["w1"] + p["b1"]
        return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    def classifier(hidden, n, batch):
        def init(seed):
            k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
            if hidden is None:
                return {"w1": 0.01 * jax.random.normal(k1, (64, 10)), "b1": jnp.zeros(10)}
            return {"w1": jax.random.normal(k1, (64, hidden)) / 8.0, "b1": jnp.zeros(hidden),
                    "w2": jax.random.normal(k2, (hidden, 10)) / np.sqrt(hidden), "b2": jnp.zeros(10)}

        def loss(p, seed, t):
            if batch is None:
                return _xent(mlp_apply(p, xtr), ytr)
            idx = jax.random.randint(jax.random.fold_in(jax.random.PRNGKey(seed + 100), t), (batch,), 0, xtr.shape[0])
            return _xent(mlp_apply(p, xtr[idx]), ytr[idx])

        def metric(p):
            return jnp.mean(jnp.argmax(mlp_apply(p, xte), -1) == yte)

        return dict(init=init, loss=loss, steps=steps or n, metric=metric, metric_name="test accuracy", higher=True)

    return {
        "rosenbrock_2d": synthetic(rosenbrock, jnp.array([-1.5, 2.0]), 500),
        "zakharov_10d": synthetic(zakharov, jnp.ones(10), 300),
        "digits_softmax": classifier(None, 200, None),
        "digits_mlp": classifier(128, 400, 128),
    }


def run_sweep(task, factory, lrs, needs_value):
    """Train every (lr, seed) pair in one vmapped, jitted call (lr is traced, so one compile).

    Returns (final metric [lr, seed], loss curve [lr, seed, step]).
    """

    def one(lr, seed):
        opt = factory(lr)
        params = task["init"](seed)
        state = opt.init(params)
        if isinstance(state, EcdsepState):
            state = state._replace(key=jax.random.PRNGKey(seed))

        def step(carry, t):
            params, state = carry
            value, grads = jax.value_and_grad(task["loss"])(params, seed, t)
            kw = {"value": value} if needs_value else {}
            updates, state = opt.update(grads, state, params, **kw)
            return (optax.apply_updates(params, updates), state), value

        (params, _), curve = jax.lax.scan(step, (params, state), jnp.arange(task["steps"]))
        return task["metric"](params), curve

    lr_grid, seed_grid = np.meshgrid(np.asarray(lrs, np.float32), np.asarray(SEEDS), indexing="ij")
    metric, curve = jax.jit(jax.vmap(one))(jnp.asarray(lr_grid.ravel()), jnp.asarray(seed_grid.ravel()))
    shape = (len(lrs), len(SEEDS))
    return np.asarray(metric, np.float64).reshape(shape), np.asarray(curve, np.float64).reshape(shape + (-1,))


def quality(quick: bool):
    results, curves = {}, {}
    for tname, task in make_tasks(quick).items():
        results[tname], curves[tname] = {"metric": task["metric_name"], "higher_is_better": task["higher"]}, {}
        for oname, (factory, lrs, needs_value) in optimizers().items():
            metrics, curves_all = run_sweep(task, factory, lrs, needs_value)
            bad = -np.inf if task["higher"] else np.inf
            sweep = {lr: (np.where(np.isfinite(m), m, bad), c) for lr, m, c in zip(lrs, metrics, curves_all)}
            key = (lambda lr: np.mean(sweep[lr][0])) if task["higher"] else (lambda lr: -np.mean(sweep[lr][0]))
            best = max(lrs, key=key)
            m, c = sweep[best]
            finite = bool(np.all(np.isfinite(m)))
            results[tname][oname] = {
                "best_lr": best, "mean": float(np.mean(m)) if finite else float("inf"), "std": float(np.std(m)) if finite else None,
                "per_seed": [float(v) if np.isfinite(v) else None for v in m],
                "sweep_mean": {str(lr): float(np.mean(sweep[lr][0])) if np.all(np.isfinite(sweep[lr][0])) else None for lr in lrs},
            }
            curves[tname][oname] = np.mean(c, axis=0)
            r = results[tname][oname]
            print(f"  {tname:15s} {oname:13s} lr={best:<6g} " + (f"{r['mean']:.4g} ± {r['std']:.2g}" if finite else "diverged"), flush=True)
    return results, curves


# ------------------------------------------------------------------ cost


_SHAPE = re.compile(r"\b(?:pred|[a-z]+\d+)\[([\d,]*)\]")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%(\S+)\s*=\s*(.*?)\s+([a-z][\w-]*)\((.*)$")


def memory_passes(hlo: str, big: int) -> float:
    """Passes over memory in a compiled module: elements of arrays with ≥ 2²⁰ entries
    read or written by its top-level kernels (fusions, dots, copies), divided by the
    number of parameters in such arrays. A ``conditional``'s operands are not counted
    (ECDSep's occasional u·u, see ``RENORM_EVERY``)."""
    entry = hlo[hlo.index("\nENTRY"):]
    sizes, moved = {}, 0
    for line in entry.splitlines()[1:]:
        m = _INSTR.match(line)
        if not m:
            continue
        name, typ, op, rest = m.groups()
        dims = [math.prod(int(d) for d in ds.split(",") if d) for ds in _SHAPE.findall(typ)]
        sizes[name] = sum(n for n in dims if n >= 1 << 20)
        if op in ("parameter", "get-tuple-element", "tuple", "bitcast", "constant", "conditional"):
            continue
        operands = re.findall(r"%([\w.\-]+)", rest.split("), kind=")[0])
        moved += sizes[name] + sum(sizes.get(o, 0) for o in operands)
    return moved / big


def cost(rounds: int, cpu_time: bool = False):
    """One jitted, donated update + apply_updates per optimizer on ~10M parameters.

    Timed in interleaved rounds (every optimizer once per round, the order rotating),
    since the machine is shared: the ratio to Adam is the median over rounds of the
    same round's ratio, which cancels slow phases of the machine. Each timed call
    comes right after an untimed call of the same step: a step timed right after the
    Gaussian draw (hundreds of ms of threefry on every core) ran up to 2× slower.
    """
    shapes = [(2048, 2048), (2048,), (2048, 2048), (2048,), (2048, 768), (768,)]
    params = {f"p{i}": 0.02 * jax.random.normal(jax.random.PRNGKey(i), s) for i, s in enumerate(shapes)}
    n = sum(int(np.prod(s)) for s in shapes)
    big = sum(int(np.prod(s)) for s in shapes if np.prod(s) >= 1 << 20)
    grads = jax.tree.map(lambda p: 0.1 * p + 0.01, params)
    opts = {
        "adam": (optax.adam(1e-3), False),
        "sgd_momentum": (optax.sgd(1e-2, momentum=0.9), False),
        "ecdsep_nu0": (ecdsep(0.1, 1.0, nu=0.0), True),
        "ecdsep": (ecdsep(0.1, 1.0, nu=1e-5), True),  # the default: hash noise
        "ecdsep_gaussian_noise": (ecdsep(0.1, 1.0, nu=1e-5, noise="gaussian"), True),
    }
    live, passes = {}, {}
    for name, (opt, needs_value) in opts.items():
        def step(p, s, g, opt=opt, needs_value=needs_value):
            kw = {"value": jnp.float32(1.0)} if needs_value else {}
            u, s = opt.update(g, s, p, **kw)
            return optax.apply_updates(p, u), s

        f = jax.jit(step, donate_argnums=(0, 1))
        p = jax.tree.map(jnp.copy, params)
        s = opt.init(p)
        passes[name] = memory_passes(f.lower(p, s, grads).compile().as_text(), big)
        p, s = f(p, s, grads)
        jax.block_until_ready(p)
        live[name] = [f, p, s]

    def one_step(name):
        def call():
            f, p, s = live[name]
            p, s = f(p, s, grads)
            jax.block_until_ready((p, s))
            live[name][1:] = [p, s]
        return call

    # settle: the timed call follows an untimed call of its own kind, not the previous optimizer's
    times = interleaved({name: one_step(name) for name in opts}, rounds, settle=True, clock=clock(cpu_time))
    rel = {k: ratio(v, times["adam"]) for k, v in times.items()}
    return {"n_params": n, "rounds": rounds, "clock": "process CPU time" if cpu_time else "wall", "median_ms": {k: 1e3 * float(np.median(v)) for k, v in times.items()},
            "relative_to_adam": {k: r["median"] for k, r in rel.items()},
            "relative_to_adam_q25_q75": {k: [r["q25"], r["q75"]] for k, r in rel.items()},
            "relative_to_adam_spread": rel,
            "memory_passes": passes}


# ------------------------------------------------------------------ output


def plot(curves, path: Path, results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4))
    for ax, (tname, per_opt) in zip(axes, curves.items()):
        for oname, c in per_opt.items():
            ax.plot(np.arange(1, len(c) + 1), c, label=f"{oname} (lr {results[tname][oname]['best_lr']:g})", lw=1.2)
        ax.set_yscale("log")
        ax.set_title(tname)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss (mean of 3 seeds)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 steps per task and fewer timing rounds (smoke run)")
    ap.add_argument("--cost-only", action="store_true", help="only the update cost (no quality sweep, no plot)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (default 20, 5 with --quick)")
    add_arguments(ap)
    add_cpu_time_argument(ap)
    args = ap.parse_args()
    monitor = Monitor()
    t0 = time.perf_counter()
    results, curves = {}, {}
    if not args.cost_only:
        print("quality (best lr per optimizer, mean ± std over seeds 0,1,2):")
        results, curves = quality(args.quick)
    print("cost (one jitted update on ~10M parameters):")
    c = cost(args.rounds or (5 if args.quick else 20), args.cpu_time)
    wall = time.perf_counter() - t0

    names = list(optimizers())
    if results:
        print("\n| task (metric) | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
    for tname, r in results.items():
        cells = [f"{r[o]['mean']:.4g} ± {r[o]['std']:.2g} (lr {r[o]['best_lr']:g})" if np.isfinite(r[o]["mean"]) else "diverged at every lr" for o in names]
        print(f"| {tname} ({r['metric']}) | " + " | ".join(cells) + " |")
    print(f"\n| update on {c['n_params'] / 1e6:.2f}M params | median ms | × adam (median of {c['rounds']} rounds; min–max) | memory passes |\n|---|---|---|---|")
    for k, v in c["median_ms"].items():
        r = c["relative_to_adam_spread"][k]
        print(f"| {k} | {v:.1f} | {r['median']:.2f} ({r['min']:.2f}–{r['max']:.2f}) | {c['memory_passes'][k]:.1f} |")
    r = c["relative_to_adam_spread"]["ecdsep"]
    print(f"\ndefault ecdsep (hash noise) per update: {r['median']:.2f}× optax.adam (min–max {r['min']:.2f}–{r['max']:.2f}); "
          f"target ≤ 1.5× on an idle machine: {'met' if r['median'] <= 1.5 else 'NOT met'}")
    print(f"wall time {wall:.0f} s")

    flags = (" --quick" if args.quick else "") + (" --cost-only" if args.cost_only else "") + (f" --rounds {args.rounds}" if args.rounds else "") + (" --cpu-time" if args.cpu_time else "")
    name = "optimizers_cost.json" if args.cost_only else ("optimizers_quick.json" if args.quick else "optimizers.json")
    out = ROOT / "benchmarks" / "results" / name
    write_results(out, {"command": "python benchmarks/optimizers.py" + flags,
                        "jax": jax.__version__, "optax": optax.__version__, "devices": str(jax.devices()),
                        "seeds": list(SEEDS), "quality": results, "cost": c, "wall_s": wall},
                  monitor, allow_load=args.allow_load)
    if not args.quick and not args.cost_only:
        plot(curves, ROOT / "docs" / "img" / "optim_curves.png", results)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
