"""TAR's speed: vmapped attacks vs a Python loop over them, a TAR step vs an RMU step, compile times.

On the toy world's model size (hidden 128, 4 layers, random weights and tokens — speed
does not depend on what the weights know):

1. one TAR outer step with A attacks vmapped in one program, against the authors' way —
   the same attacks one after another from Python (one compiled single-attack
   meta-gradient called A times, then the retain gradient and the outer update);
2. one TAR outer step against one RMU step on the same model and batch size;
3. compile times of both; the exact second-order meta-gradient against first order;
4. a group of A red-team attacks (lax.scan over steps, evaluation inside) as one vmapped
   program against the same program run once per attack.

Usage: python benchmarks/tar.py [--rounds 3] [--allow-load]   (< 3 min on 2 idle cores)
Writes benchmarks/results/tar.json (see benchmarks/_protocol.py for the load rules).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _protocol import Monitor, add_arguments, format_ratio, interleaved, ratio, spread, write_results

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

VOCAB, HIDDEN, LAYERS, SEQ = 1024, 128, 4, 64


def model():
    from jaxsafe.lm.config import DecoderConfig
    from jaxsafe.lm.model import Decoder

    cfg = DecoderConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=3 * HIDDEN, num_layers=LAYERS,
                        num_heads=4, num_kv_heads=4, head_dim=32, max_position_embeddings=128,
                        tie_word_embeddings=True, pad_token_id=0)
    return Decoder(cfg, rngs=nnx.Rngs(0))


def tokens(rng, *shape):
    ids = rng.integers(1, VOCAB, size=(*shape, SEQ)).astype(np.int32)
    return ids, np.ones_like(ids)


def timed_compile(fn, *args):
    t = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t


def block(x):
    return jax.block_until_ready(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--attacks", type=int, default=4, help="A: attacks per TAR step / per suite group")
    parser.add_argument("--inner-steps", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "tar.json")
    add_arguments(parser)
    args = parser.parse_args()
    monitor = Monitor()

    from jaxsafe.optim.config import OptimizerConfig, ScheduleConfig
    from jaxsafe.optim.factory import make_optimizer
    from jaxsafe.tamper.tar import InnerLoop, make_tar_step
    from jaxsafe.train import apply_gradients, init_state, make_step, select
    from jaxsafe.unlearn.losses import control_vectors
    from jaxsafe.unlearn.rmu import rmu_objective

    rng = np.random.default_rng(0)
    m = model()
    graphdef, params, rest = nnx.split(m, nnx.Param, ...)
    a, k, b = args.attacks, args.inner_steps, 8
    adv_ids, adv_mask = tokens(rng, a, k, b)
    r_ids, r_mask = tokens(rng, b)
    f_ids, f_mask = tokens(rng, b)
    batch = {"retain_ids": r_ids, "retain_mask": r_mask, "tr_ids": f_ids, "tr_mask": f_mask,
             "adv_ids": adv_ids, "adv_mask": adv_mask, "adv_lr": np.full(a, 1e-3, np.float32)}
    adversary = make_optimizer(OptimizerConfig(name="adamw", lr=1e-3), k)
    outer = make_optimizer(OptimizerConfig(name="schedule_free_adamw", lr=1e-3,
                                           schedule=ScheduleConfig(kind="linear_warmup", warmup_steps=10)), 100)
    inner = InnerLoop(steps=k, tr_every=4)
    step = make_tar_step(graphdef, inner, adversary, outer)
    state = init_state(params, outer)
    frozen = (rest, params)

    # 1. vmapped TAR step vs the attacks one at a time from Python
    tar_compiled, tar_compile_s = timed_compile(step, state, batch, frozen)
    one = {**batch, "adv_ids": adv_ids[:1], "adv_mask": adv_mask[:1], "adv_lr": batch["adv_lr"][:1]}
    meta_one, meta_compile_s = timed_compile(lambda th, bt: step.meta_gradient(th, rest, bt)[0], params, one)

    def retain_and_update(st, tr_grads, bt):
        (loss, _), g = step.retain_gradient(st.params, rest, params, bt["retain_ids"], bt["retain_mask"])
        grads = jax.tree.map(lambda x, y: 4.0 * x + y, tr_grads, g)
        return apply_gradients(outer, st, grads, loss)

    update_c, _ = timed_compile(retain_and_update, state, jax.tree.map(jnp.zeros_like, params), batch)

    def vmapped():
        block(tar_compiled(state, batch, frozen))

    def sequential():
        acc = None
        for i in range(a):
            lane = {**batch, "adv_ids": adv_ids[i:i + 1], "adv_mask": adv_mask[i:i + 1],
                    "adv_lr": batch["adv_lr"][i:i + 1]}
            g = meta_one(params, lane)
            acc = g if acc is None else jax.tree.map(jnp.add, acc, g)
        acc = jax.tree.map(lambda x: x / a, acc)
        block(update_c(state, acc, batch))

    vmapped(); sequential()
    t_tar = interleaved({"vmapped": vmapped, "sequential": sequential}, args.rounds)

    # 2. one RMU step on the same model (the paper's three down_proj matrices at layer 2)
    _, full = nnx.split(m)
    sel = select(full, "layers.0-2.mlp.down_proj")
    rmu_loss_fn = rmu_objective(graphdef, sel, 2, 6.5, 100.0)
    rmu_opt = make_optimizer(OptimizerConfig(name="adamw", lr=5e-5), 100)
    rmu_state = init_state(sel.split(full), rmu_opt)
    rmu_frozen = {"params": full, "controls": control_vectors(jax.random.key(0), 1, HIDDEN)}
    rmu_batch = {"forget_ids": f_ids, "forget_mask": f_mask, "retain_ids": r_ids, "retain_mask": r_mask,
                 "topic": np.int32(0)}
    rmu_compiled, rmu_compile_s = timed_compile(make_step(rmu_loss_fn, rmu_opt), rmu_state, rmu_batch, rmu_frozen)

    def rmu():
        block(rmu_compiled(rmu_state, rmu_batch, rmu_frozen))

    def tar_one():
        block(tar_compiled(state, batch, frozen))

    rmu(); tar_one()
    t_rmu = interleaved({"tar": tar_one, "rmu": rmu}, args.rounds)

    # 5. the exact second-order meta-gradient against first order (same step, A attacks)
    second = make_tar_step(graphdef, InnerLoop(steps=k, tr_every=4, second_order=True), adversary, outer)
    so_compiled, so_compile_s = timed_compile(second, state, batch, frozen)

    def second_order():
        block(so_compiled(state, batch, frozen))

    second_order()
    t_so = interleaved({"second": second_order, "first": tar_one}, args.rounds)

    # 4. a red-team group: A attacks × 50 steps, evaluation every 25 steps inside the program
    from jaxsafe.tamper.attacks import AttackConfig
    from jaxsafe.tamper.runner import AttackCorpora, Target, run_group
    from jaxsafe.tamper.scoring import QuestionArrays

    pool_ids, pool_mask = tokens(rng, 64)
    corpora = AttackCorpora(pool_ids, pool_mask, {"forget": np.arange(32), "retain": np.arange(32, 64)})
    n_q = 64
    q_ids, q_mask = tokens(rng, 4 * n_q)
    weights = np.zeros(q_ids.shape, np.float32)
    weights[:, -3:] = 1.0
    sets = {"hazard": QuestionArrays(q_ids, q_mask, np.roll(q_ids, -1, 1), weights, np.zeros((0,), np.int32),
                                     np.zeros((0, 4), np.int32), rng.integers(0, 4, n_q).astype(np.int32), "cloze", 64)}
    attacks = [AttackConfig(name=f"a{i}", steps=50, batch_size=8, eval_every=25, seed=i,
                            optimizer=OptimizerConfig(name="adamw", lr=float(lr)))
               for i, lr in enumerate(np.geomspace(1e-4, 3e-3, a))]
    target = Target(graphdef, params, rest)
    t = time.perf_counter()
    run_group(target, attacks, corpora, sets, vmap=True)
    suite_compile_s = time.perf_counter() - t
    run_group(target, attacks, corpora, sets, vmap=False)
    t_suite = interleaved({"vmapped": lambda: run_group(target, attacks, corpora, sets, vmap=True),
                           "sequential": lambda: run_group(target, attacks, corpora, sets, vmap=False)}, args.rounds)

    result = {
        "model": {"vocab": VOCAB, "hidden": HIDDEN, "layers": LAYERS, "seq": SEQ,
                  "parameters": int(sum(x.size for x in jax.tree.leaves(params)))},
        "attacks": a, "inner_steps": k, "adversary_batch": b,
        "tar_step_vmapped_s": spread(t_tar["vmapped"]),
        "tar_step_sequential_s": spread(t_tar["sequential"]),
        "tar_sequential_over_vmapped": ratio(t_tar["sequential"], t_tar["vmapped"]),
        "tar_step_s": spread(t_rmu["tar"]), "rmu_step_s": spread(t_rmu["rmu"]),
        "tar_over_rmu_step": ratio(t_rmu["tar"], t_rmu["rmu"]),
        "second_order_step_s": spread(t_so["second"]),
        "second_over_first_order": ratio(t_so["second"], t_so["first"]),
        "compile_s": {"tar_step": round(tar_compile_s, 2), "tar_step_second_order": round(so_compile_s, 2), "tar_single_attack_meta_gradient": round(meta_compile_s, 2),
                      "rmu_step": round(rmu_compile_s, 2), "suite_group_first_call": round(suite_compile_s, 2)},
        "suite_group_vmapped_s": spread(t_suite["vmapped"]),
        "suite_group_sequential_s": spread(t_suite["sequential"]),
        "suite_sequential_over_vmapped": ratio(t_suite["sequential"], t_suite["vmapped"]),
    }
    print(f"TAR step, {a} attacks × K={k}: vmapped {result['tar_step_vmapped_s']['median']:.3f} s, one at a time "
          f"{result['tar_step_sequential_s']['median']:.3f} s -> {format_ratio(result['tar_sequential_over_vmapped'])}")
    print(f"TAR step / RMU step: {format_ratio(result['tar_over_rmu_step'])} "
          f"({result['tar_step_s']['median']:.3f} s vs {result['rmu_step_s']['median']:.4f} s)")
    print(f"second-order / first-order TAR step: {format_ratio(result['second_over_first_order'])}")
    print(f"compile: {result['compile_s']}")
    print(f"suite group of {a} attacks × 50 steps: vmapped {result['suite_group_vmapped_s']['median']:.2f} s, "
          f"sequential {result['suite_group_sequential_s']['median']:.2f} s -> "
          f"{format_ratio(result['suite_sequential_over_vmapped'])}")
    write_results(args.out, result, monitor, allow_load=args.allow_load)


if __name__ == "__main__":
    main()
