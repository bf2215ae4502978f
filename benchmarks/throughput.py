"""The throughput features of issue 15 on CPU: compiled memory and process CPU time.

For one small decoder (4 layers, d 256, vocab 4096, GQA 8/4 heads, batch 8 x 256):

* gradient accumulation: temporaries of the compiled AdamW step ``make_step(...,
  microbatches=k)`` for k = 1, 2, 4, 8;
* remat policies: temporaries of the compiled loss-and-gradient per policy, and its
  process CPU time;
* bf16 compute over f32 master weights against f32: temporaries and CPU time;
* attention: jaxsafe's einsums against ``jax.nn.dot_product_attention`` (xla): per-round
  ratios of the CPU time of the loss-and-gradient and of the forward, in interleaved pairs;
* asynchronous checkpointing: seconds that ``RunDir.save_checkpoint`` blocks the caller for
  a 256 MB state, asynchronous against synchronous, and the wait for the files.

Memory comes from ``compiled.memory_analysis()`` (load-independent). Times are process CPU
seconds (``time.process_time``: all of this process's threads), medians of interleaved
rounds — comparisons of our own code under load, not speed figures. The checkpoint
figures are wall seconds (a background write is the point) and move with the load.

    python benchmarks/throughput.py [--rounds 9] [--allow-load]

Writes benchmarks/results/throughput.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _protocol import Monitor, add_arguments, clock, format_ratio, interleaved, ratio, spread, write_results

RESULTS = Path(__file__).parent / "results" / "throughput.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    add_arguments(parser)
    args = parser.parse_args()
    monitor = Monitor()

    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from jaxsafe.lm import Decoder, DecoderConfig, lm_loss_fn
    from jaxsafe.optim.config import OptimizerConfig
    from jaxsafe.optim.factory import make_optimizer
    from jaxsafe.runs import RunDir
    from jaxsafe.train import init_state, make_step, model_loss

    config = DecoderConfig(vocab_size=4096, hidden_size=256, intermediate_size=688, num_layers=4, num_heads=8,
                           num_kv_heads=4, head_dim=32)
    b, t = 8, 256
    ids = jnp.asarray(np.random.default_rng(0).integers(0, config.vocab_size, (b, t)), jnp.int32)
    ones = jnp.ones_like(ids)
    batch = {"input_ids": ids, "attention_mask": ones, "loss_mask": ones}
    cpu = clock(True)
    mib = lambda n: round(n / 2**20, 1)  # noqa: E731

    def grad_fn(**model_kw):
        graphdef, state = nnx.split(Decoder(config, rngs=nnx.Rngs(0), **model_kw))
        compiled = jax.jit(jax.value_and_grad(lambda s: lm_loss_fn(nnx.merge(graphdef, s), batch)[0])).lower(
            state).compile()
        return compiled, state

    result: dict = {"model": {"layers": 4, "hidden": 256, "vocab": 4096, "heads": "8/4", "batch": [b, t]}}

    # gradient accumulation
    graphdef, params = nnx.split(Decoder(config, rngs=nnx.Rngs(0)))
    optimizer = make_optimizer(OptimizerConfig(name="adamw", lr=1e-3), 10)
    state = init_state(params, optimizer)
    result["accumulation_temp_MiB"] = {}
    for k in (1, 2, 4, 8):
        compiled = jax.jit(make_step(model_loss(graphdef, None, lm_loss_fn), optimizer, microbatches=k)).lower(
            state, batch, None).compile()
        result["accumulation_temp_MiB"][k] = mib(compiled.memory_analysis().temp_size_in_bytes)
    print("accumulation, temporaries of the AdamW step (MiB) per microbatch count:", result["accumulation_temp_MiB"])

    # remat policies, bf16, attention: loss-and-gradient
    sides = {"remat=none": dict(), "remat=full": dict(remat="full"), "remat=dots_saveable": dict(remat="dots_saveable"),
             "remat=dots_with_no_batch_dims_saveable": dict(remat="dots_with_no_batch_dims_saveable"),
             "bf16 compute, f32 master": dict(dtype=jnp.bfloat16, param_dtype=jnp.float32),
             "attention=xla": dict(attention="xla")}
    compiled = {name: grad_fn(**kw) for name, kw in sides.items()}
    result["grad_temp_MiB"] = {name: mib(c.memory_analysis().temp_size_in_bytes) for name, (c, _) in compiled.items()}
    calls = {name: (lambda c=c, s=s: jax.block_until_ready(c(s))) for name, (c, s) in compiled.items()}
    times = interleaved(calls, args.rounds, settle=True, clock=cpu)
    result["grad_cpu_seconds"] = {name: spread(v) for name, v in times.items()}
    for name in sides:
        print(f"{name:40s} temporaries {result['grad_temp_MiB'][name]:8.1f} MiB, "
              f"CPU s {result['grad_cpu_seconds'][name]['median']:.3f}")

    # attention in the forward pass alone
    forward = {}
    for attention in ("einsum", "xla"):
        graphdef, s = nnx.split(Decoder(config, rngs=nnx.Rngs(0), attention=attention))
        f = jax.jit(lambda s, g=graphdef: nnx.merge(g, s)(ids)).lower(s).compile()
        forward[attention] = lambda f=f, s=s: jax.block_until_ready(f(s))
    times = interleaved(forward, args.rounds, settle=True, clock=cpu)
    result["forward_cpu_seconds"] = {name: spread(v) for name, v in times.items()}
    result["attention_einsum_over_xla"] = {"forward": ratio(times["einsum"], times["xla"])}
    pair = {"einsum": calls["remat=none"], "xla": calls["attention=xla"]}
    times = interleaved(pair, args.rounds, settle=True, clock=cpu)
    result["attention_einsum_over_xla"]["loss_and_gradient"] = ratio(times["einsum"], times["xla"])
    print("forward CPU s:", {k: round(v["median"], 4) for k, v in result["forward_cpu_seconds"].items()})
    print("CPU time einsum / xla (per-round ratios):",
          {k: format_ratio(v) for k, v in result["attention_einsum_over_xla"].items()})

    # asynchronous checkpointing: how long save_checkpoint blocks, and the wait for the files
    big = {"w": jnp.asarray(np.random.default_rng(1).standard_normal(64 * 2**20 // 1), jnp.float32)}  # 256 MB
    result["checkpoint_wall_seconds"] = {}
    for mode in ("sync", "async", "sync", "async"):
        with tempfile.TemporaryDirectory() as tmp:
            run = RunDir(tmp, async_checkpoints=mode == "async")
            start = time.perf_counter()
            run.save_checkpoint(1, big)
            blocked = time.perf_counter() - start
            run.wait_until_finished()
            total = time.perf_counter() - start
        result["checkpoint_wall_seconds"].setdefault(mode, []).append({"blocked": round(blocked, 3),
                                                                        "until_final": round(total, 3)})
    print("checkpoint of 256 MB, wall s:", result["checkpoint_wall_seconds"])
    write_results(RESULTS, result, monitor, allow_load=args.allow_load, speed=False)


if __name__ == "__main__":
    main()
