"""One RMU training step: jaxsafe vs a PyTorch implementation written the way the authors compute it.

PyTorch side (transformers' LlamaForCausalLM, same weights): two full model copies;
the frozen copy's forward under ``torch.no_grad``; the updated model's full forward
with a forward hook capturing layer ℓ's output, on the forget and the retain batch;
MSE losses (the authors' convention, ``authors_convention=True`` on our side); backward;
AdamW on the three down-projections. jaxsafe side: ``jaxsafe.unlearn.rmu.rmu_objective`` in the
training core's step
(layers 0..ℓ only, one jitted function). Each side runs in its own subprocess so
that its peak resident memory can be read; the step-0 losses are compared as a check
that both compute the same thing. The processes alternate over ``--rounds`` rounds
(torch jax, jax torch, ...); the speed-up is the median of per-round ratios
(benchmarks/_protocol.py; no results file from a loaded machine without --allow-load).

    python benchmarks/rmu.py            # 16 layers, ℓ = 3, d 256, vocab 32000, batch 4 × 256 tokens
    python benchmarks/rmu.py --quick    # a smaller configuration for a smoke test

Writes benchmarks/results/rmu.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _protocol import Monitor, add_arguments, format_ratio, ratio, write_results

RESULTS = Path(__file__).parent / "results" / "rmu.json"


def model_config(quick: bool) -> dict:
    if quick:
        return dict(hidden_size=64, intermediate_size=172, num_hidden_layers=8, num_attention_heads=4,
                    num_key_value_heads=4, vocab_size=1000, max_position_embeddings=512)
    return dict(hidden_size=256, intermediate_size=688, num_hidden_layers=16, num_attention_heads=4,
                num_key_value_heads=4, vocab_size=32000, max_position_embeddings=512)


def make_checkpoint(directory: Path, quick: bool) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**model_config(quick), rms_norm_eps=1e-6, tie_word_embeddings=False))
    model.save_pretrained(directory, safe_serialization=True)


def batches(vocab: int, batch: int, seq: int, steps: int):
    import numpy as np

    rng = np.random.default_rng(0)
    return [{k: rng.integers(3, vocab, (batch, seq)).astype(np.int32) for k in ("forget", "retain")} for _ in range(steps)]


def control(hidden: int):
    import numpy as np

    u = np.random.default_rng(1).random(hidden).astype(np.float32)
    return u / np.linalg.norm(u)


def run_torch(ckpt: str, args) -> dict:
    import torch
    from transformers import LlamaForCausalLM

    torch.set_num_threads(os.cpu_count() or 1)
    frozen = LlamaForCausalLM.from_pretrained(ckpt, dtype=torch.float32).eval()
    updated = LlamaForCausalLM.from_pretrained(ckpt, dtype=torch.float32).train()
    layers = [args.layer - 2, args.layer - 1, args.layer]
    for p in updated.parameters():
        p.requires_grad_(False)
    params = [updated.model.layers[i].mlp.down_proj.weight for i in layers]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=5e-5)
    target = args.coef * torch.from_numpy(control(frozen.config.hidden_size))

    def layer_output(model, ids, no_grad):
        cache = []
        hook = model.model.layers[args.layer].register_forward_hook(lambda m, i, o: cache.append(o[0] if isinstance(o, tuple) else o))
        with torch.set_grad_enabled(not no_grad):
            model(input_ids=ids)
        hook.remove()
        return cache[0]

    losses, times = [], []
    for b in batches(frozen.config.vocab_size, args.batch, args.seq, args.warmup + args.steps):
        t0 = time.perf_counter()
        f_ids, r_ids = torch.from_numpy(b["forget"]).long(), torch.from_numpy(b["retain"]).long()
        forget_h = layer_output(updated, f_ids, False)
        unlearn_loss = torch.nn.functional.mse_loss(forget_h, target.expand_as(forget_h))
        retain_h = layer_output(updated, r_ids, False)
        frozen_h = layer_output(frozen, r_ids, True)
        loss = unlearn_loss + args.alpha * torch.nn.functional.mse_loss(retain_h, frozen_h)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(float(loss))
    return {"losses": losses, "times": times}


def run_jax(ckpt: str, args) -> dict:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxsafe.lm.checkpoint import from_pretrained
    from jaxsafe.optim.config import OptimizerConfig
    from jaxsafe.optim.factory import make_optimizer
    from jaxsafe.train import init_state, make_step, select
    from jaxsafe.unlearn.rmu import rmu_objective

    model = from_pretrained(ckpt)
    graphdef, params = nnx.split(model)
    selection = select(params, f"layers.{args.layer - 2}-{args.layer}.mlp.down_proj")
    opt = make_optimizer(OptimizerConfig(name="adamw", lr=5e-5, weight_decay=0.01), args.warmup + args.steps)
    loss_fn = rmu_objective(graphdef, selection, args.layer, args.coef, args.alpha, authors_convention=True)
    step = jax.jit(make_step(loss_fn, opt), donate_argnums=0)
    frozen = {"params": params, "controls": jnp.asarray(control(model.config.hidden_size))[None]}
    state = init_state(selection.split(params), opt)
    losses, times = [], []
    for b in batches(model.config.vocab_size, args.batch, args.seq, args.warmup + args.steps):
        t0 = time.perf_counter()
        ones = jnp.ones(b["forget"].shape, jnp.int32)
        batch = {"forget_ids": b["forget"], "forget_mask": ones, "retain_ids": b["retain"], "retain_mask": ones,
                 "topic": jnp.int32(0)}
        state, metrics = step(state, batch, frozen)
        losses.append(float(metrics["loss"]))  # float() waits for the step to finish
        times.append(time.perf_counter() - t0)
    return {"losses": losses, "times": times}


def child(args) -> None:
    out = (run_torch if args.side == "torch" else run_jax)(args.ckpt, args)
    # VmHWM, this process image's own peak: getrusage's ru_maxrss would include the parent's
    # resident size at fork (Linux carries it over exec), and the parent built the model.
    with open("/proc/self/status") as f:
        out["peak_rss_mb"] = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
    print("RESULT " + json.dumps(out))


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--layer", type=int, default=3)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--coef", type=float, default=6.5)
    p.add_argument("--alpha", type=float, default=1200.0)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of the two processes (default 2)")
    add_arguments(p)
    p.add_argument("--side", choices=("torch", "jax"), help=argparse.SUPPRESS)
    p.add_argument("--ckpt", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.side:
        return child(args)
    monitor = Monitor()
    if args.quick:
        args.seq, args.steps = 64, 3
    with tempfile.TemporaryDirectory() as tmp:
        make_checkpoint(Path(tmp), args.quick)
        # Each side in its own process; the processes alternate (torch jax, jax torch, ...) over the rounds.
        runs = {"torch": [], "jax": []}
        for r in range(args.rounds):
            for side in (("torch", "jax") if r % 2 == 0 else ("jax", "torch")):
                cmd = [sys.executable, __file__, "--side", side, "--ckpt", tmp] + [
                    f"--{k}={getattr(args, k)}" for k in ("layer", "batch", "seq", "coef", "alpha", "warmup", "steps")]
                proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
                runs[side].append(json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))[7:]))
    sides = {side: results[0] for side, results in runs.items()}
    per_round = {side: [median(res["times"][args.warmup:]) for res in results] for side, results in runs.items()}
    speedup = ratio(per_round["torch"], per_round["jax"])
    cfg = model_config(args.quick)
    t_torch, t_jax = median(per_round["torch"]), median(per_round["jax"])
    result = {
        "config": {**cfg, "layer": args.layer, "batch": args.batch, "seq": args.seq, "timed_steps": args.steps},
        "torch_step_s": t_torch, "jax_step_s": t_jax, "speedup": speedup["median"], "speedup_spread": speedup,
        "rounds": args.rounds, "per_round_step_s": per_round,
        "torch_peak_rss_mb": sides["torch"]["peak_rss_mb"], "jax_peak_rss_mb": sides["jax"]["peak_rss_mb"],
        "jax_first_step_s_incl_compile": sides["jax"]["times"][0],
        "step0_loss": {"torch": sides["torch"]["losses"][0], "jax": sides["jax"]["losses"][0]},
        "machine": f"{os.cpu_count()} CPU cores",
    }
    print(f"RMU step, {cfg['num_hidden_layers']} layers, d {cfg['hidden_size']}, l = {args.layer}, batch {args.batch} x {args.seq}")
    print(f"{'':<10}{'step (s)':>10}{'peak RSS (MB)':>15}{'step-0 loss':>14}")
    for s in ("torch", "jax"):
        print(f"{s:<10}{result[f'{s}_step_s']:>10.3f}{result[f'{s}_peak_rss_mb']:>15.0f}{result['step0_loss'][s]:>14.5f}")
    print(f"speedup (torch / jaxsafe): {format_ratio(speedup)} (median of {args.rounds} alternating rounds, min–max)")
    if not args.quick:
        write_results(RESULTS, result, monitor, allow_load=args.allow_load)


if __name__ == "__main__":
    main()
