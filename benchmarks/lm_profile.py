"""Where the decoder's train step spends its time on CPU: a breakdown by part, and the bound.

    python benchmarks/lm_profile.py [--layers 4 --d-model 512 --vocab 8192 --batch 8 --seq 128]
                                    [--rounds 5] [--trace DIR] [--allow-load]

Same model and step as benchmarks/lm.py (Llama architecture, heads of 64, half as
many KV heads, MLP 3·d, float32, AdamW, full fine-tuning; random weights, no
PyTorch). Each part is its own jitted function on the same shapes, all timed in
interleaved rounds (benchmarks/_protocol.py):

* ``train step``: loss, gradient and AdamW update (what benchmarks/lm.py times);
* ``forward + loss``, ``value_and_grad``: without and with the backward pass;
* ``adamw update``: the optimizer alone on parameter-shaped gradients;
* per layer, forward + backward (gradients w.r.t. weights and input): ``attention``
  (norm, q/k/v/o projections, RoPE, masked softmax) and ``mlp`` (norm, SwiGLU), × L;
* ``embedding``: the lookup and its gradient (a scatter-add into [V, D]);
* ``unembed + CE``: final norm, [D, V] projection and cross-entropy, forward + backward.

The bound: the step's matmul FLOPs (6 × parameters × tokens for the projections, plus
attention's QKᵀ and PV) divided by the rate of one large float32 matmul measured in
the same process — the time the step would take if every matmul ran at that rate and
everything else were free. ``--trace DIR`` also writes a jax.profiler trace (Perfetto
JSON) of three train steps and prints the most expensive XLA ops in it.

Writes benchmarks/results/lm_profile[_<config>].json (not from a loaded machine
without --allow-load).
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from _protocol import Monitor, add_arguments, add_cpu_time_argument, clock, interleaved, write_results
from lm import add_model_arguments, model_config
from jaxsafe.lm.loss import lm_loss_fn, next_token_loss
from jaxsafe.lm.model import Decoder, attention_mask_4d, positions_from_mask, rope_inverse_frequencies
from jaxsafe.train import init_state, make_step, model_loss

RESULTS = Path(__file__).resolve().parent / "results"


def build(args):
    cfg = model_config(args)
    model = Decoder(cfg, rngs=nnx.Rngs(0))
    ids = np.random.default_rng(0).integers(0, args.vocab, (args.batch, args.seq)).astype(np.int32)
    mask = np.ones_like(ids)
    return cfg, model, {"input_ids": jnp.asarray(ids), "attention_mask": jnp.asarray(mask), "loss_mask": jnp.asarray(mask)}


def parts(cfg, model, batch):
    """name -> (zero-argument callable that runs the part once and blocks, multiplicity in one step)."""
    graphdef, params = nnx.split(model)
    optimizer = optax.with_extra_args_support(optax.adamw(1e-4))
    loss_fn = model_loss(graphdef, None, lm_loss_fn)
    step = jax.jit(make_step(loss_fn, optimizer), donate_argnums=0)
    live = {"state": init_state(jax.tree.map(jnp.copy, params), optimizer)}  # donated: not the shared params

    def train_step():
        live["state"], m = step(live["state"], batch)
        jax.block_until_ready(m)

    fwd = jax.jit(lambda p, b: loss_fn(p, b, None)[0])
    vg = jax.jit(jax.value_and_grad(lambda p, b: loss_fn(p, b, None)[0]))
    grads = jax.tree.map(jnp.ones_like, params)
    opt_state = optimizer.init(params)
    opt = jax.jit(lambda g, s, p: optimizer.update(g, s, p))

    # One layer, forward + backward w.r.t. its weights and input, on the shapes inside the step.
    b, t = batch["input_ids"].shape
    layer_params = jax.tree.map(lambda x: x[0], nnx.split(model.layers)[1])
    layer_def = nnx.split(model.layers)[0]
    h = jax.random.normal(jax.random.PRNGKey(1), (b, t, cfg.hidden_size), jnp.float32)
    positions = positions_from_mask(batch["attention_mask"])
    inv_freq = rope_inverse_frequencies(cfg)
    mask = attention_mask_4d(batch["attention_mask"], jnp.arange(t), None)

    def attention(p, h):
        layer = nnx.merge(layer_def, p)
        out, _ = layer.self_attn(layer.input_layernorm(h), positions, inv_freq, mask)
        return jnp.sum(out * h)  # a scalar that depends on every output

    def mlp(p, h):
        layer = nnx.merge(layer_def, p)
        return jnp.sum(layer.mlp(layer.post_attention_layernorm(h)) * h)

    attn_vg = jax.jit(jax.grad(attention, argnums=(0, 1)))
    mlp_vg = jax.jit(jax.grad(mlp, argnums=(0, 1)))

    def embed_loss(table, ids):
        return jnp.sum(jnp.take(table, ids, axis=0) * h)

    embed_vg = jax.jit(jax.grad(embed_loss))
    table = params["embed_tokens"]["embedding"][...]

    def unembed_ce(w, h):  # the model's final RMSNorm and lm_head, written out so only they get gradients
        normed = h * jax.lax.rsqrt(jnp.mean(h * h, axis=-1, keepdims=True) + cfg.rms_norm_eps) * w["scale"]
        return next_token_loss(normed @ w["kernel"], batch["input_ids"], batch["loss_mask"])

    head = {"scale": params["norm"]["scale"][...], "kernel": params["lm_head"]["kernel"][...]}
    unembed_vg = jax.jit(jax.grad(unembed_ce, argnums=(0, 1)))

    return {
        "train step": (train_step, 1),
        "forward + loss": (lambda: jax.block_until_ready(fwd(params, batch)), 1),
        "value_and_grad": (lambda: jax.block_until_ready(vg(params, batch)), 1),
        "adamw update": (lambda: jax.block_until_ready(opt(grads, opt_state, params)), 1),
        "attention fwd+bwd (per layer)": (lambda: jax.block_until_ready(attn_vg(layer_params, h)), cfg.num_layers),
        "mlp fwd+bwd (per layer)": (lambda: jax.block_until_ready(mlp_vg(layer_params, h)), cfg.num_layers),
        "embedding fwd+bwd": (lambda: jax.block_until_ready(embed_vg(table, batch["input_ids"])), 1),
        "unembed + CE fwd+bwd": (lambda: jax.block_until_ready(unembed_vg(head, h)), 1),
    }, step, live


def matmul_flops(cfg, tokens, seq) -> float:
    """Multiply-adds × 2 of the step's matmuls: projections fwd + 2 × bwd, attention QKᵀ and PV."""
    d, f, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    qo = cfg.num_heads * cfg.head_dim
    kv = cfg.num_kv_heads * cfg.head_dim
    per_token = cfg.num_layers * (d * (qo + 2 * kv) + qo * d + 3 * d * f) + d * v
    attention = cfg.num_layers * 2 * seq * qo  # QKᵀ and PV: T keys × heads·d per query (causal half not skipped)
    return 2 * 3 * tokens * (per_token + attention)


def matmul_rate(tick, n=1024, repeats=5) -> float:
    """FLOPs per second (per CPU second with ``tick`` = process_time) of one n×n float32 matmul, best of repeats."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = min(_time(lambda: f(a).block_until_ready(), tick) for _ in range(repeats))
    return 2 * n**3 / best


def _time(fn, tick=time.perf_counter):
    start = tick()
    fn()
    return tick() - start


def trace_ops(step, live, batch, directory: Path, top: int = 15):
    """Three train steps under jax.profiler; the XLA ops' total time from the Perfetto trace."""
    with jax.profiler.trace(str(directory), create_perfetto_trace=True):
        for _ in range(3):
            live["state"], m = step(live["state"], batch)
            jax.block_until_ready(m)
    files = sorted(directory.rglob("*.trace.json.gz"), key=lambda p: p.stat().st_mtime)
    if not files:
        return []
    events = json.loads(gzip.open(files[-1]).read())
    events = events.get("traceEvents", events) if isinstance(events, dict) else events
    totals = defaultdict(float)
    for e in events:
        if e.get("ph") == "X" and "dur" in e:
            totals[e.get("name", "?")] += e["dur"] / 3e6  # seconds per step
    return sorted(totals.items(), key=lambda kv: -kv[1])[:top]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(p)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--trace", type=Path, default=None, help="also write a jax.profiler trace here")
    p.add_argument("--out", type=Path, default=None)
    add_arguments(p)
    add_cpu_time_argument(p)
    args = p.parse_args(argv)
    monitor = Monitor()
    cfg, model, batch = build(args)
    tokens = args.batch * args.seq
    sides, step, live = parts(cfg, model, batch)
    compile_s = {}
    for name, (fn, _) in sides.items():
        compile_s[name] = _time(fn)
    times = interleaved({name: fn for name, (fn, _) in sides.items()}, args.rounds, settle=True, clock=clock(args.cpu_time))
    med = {name: statistics.median(v) for name, v in times.items()}
    rate = matmul_rate(clock(args.cpu_time))
    flops = matmul_flops(cfg, tokens, args.seq)
    step_s = med["train step"]
    rows = []
    print(f"config: {args.layers} layers, d {args.d_model}, vocab {args.vocab}, batch {args.batch} x {args.seq}; "
          f"{sum(x.size for x in jax.tree.leaves(nnx.state(model))) / 1e6:.1f}M parameters")
    unit = "CPU ms" if args.cpu_time else "ms"
    print(f"\n| part | {unit} | × in a step | {unit} per step | share of the step |\n|---|---|---|---|---|")
    for name, (_, mult) in sides.items():
        total = med[name] * mult
        rows.append({"part": name, "ms": 1e3 * med[name], "multiplicity": mult, "ms_per_step": 1e3 * total,
                     "share_of_step": total / step_s, "rounds_ms": [1e3 * x for x in times[name]]})
        print(f"| {name} | {1e3 * med[name]:.1f} | {mult} | {1e3 * total:.1f} | {total / step_s:.0%} |")
    bound = flops / rate
    print(f"\nmatmul rate (1024² float32 matmul, best of 5): {rate / 1e9:.1f} GFLOP/s; the step's matmuls: "
          f"{flops / 1e9:.2f} GFLOP -> bound {1e3 * bound:.0f} ms; the step takes {1e3 * step_s:.0f} ms "
          f"({bound / step_s:.0%} of it would be matmuls at that rate)")
    ops = trace_ops(step, live, batch, args.trace) if args.trace else []
    if ops:
        print("\nmost expensive ops in the trace (ms per step):")
        for name, s in ops:
            print(f"  {1e3 * s:8.2f}  {name}")
    result = {"config": {"layers": args.layers, "d_model": args.d_model, "vocab": args.vocab, "batch": args.batch,
                         "seq": args.seq, "heads": cfg.num_heads, "kv_heads": cfg.num_kv_heads,
                         "intermediate": cfg.intermediate_size},
              "rounds": args.rounds, "clock": "process CPU time" if args.cpu_time else "wall", "parts": rows, "compile_and_first_call_s": compile_s,
              "matmul_gflops": rate / 1e9, "step_matmul_gflop": flops / 1e9, "matmul_bound_ms": 1e3 * bound,
              "step_ms": 1e3 * step_s, "trace_top_ops_ms": [[n, 1e3 * s] for n, s in ops],
              "jax": jax.__version__, "command": "python benchmarks/lm_profile.py " + " ".join(argv or [])}
    default = (args.layers, args.d_model, args.vocab, args.batch, args.seq) == (4, 512, 8192, 8, 128)
    suffix = "" if default else f"_L{args.layers}_d{args.d_model}_v{args.vocab}_b{args.batch}_t{args.seq}"
    out = args.out or RESULTS / f"lm_profile{suffix}.json"
    write_results(out, result, monitor, allow_load=args.allow_load)
    print(f"wrote {out}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
