"""Our NNX decoder vs transformers' PyTorch model on CPU, and a memory table from shapes.

    python benchmarks/lm.py [--layers 4 --d-model 512 --batch 8 --seq 128 --repeats 5] [--allow-load]

Speed: the same Llama-architecture weights (random, saved once as a Hugging Face
directory and loaded by both) run (a) a forward pass and (b) a full fine-tuning
step (next-token cross-entropy, AdamW) in float32 on this machine's CPU, side by
side; we report tokens/s, step time and the speed-up (their time / ours). JAX
runs jitted (compile time excluded, reported separately); PyTorch runs eagerly
with SDPA attention. The sides alternate in ``--repeats`` interleaved rounds
(benchmarks/_protocol.py): times are medians, the speed-up is the median of the
per-round ratios, min–max in brackets. The max |Δlogits| line checks both
computed the same thing. The train step runs twice on our side, in the same rounds:
with the library's default (every layer activation kept for the backward pass) and
with ``remat="dots_saveable"`` (only matmul outputs kept, the rest recomputed).

The bound: every matrix product of the forward pass and of the train step
(``step_matmuls``) is timed on its own in both frameworks, interleaved, and
summed with its count. PyTorch's measured time divided by our matmul-only time
is the largest speed-up we could reach if everything but the matrix products
cost nothing — a target above it needs faster GEMMs, not less overhead.

Memory (computed from shapes, not measured; activations excluded): parameters,
gradients and optimizer state per device for Mistral-7B (Zephyr-7B-β),
Llama-3-8B and Yi-34B, everything sharded FSDP-style over all devices, for RMU
(bf16 model, frozen bf16 copy of layers 0..ℓ=7, three trainable down_proj
matrices with f32 master weights + f32 gradients + AdamW moments) and TAR
(f32 master weights, f32 gradient accumulator, two f32 outer-optimizer moments,
an f32 AdamW adversary θ' with its gradient and two moments, a bf16 reference model).

Writes benchmarks/results/lm.json (only when the machine was idle, or with
--allow-load, marked "loaded") and prints both tables.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from _protocol import Monitor, add_arguments, format_ratio, interleaved, ratio, write_results
from jaxsafe.lm import DecoderConfig, count_parameters, from_pretrained, lm_loss_fn
from jaxsafe.train import init_state, make_step, model_loss

RESULTS = Path(__file__).resolve().parent / "results" / "lm.json"
REMAT_SIDE = "jaxsafe, remat dots_saveable"

MODELS = {
    "Mistral-7B (Zephyr-7B-beta)": DecoderConfig(vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                                                 num_layers=32, num_heads=32, num_kv_heads=8, head_dim=128,
                                                 architecture="mistral"),
    "Llama-3-8B": DecoderConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_layers=32,
                                num_heads=32, num_kv_heads=8, head_dim=128),
    "Yi-34B": DecoderConfig(vocab_size=64000, hidden_size=7168, intermediate_size=20480, num_layers=60,
                            num_heads=56, num_kv_heads=8, head_dim=128),
}
# (name, devices, GiB of accelerator memory each)
MESHES = [("8x GPU 80GB", 8, 80), ("TPU v4-32 (16 chips x 32GiB)", 16, 32), ("TPU v5e-64 (64 x 16GiB)", 64, 16)]
RMU_LAYER = 7  # h^ℓ is read after layer ℓ; down_proj of layers ℓ-2..ℓ train


def memory_table() -> list[dict]:
    rows = []
    gib = 1024**3
    for name, c in MODELS.items():
        n = count_parameters(c)
        embed = c.vocab_size * c.hidden_size
        per_layer = (count_parameters(c) - embed * (1 if c.tie_word_embeddings else 2) - c.hidden_size) // c.num_layers
        down = c.intermediate_size * c.hidden_size
        frozen_prefix = embed + (RMU_LAYER + 1) * per_layer  # the frozen model runs only layers 0..ℓ
        methods = {
            "RMU": 2 * n + 2 * frozen_prefix + 3 * down * (4 + 4 + 8),
            "TAR": n * (4 + 4 + 8 + (4 + 4 + 8) + 2),
        }
        for method, total in methods.items():
            row = {"model": name, "params_B": round(n / 1e9, 2), "method": method, "total_GiB": round(total / gib, 1)}
            for mesh, devices, capacity in MESHES:
                per = total / devices / gib
                row[mesh] = f"{per:.1f}" + ("" if per < capacity else " (too big)")
            rows.append(row)
    return rows


def step_matmuls(layers: int, d: int, heads: int, kv_heads: int, head_dim: int, ffn: int, vocab: int,
                 batch: int, seq: int) -> list[tuple[str, tuple, tuple, bool, bool, int]]:
    """The matrix products of one forward pass and of one train step, as
    ``(pass, a shape, b shape, transpose a, transpose b, count)``.

    Per weight W [in, out] applied to N = B·T rows: the forward X·W, and in the
    backward dY·Wᵀ (input gradient) and Xᵀ·dY (weight gradient). Attention per
    layer, over the B·H heads: S = Q·Kᵀ and O = P·V forward, and dP = dO·Vᵀ,
    dV = Pᵀ·dO, dQ = dS·K, dK = dSᵀ·Q backward. "forward" rows are the forward
    pass; a train step is all rows.
    """
    n, g = batch * seq, batch * heads
    weights = [(d, heads * head_dim, 1), (d, kv_heads * head_dim, 2), (heads * head_dim, d, 1), (d, ffn, 2), (ffn, d, 1)]
    rows = []
    for fan_in, fan_out, per_layer in weights + [(d, vocab, None)]:
        count = layers * per_layer if per_layer else 1
        rows += [("forward", (n, fan_in), (fan_in, fan_out), False, False, count),
                 ("backward", (n, fan_out), (fan_in, fan_out), False, True, count),
                 ("backward", (n, fan_in), (n, fan_out), True, False, count)]
    qk, pv = ((g, seq, head_dim), (g, seq, head_dim), False, True), ((g, seq, seq), (g, seq, head_dim), False, False)
    rows += [("forward", *qk, layers), ("forward", *pv, layers),
             ("backward", (g, seq, head_dim), (g, seq, head_dim), False, True, layers),  # dP = dO·Vᵀ
             ("backward", (g, seq, seq), (g, seq, head_dim), True, False, 2 * layers),   # dV = Pᵀ·dO, dK = dSᵀ·Q
             ("backward", (g, seq, seq), (g, seq, head_dim), False, False, layers)]      # dQ = dS·K
    return rows


def matmul_only(args, repeats: int) -> dict:
    """Seconds that the forward pass and the train step spend in matrix products alone,
    each product timed on its own in both frameworks (interleaved), times its count.

    This is the bound: a step whose every other operation were free would take this
    long at the framework's own matmul speed."""
    import torch

    cfg = model_config(args)
    rows = step_matmuls(cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                        cfg.intermediate_size, cfg.vocab_size, args.batch, args.seq)
    rng = np.random.default_rng(0)
    total = {"jaxsafe": {"forward": 0.0, "train_step": 0.0}, "transformers": {"forward": 0.0, "train_step": 0.0}}
    gflop = {"forward": 0.0, "train_step": 0.0}
    for kind, a_shape, b_shape, ta, tb, count in rows:
        a = rng.standard_normal(a_shape, dtype=np.float32)
        b = rng.standard_normal(b_shape, dtype=np.float32)
        ja, jb = jnp.asarray(a), jnp.asarray(b)
        tja, tjb = torch.from_numpy(a), torch.from_numpy(b)
        f = jax.jit(lambda x, y: jnp.matmul(jnp.swapaxes(x, -1, -2) if ta else x, jnp.swapaxes(y, -1, -2) if tb else y))
        f(ja, jb).block_until_ready()
        sides = {"jaxsafe": lambda: f(ja, jb).block_until_ready(),
                 "transformers": lambda: torch.matmul(tja.transpose(-1, -2) if ta else tja,
                                                      tjb.transpose(-1, -2) if tb else tjb)}
        times = interleaved(sides, repeats, settle=True)
        m, k = (a_shape[-1], a_shape[-2]) if ta else (a_shape[-2], a_shape[-1])
        nn = b_shape[-2] if tb else b_shape[-1]
        flop = 2.0 * m * k * nn * (a_shape[0] if len(a_shape) == 3 else 1) * count
        for side, t in times.items():
            for pass_ in ("train_step",) + (("forward",) if kind == "forward" else ()):
                total[side][pass_] += statistics.median(t) * count
        for pass_ in ("train_step",) + (("forward",) if kind == "forward" else ()):
            gflop[pass_] += flop / 1e9
    return {"seconds": total, "gflop": gflop}


def speed(args) -> dict:
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = model_config(args)
    hf_config = transformers.LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
                                         intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
                                         num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
                                         head_dim=cfg.head_dim, max_position_embeddings=cfg.max_position_embeddings)
    torch_model = transformers.LlamaForCausalLM(hf_config).float()
    rng = np.random.default_rng(0)
    ids = rng.integers(0, args.vocab, (args.batch, args.seq)).astype(np.int32)
    mask = np.ones_like(ids)
    with tempfile.TemporaryDirectory() as tmp:
        torch_model.save_pretrained(tmp, safe_serialization=True)
        model = from_pretrained(tmp, dtype=jnp.float32)
    tokens = args.batch * args.seq

    # forward
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda s, i, m: nnx.merge(graphdef, s)(i, m))
    start = time.perf_counter()
    ours_logits = forward(state, ids, mask).block_until_ready()
    compile_fwd = time.perf_counter() - start
    t_ids = torch.tensor(ids, dtype=torch.long)
    torch_model.eval()

    def torch_forward():
        with torch.no_grad():
            return torch_model(t_ids).logits

    theirs_logits = torch_forward().numpy()
    fwd = interleaved({"jaxsafe": lambda: forward(state, ids, mask).block_until_ready(), "transformers": torch_forward},
                      args.repeats)
    ours_fwd, theirs_fwd = statistics.median(fwd["jaxsafe"]), statistics.median(fwd["transformers"])
    max_diff = float(np.max(np.abs(np.asarray(ours_logits) - theirs_logits)))

    # training step: full fine-tuning, AdamW; "jaxsafe" is the library default (remat "none"),
    # "jaxsafe, remat dots_saveable" keeps only matmul outputs for the backward pass.
    optimizer = optax.with_extra_args_support(optax.adamw(1e-4))
    batch = {"input_ids": jnp.asarray(ids), "attention_mask": jnp.asarray(mask), "loss_mask": jnp.asarray(mask)}
    ours_sides, compile_step = {}, {}
    for side, policy in (("jaxsafe", "none"), (REMAT_SIDE, "dots_saveable")):
        model.remat = policy
        graphdef, params = nnx.split(model)
        step = jax.jit(make_step(model_loss(graphdef, None, lm_loss_fn), optimizer), donate_argnums=0)
        live = {"state": init_state(jax.tree.map(jnp.copy, params), optimizer)}  # own buffers: the step donates
        start = time.perf_counter()
        live["state"], metrics = step(live["state"], batch)
        jax.block_until_ready(metrics)
        compile_step[side] = time.perf_counter() - start

        def ours_step(step=step, live=live):
            live["state"], m = step(live["state"], batch)
            jax.block_until_ready(m)

        ours_sides[side] = ours_step
    model.remat = "none"

    torch_model.train()
    torch_opt = torch.optim.AdamW(torch_model.parameters(), lr=1e-4)

    def torch_step():
        loss = torch_model(t_ids, labels=t_ids).loss
        loss.backward()
        torch_opt.step()
        torch_opt.zero_grad()

    torch_step()
    train = interleaved({**ours_sides, "transformers": torch_step}, args.repeats)
    ours_train, theirs_train = statistics.median(train["jaxsafe"]), statistics.median(train["transformers"])
    bound = matmul_only(args, args.repeats)
    mm = bound["seconds"]
    return {
        "config": {"layers": args.layers, "d_model": args.d_model, "heads": cfg.num_heads, "kv_heads": cfg.num_kv_heads,
                   "intermediate": args.d_model * 3, "vocab": args.vocab, "batch": args.batch, "seq": args.seq,
                   "params": count_parameters(model.config)},
        "rounds": args.repeats,
        "forward_tokens_per_s": {"jaxsafe": tokens / ours_fwd, "transformers": tokens / theirs_fwd,
                                 "ratio": ratio(fwd["transformers"], fwd["jaxsafe"])["median"],
                                 "ratio_spread": ratio(fwd["transformers"], fwd["jaxsafe"])},
        "train_step_s": {"jaxsafe": ours_train, "transformers": theirs_train,
                         "ratio": ratio(train["transformers"], train["jaxsafe"])["median"],
                         "ratio_spread": ratio(train["transformers"], train["jaxsafe"]),
                         "rounds_s": train},
        "train_step_remat_dots_saveable_s": {"jaxsafe": statistics.median(train[REMAT_SIDE]),
                                             "ratio": ratio(train["transformers"], train[REMAT_SIDE])["median"],
                                             "ratio_spread": ratio(train["transformers"], train[REMAT_SIDE])},
        "matmul_only_s": mm, "matmul_gflop": bound["gflop"],
        # The speed-up if everything but our matrix products were free: PyTorch's measured time / our matmul time.
        "bound_ratio": {"forward": theirs_fwd / mm["jaxsafe"]["forward"],
                        "train_step": theirs_train / mm["jaxsafe"]["train_step"]},
        "compile_s": {"forward": compile_fwd, "train_step": compile_step},
        "max_abs_logit_diff": max_diff,
    }


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The benchmark model's options (also benchmarks/lm_profile.py's): a Llama-architecture
    decoder of ``--layers`` layers, width ``--d-model`` (heads of 64, half as many KV heads,
    MLP 3 × d), vocabulary ``--vocab``, on a batch of ``--batch`` × ``--seq`` tokens."""
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)


def model_config(args) -> DecoderConfig:
    """The :class:`DecoderConfig` of :func:`add_model_arguments`' options."""
    heads = args.d_model // 64
    return DecoderConfig(vocab_size=args.vocab, hidden_size=args.d_model, intermediate_size=3 * args.d_model,
                         num_layers=args.layers, num_heads=heads, num_kv_heads=max(heads // 2, 1), head_dim=64,
                         max_position_embeddings=max(2048, args.seq))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(p)
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--out", type=Path, default=RESULTS)
    add_arguments(p)
    args = p.parse_args(argv)
    monitor = Monitor()
    import torch

    result = {"machine": f"{platform.processor() or platform.machine()}, {jax.device_count()} JAX CPU device(s), "
                         f"torch {torch.__version__} ({torch.get_num_threads()} threads), jax {jax.__version__}, "
                         f"{os.cpu_count()} cores",
              "speed": speed(args), "memory": memory_table()}
    s = result["speed"]
    print(f"{result['machine']}\nconfig: {s['config']}")
    print("\n| | jaxsafe (JAX, jit) | transformers (PyTorch) | speed-up |\n|---|---|---|---|")
    f = s["forward_tokens_per_s"]
    print(f"| forward tokens/s | {f['jaxsafe']:,.0f} | {f['transformers']:,.0f} | {format_ratio(f['ratio_spread'])} |")
    t = s["train_step_s"]
    print(f"| train step (AdamW, full FT) | {t['jaxsafe'] * 1e3:,.0f} ms | {t['transformers'] * 1e3:,.0f} ms | {format_ratio(t['ratio_spread'])} |")
    tr = s["train_step_remat_dots_saveable_s"]
    print(f"| train step, remat dots_saveable | {tr['jaxsafe'] * 1e3:,.0f} ms | | {format_ratio(tr['ratio_spread'])} |")
    mm = s["matmul_only_s"]
    print("\nmatrix products alone (each timed on its own, times its count), and the bound they set:\n")
    print("| | matmul GFLOP | jaxsafe matmuls | its share of our time | PyTorch matmuls | its share of PyTorch's time "
          "| bound: PyTorch time / our matmul time |\n|---|---|---|---|---|---|---|")
    tokens = s["config"]["batch"] * s["config"]["seq"]
    for pass_, ours_t, theirs_t in (("forward", tokens / f["jaxsafe"], tokens / f["transformers"]),
                                    ("train_step", t["jaxsafe"], t["transformers"])):
        print(f"| {pass_} | {s['matmul_gflop'][pass_]:.1f} | {mm['jaxsafe'][pass_] * 1e3:,.0f} ms "
              f"| {mm['jaxsafe'][pass_] / ours_t:.0%} | {mm['transformers'][pass_] * 1e3:,.0f} ms "
              f"| {mm['transformers'][pass_] / theirs_t:.0%} | {s['bound_ratio'][pass_]:.2f}× |")
    print(f"compile: forward {s['compile_s']['forward']:.1f} s, train step {s['compile_s']['train_step']['jaxsafe']:.1f} s; "
          f"max |logits diff| {s['max_abs_logit_diff']:.1e}")
    meshes = [m for m, _, _ in MESHES]
    print("\nGiB per device (params + grads + optimizer state; activations excluded)\n")
    print("| model | params (B) | method | total GiB | " + " | ".join(meshes) + " |")
    print("|---" * (4 + len(meshes)) + "|")
    for r in result["memory"]:
        print(f"| {r['model']} | {r['params_B']} | {r['method']} | {r['total_GiB']} | "
              + " | ".join(r[m] for m in meshes) + " |")
    print(f"(speed-up: median of {s['rounds']} interleaved rounds' ratios, min–max in brackets)")
    write_results(args.out, result, monitor, allow_load=args.allow_load)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
