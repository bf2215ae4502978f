"""Toy-world pretraining throughput: metrics fetched every step (the old loop) vs every 50 steps.

The old ``train_loop`` moved each step's metrics to the host right after dispatching the
step, so the host waited for the step to finish before it could prepare and dispatch the
next one. Now metrics stay on the device and are fetched in blocks (``fetch_every``). Both
sides run the same jitted training-core step on the default toy-world model (4 layers,
d 128, vocabulary 4096, batch 16 × 128 tokens) for ``--steps`` steps, in interleaved rounds
(benchmarks/_protocol.py).

    python benchmarks/train_loop.py            # 40 steps per side per round, 5 rounds

Writes benchmarks/results/train_loop.json and prints steps/s for both sides.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _protocol import Monitor, add_arguments, format_ratio, interleaved, ratio, spread, write_results

RESULTS = Path(__file__).parent / "results" / "train_loop.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--rounds", type=int, default=5)
    add_arguments(p)
    args = p.parse_args()
    monitor = Monitor()

    import jax
    import numpy as np
    from flax import nnx

    from jaxsafe.lm.config import DecoderConfig
    from jaxsafe.lm.loss import lm_loss_fn
    from jaxsafe.lm.model import Decoder
    from jaxsafe.optim.factory import make_optimizer
    from jaxsafe.runs import RunDir, train_loop
    from jaxsafe.toyworld.config import ModelSpec, TrainSpec
    from jaxsafe.train import init_state, make_step, model_loss

    spec, train = ModelSpec(), TrainSpec()
    cfg = DecoderConfig(vocab_size=4096, hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
                        num_layers=spec.num_layers, num_heads=spec.num_heads, num_kv_heads=spec.num_kv_heads,
                        head_dim=spec.head_dim, tie_word_embeddings=True, max_position_embeddings=spec.seq_len)
    graphdef, params = nnx.split(Decoder(cfg, rngs=nnx.Rngs(0)))
    optimizer = make_optimizer(train.optimizer, 1000)
    step = jax.jit(make_step(model_loss(graphdef, None, lm_loss_fn), optimizer), donate_argnums=0)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 4096, (256, spec.seq_len)).astype(np.int32)
    mask = np.ones_like(ids)

    def batch_fn(k):
        idx = np.arange(k * train.batch_size, (k + 1) * train.batch_size) % len(ids)
        return {"input_ids": ids[idx], "attention_mask": mask[idx], "loss_mask": mask[idx]}

    def run(fetch_every):
        def go():
            with tempfile.TemporaryDirectory() as tmp:
                state = init_state(jax.tree.map(lambda x: x.copy(), params), optimizer)
                final = train_loop(RunDir(tmp), state, lambda s, b: step(s, b, None), batch_fn, args.steps,
                                   checkpoint_every=10 ** 9, fetch_every=fetch_every)
                jax.block_until_ready(final)
        return go

    run(50)()  # compile
    times = interleaved({"every_step": run(1), "every_50": run(50)}, args.rounds)
    speed = {k: spread([args.steps / t for t in v]) for k, v in times.items()}
    r = ratio(times["every_step"], times["every_50"])
    print(f"steps/s, metrics fetched every step: {speed['every_step']['median']:.2f}; "
          f"every 50 steps: {speed['every_50']['median']:.2f}; speed-up {format_ratio(r)}")
    write_results(RESULTS, {"steps": args.steps, "rounds": args.rounds, "steps_per_second": speed, "speedup": r},
                  monitor, allow_load=args.allow_load)


if __name__ == "__main__":
    main()
