"""Compile time of the decoder's training programs: layers scanned vs unrolled.

Two programs, each jitted and compiled for three layouts of the same stacked weights:

* **step** — one full fine-tuning AdamW step (``jaxsafe.train.make_step``): forward,
  backward, optimizer update.
* **inner16** — 16 such steps inside one ``lax.scan`` (the shape of TAR's inner
  attack loop).

Layouts: ``scan`` (``lax.scan`` over the stacked layers, one compiled layer body:
the library's default), ``scan_unroll`` (the same scan with ``unroll=L``, so XLA
sees L copies of the body: ``Decoder(scan_unroll=L)``) and ``python_loop`` (a
Python loop over the L layer slices, i.e. the decoder before layers were stacked:
L traced bodies). For each we record trace+lower seconds and XLA compile seconds
(fresh traces, layouts interleaved round by round), then time the compiled
programs in ``--run-rounds`` interleaved rounds and report seconds per call and
the per-round ratio of each layout's time to the scan's.

    python benchmarks/lm_compile.py                      # 32 layers, d_model 64
    python benchmarks/lm_compile.py --layers 8 --rounds 1 --programs step   # quick look

Results go to benchmarks/results/lm_compile.json (refused on a loaded machine
unless --allow-load; see benchmarks/_protocol.py).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")

from _protocol import Monitor, add_arguments, format_ratio, interleaved, ratio, spread, write_results  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from jaxsafe.lm.config import DecoderConfig  # noqa: E402
from jaxsafe.lm.loss import next_token_loss  # noqa: E402
from jaxsafe.lm.model import (Decoder, attention_mask_4d, positions_from_mask,  # noqa: E402
                              rope_inverse_frequencies)
from jaxsafe.train import init_state, make_step  # noqa: E402

LAYOUTS = ("scan", "scan_unroll", "python_loop")
PROGRAMS = ("step", "inner16")
INNER_STEPS = 16


def python_loop_logits(model: Decoder, ids, mask):
    """The forward pass with one traced copy of the layer per layer (the pre-stacking decoder)."""
    c = model.config
    positions = positions_from_mask(mask)
    full = attention_mask_4d(mask, jnp.arange(ids.shape[1]), None)
    window = attention_mask_4d(mask, jnp.arange(ids.shape[1]), c.sliding_window) if c.sliding_window else None
    inv_freq = rope_inverse_frequencies(c)
    graphdef, params = nnx.split(model.layers)
    h = model.embed_tokens(ids)
    for i in range(c.num_layers):
        layer = nnx.merge(graphdef, jax.tree.map(lambda x: x[i], params))
        h, _ = layer(h, positions, inv_freq, window if c.uses_sliding_window(i) else full)
    return model.unembed(h)


def build(layout: str, config: DecoderConfig, batch):
    """(program name -> (fresh function, args)) for one layout; every call returns a new closure,
    so nothing is reused from an earlier trace."""
    model = Decoder(config, rngs=nnx.Rngs(0), scan_unroll=config.num_layers if layout == "scan_unroll" else 1)
    graphdef, params = nnx.split(model)
    optimizer = optax.with_extra_args_support(optax.adamw(1e-3, weight_decay=0.01))

    def programs():
        def loss_fn(p, b, _frozen):
            m = nnx.merge(graphdef, p)
            logits = python_loop_logits(m, b["ids"], b["mask"]) if layout == "python_loop" else m(b["ids"], b["mask"])
            return next_token_loss(logits, b["ids"], b["mask"]), {}

        step = make_step(loss_fn, optimizer)

        def one(state, b):
            return step(state, b)[0]

        def inner(state, b):
            return jax.lax.scan(lambda s, _: (step(s, b)[0], None), state, None, length=INNER_STEPS)[0]

        return {"step": one, "inner16": inner}

    state = init_state(params, optimizer)
    return programs, state


def measure(fn, state, batch) -> dict:
    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(state, batch)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    jax.block_until_ready(compiled(state, batch))
    return {"lower_s": t1 - t0, "compile_s": t2 - t1}, compiled


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="fresh trace+compile of each (layout, program) per round")
    parser.add_argument("--run-rounds", type=int, default=7, help="interleaved timing rounds of the compiled programs")
    parser.add_argument("--programs", default=",".join(PROGRAMS))
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "lm_compile.json"))
    add_arguments(parser)
    args = parser.parse_args()
    monitor = Monitor()
    d = args.d_model
    heads = max(d // 16, 1)
    config = DecoderConfig(vocab_size=256, hidden_size=d, intermediate_size=3 * d, num_layers=args.layers,
                           num_heads=heads, num_kv_heads=max(heads // 2, 1), head_dim=16, architecture="llama")
    rng = np.random.default_rng(0)
    batch = {"ids": jnp.asarray(rng.integers(0, 256, (args.batch, args.seq)), jnp.int32),
             "mask": jnp.ones((args.batch, args.seq), jnp.int32)}
    layouts, programs = args.layouts.split(","), args.programs.split(",")
    built = {layout: build(layout, config, batch) for layout in layouts}
    samples: dict = {(l, p): [] for l in layouts for p in programs}
    compiled: dict = {}
    for r in range(args.rounds):
        order = layouts[r % len(layouts):] + layouts[:r % len(layouts)]  # interleaved rounds
        for program in programs:
            for layout in order:
                make_programs, state = built[layout]
                result, compiled[layout, program] = measure(make_programs()[program], state, batch)
                samples[layout, program].append(result)
                print(f"round {r} {program:8s} {layout:12s} lower {result['lower_s']:6.2f} s  "
                      f"compile {result['compile_s']:6.2f} s", flush=True)
    table = {}
    for (layout, program), rows in samples.items():
        table[f"{program}/{layout}"] = {k: spread([row[k] for row in rows]) for k in ("lower_s", "compile_s")}
    for program in programs if args.run_rounds > 0 else ():
        def call(layout):
            return lambda: jax.block_until_ready(compiled[layout, program](built[layout][1], batch))

        times = interleaved({layout: call(layout) for layout in layouts}, rounds=args.run_rounds)
        for layout in layouts:
            table[f"{program}/{layout}"]["run_s"] = spread(times[layout])
            if "scan" in times:
                table[f"{program}/{layout}"]["run_vs_scan"] = ratio(times[layout], times["scan"])
    load = os.getloadavg()
    print(f"\n{args.layers} layers, d_model {d}, batch {args.batch} x {args.seq}, jax {jax.__version__}, "
          f"{platform.machine()}, {jax.devices()[0].platform}; load average now {load[0]:.1f}")
    print("| program | layout | trace+lower s | XLA compile s | total s | run ms/call | run time / scan's |")
    print("|---|---|---|---|---|---|---|")
    for program in programs:
        for layout in layouts:
            t = table[f"{program}/{layout}"]
            lower, comp = t["lower_s"]["median"], t["compile_s"]["median"]
            run = f"{t['run_s']['median'] * 1e3:.1f}" if "run_s" in t else "-"
            rel = format_ratio(t["run_vs_scan"]) if "run_vs_scan" in t else "-"
            print(f"| {program} | {layout} | {lower:.2f} | {comp:.2f} | {lower + comp:.2f} | {run} | {rel} |")
    result = {"config": {"layers": args.layers, "d_model": d, "heads": heads, "batch": args.batch, "seq": args.seq,
                         "inner_steps": INNER_STEPS, "rounds": args.rounds, "run_rounds": args.run_rounds},
              "jax": jax.__version__, "platform": jax.devices()[0].platform, "results": table}
    write_results(Path(args.out), result, monitor, allow_load=args.allow_load)


if __name__ == "__main__":
    main()
