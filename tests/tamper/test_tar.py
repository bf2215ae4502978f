"""TAR's outer step: first-order meta-gradient vs a hand-written loop, second-order vs finite
differences, vmapped attack lanes vs one at a time, microbatches vs one batch."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxsafe.optim.config import OptimizerConfig
from jaxsafe.optim.factory import make_optimizer
from jaxsafe.tamper.losses import entropy_loss, inner_step_weights, lm_loss, retain_loss
from jaxsafe.tamper.runner import AttackCorpora
from jaxsafe.tamper.tar import InnerLoop, make_tar_step
from jaxsafe.train import init_state
from tests.tamper.conftest import FORGET, RETAIN, preference_rows, tiny_model

K, EVERY = 4, 2


def _batch(tokenizer, lanes=1, lrs=(1e-2,)):
    c = AttackCorpora.from_texts(tokenizer, {"forget": FORGET, "retain": RETAIN}, max_length=16)
    f, r = c.streams["forget"], c.streams["retain"]
    rng = np.random.default_rng(0)
    adv = rng.choice(f, (lanes, K, 2))
    return {"retain_ids": c.ids[r[:3]], "retain_mask": c.mask[r[:3]],
            "tr_ids": c.ids[f[-3:]], "tr_mask": c.mask[f[-3:]],
            "adv_ids": c.ids[adv], "adv_mask": c.mask[adv], "adv_lr": np.asarray(lrs[:lanes], np.float32)}


def _split(model):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, params, rest


def test_first_order_equals_hand_written_loop(tokenizer):
    model = tiny_model(tokenizer)
    graphdef, theta, rest = _split(model)
    ref = jax.tree.map(lambda x: x * 1.01, theta)  # a reference unlike θ, so the retain term is not at its minimum
    batch = _batch(tokenizer)
    adversary = make_optimizer(OptimizerConfig(name="adamw", lr=1.0), K)  # lr set per lane from the batch
    outer = make_optimizer(OptimizerConfig(name="sgd", lr=1.0), 10)  # θ_new = θ − g exposes g
    step = make_tar_step(graphdef, InnerLoop(steps=K, tr_every=EVERY), adversary, outer, lambda_tr=4.0, lambda_retain=1.0)
    new_state, metrics = jax.jit(step)(init_state(theta, outer), batch, (rest, ref))
    got = jax.tree.map(lambda a, b: a - b, theta, new_state.params)

    # by hand: optax's AdamW from θ, entropy gradients after updates 2 and 4, weights exp(0.0625(k−3))
    f = lambda p: nnx.merge(graphdef, p, rest)
    opt = optax.adamw(1e-2, weight_decay=0.0)
    p, s = theta, opt.init(theta)
    acc = jax.tree.map(jnp.zeros_like, theta)
    w = inner_step_weights(K, EVERY)
    for k in range(K):
        ids, mask = batch["adv_ids"][0, k], batch["adv_mask"][0, k]
        g = jax.grad(lambda q: lm_loss(f(q)(ids, mask), ids, mask))(p)
        u, s = opt.update(g, s, p)
        p = optax.apply_updates(p, u)
        if w[k]:
            gt = jax.grad(lambda q: entropy_loss(f(q)(batch["tr_ids"], batch["tr_mask"]), batch["tr_mask"]))(p)
            acc = jax.tree.map(lambda a, b: a + w[k] * b, acc, gt)

    def retain(q):
        m = f(q)
        h = m.all_hidden_states(batch["retain_ids"], batch["retain_mask"])
        href = f(ref).all_hidden_states(batch["retain_ids"], batch["retain_mask"])
        return retain_loss(m.unembed(h[-1]), batch["retain_ids"], batch["retain_mask"], h, href)[0]

    expected = jax.tree.map(lambda a, b: 4.0 * a + b, acc, jax.grad(retain)(theta))
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-6, err_msg=jax.tree_util.keystr(path))
    assert np.isfinite(float(metrics["loss"]))


def test_vmap_lanes_equal_one_at_a_time(tokenizer):
    model = tiny_model(tokenizer, seed=1)
    graphdef, theta, rest = _split(model)
    lrs = (1e-2, 3e-3)
    batch = _batch(tokenizer, lanes=2, lrs=lrs)
    adversary = make_optimizer(OptimizerConfig(name="adamw", lr=1.0), K)
    outer = make_optimizer(OptimizerConfig(name="sgd", lr=1.0), 10)
    step = jax.jit(make_tar_step(graphdef, InnerLoop(steps=K, tr_every=EVERY), adversary, outer, lambda_retain=0.0))
    both, _ = step(init_state(theta, outer), batch, (rest, theta))
    singles = []
    for lane in range(2):
        one = {**batch, **{k: batch[k][lane:lane + 1] for k in ("adv_ids", "adv_mask", "adv_lr")}}
        s, _ = step(init_state(theta, outer), one, (rest, theta))
        singles.append(s.params)
    mean = jax.tree.map(lambda a, b: (a + b) / 2, *singles)
    for a, b in zip(jax.tree.leaves(both.params), jax.tree.leaves(mean)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


# (adversary, L_TR, a LoRA lane next to the full one): each of the adversaries, TR losses and
# lane kinds is differentiated through its inner loop at least once
@pytest.mark.parametrize("adversary_name, tr_loss, lora", [("sgd", "entropy", False), ("adamw", "dpo", True)],
                         ids=["sgd-entropy", "adamw-dpo-lora"])
def test_second_order_matches_finite_differences(tokenizer, adversary_name, tr_loss, lora):
    # float64 throughout (the decoder's RMSNorm still normalizes in float32, hence eps = 1e-4
    # and rtol 1e-3); the global flag, restored afterwards: jax.enable_x64's context manager
    # gave inconsistent numbers here (jit caches of float32 programs)
    jax.config.update("jax_enable_x64", True)
    try:
        from jaxsafe.lm.config import DecoderConfig
        from jaxsafe.lm.lora import LoRAConfig
        from jaxsafe.lm.model import Decoder
        from jaxsafe.tamper.losses import sequence_logprob

        cfg = DecoderConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_layers=1,
                            num_heads=2, num_kv_heads=2, head_dim=8, max_position_embeddings=64,
                            tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id)
        model = Decoder(cfg, rngs=nnx.Rngs(0), dtype=jnp.float64, param_dtype=jnp.float64)
        graphdef, theta, rest = _split(model)
        batch = _batch(tokenizer, lrs=(0.5 if adversary_name == "sgd" else 1e-2,))
        if tr_loss == "dpo":  # x_TR: preference pairs, π_ref = the model at θ
            ids, mask, loss_mask = preference_rows(tokenizer, " I cannot help with that.")
            ref = jax.jit(lambda p: sequence_logprob(nnx.merge(graphdef, p, rest)(ids, mask), ids, loss_mask))(theta)
            batch.update(tr_ids=ids, tr_mask=mask, tr_loss_mask=loss_mask, tr_ref_logp=np.asarray(ref))
        lora_cfg = LoRAConfig(rank=2, alpha=4.0, dropout=0.0) if lora else None
        if lora:  # a LoRA lane on other rows of the forget text: its adapters are trained on θ too
            batch.update(lora_ids=batch["adv_ids"][:, ::-1], lora_mask=batch["adv_mask"][:, ::-1],
                         lora_lr=np.asarray([3e-2]), lora_seed=np.asarray([5], np.uint32))
        # Adam's step g/(√v + ε) bends sharply where |g| ≲ ε (unused embedding rows): with the
        # default ε = 1e-8 central differences need steps ~1e-7, where the decoder's float32
        # RMSNorm rounding dominates (measured: 2% off); ε = 1e-3 keeps AdamW smooth at the
        # scale of the differences, with a difference step (1e-6) that moves gradients well below ε.
        # eps_root: a fresh adapter's first gradient is exactly 0 in A, where √v has no derivative
        adam = dict(eps=1e-3, eps_root=1e-12) if adversary_name == "adamw" else {}
        adversary = make_optimizer(OptimizerConfig(name=adversary_name, lr=1.0, **adam), K)
        outer = make_optimizer(OptimizerConfig(name="sgd", lr=1.0), 10)
        inner = InnerLoop(steps=K, tr_every=EVERY, tr_loss=tr_loss, second_order=True, lora=lora_cfg)
        raw = make_tar_step(graphdef, inner, adversary, outer, lambda_tr=1.0, lambda_retain=0.0)
        step = jax.jit(raw)
        state = init_state(theta, outer)
        new_state, _ = step(state, batch, (rest, theta))
        grad = jax.tree.map(lambda a, b: a - b, theta, new_state.params)

        leaves, treedef = jax.tree.flatten(theta)
        rng = np.random.default_rng(0)
        v = jax.tree.unflatten(treedef, [jnp.asarray(rng.normal(size=x.shape)) for x in leaves])
        objective = jax.jit(lambda p: raw.tr_objective(p, rest, batch)[0])
        eps = 1e-4 if adversary_name == "sgd" else 1e-6
        plus = objective(jax.tree.map(lambda a, b: a + eps * b, theta, v))
        minus = objective(jax.tree.map(lambda a, b: a - eps * b, theta, v))
        fd = (plus - minus) / (2 * eps)
        analytic = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(v)))
        np.testing.assert_allclose(analytic, fd, rtol=1e-3 if adversary_name == "sgd" else 5e-3)
        if not lora:  # forward mode through the same program agrees to rounding (checked once: one more compile)
            np.testing.assert_allclose(jax.jvp(objective, (theta,), (v,))[1], analytic, rtol=1e-6)
        # and it differs from the first-order approximation (the inner loop moves θ')
        first = jax.jit(make_tar_step(graphdef, dataclasses.replace(inner, second_order=False), adversary, outer,
                                      lambda_tr=1.0, lambda_retain=0.0))
        fo_state, _ = first(state, batch, (rest, theta))
        fo = sum(jnp.vdot(a - b, c) for a, b, c in zip(jax.tree.leaves(theta), jax.tree.leaves(fo_state.params),
                                                        jax.tree.leaves(v)))
        assert abs(float(fo - analytic)) > 1e-2 * abs(float(analytic))
    finally:
        jax.config.update("jax_enable_x64", False)


def test_lora_lane_equals_hand_written_loop(tokenizer):
    """A LoRA adversary lane: optax AdamW on fresh adapters over the frozen θ; the first-order
    term is ∇_θ L_TR(θ ⊕ adapters_k); the outer mean runs over the full and the LoRA lanes."""
    from jaxsafe.lm.lora import LoRA, LoRAConfig, init_lora

    model = tiny_model(tokenizer, seed=2, layers=1)
    graphdef, theta, rest = _split(model)
    lora_cfg = LoRAConfig(rank=4, alpha=8.0, dropout=0.0)
    batch = _batch(tokenizer)  # one full-fine-tuning lane (lr 1e-2)
    rng = np.random.default_rng(3)
    c = AttackCorpora.from_texts(tokenizer, {"forget": FORGET, "retain": RETAIN}, max_length=16)
    rows = rng.choice(c.streams["forget"], (1, K, 2))
    batch = {**batch, "lora_ids": c.ids[rows], "lora_mask": c.mask[rows], "lora_lr": np.asarray([3e-2], np.float32),
             "lora_seed": np.asarray([7], np.uint32)}
    adversary = make_optimizer(OptimizerConfig(name="adamw", lr=1.0), K)
    outer = make_optimizer(OptimizerConfig(name="sgd", lr=1.0), 10)
    step = make_tar_step(graphdef, InnerLoop(steps=K, tr_every=EVERY, lora=lora_cfg), adversary, outer,
                         lambda_tr=1.0, lambda_retain=0.0)
    new_state, metrics = jax.jit(step)(init_state(theta, outer), batch, (rest, theta))
    got = jax.tree.map(lambda a, b: a - b, theta, new_state.params)

    f = lambda p: nnx.merge(graphdef, p, rest)
    w = inner_step_weights(K, EVERY)
    tr = lambda q, lora=None: entropy_loss(f(q)(batch["tr_ids"], batch["tr_mask"], lora=lora), batch["tr_mask"])
    # the hand-written loops' gradients are jitted only for speed: plain jax.grad of plain losses
    full_grad = jax.jit(jax.grad(lambda q, ids, mask: lm_loss(f(q)(ids, mask), ids, mask)))
    lora_grad = jax.jit(jax.grad(lambda a, ids, mask: lm_loss(f(theta)(ids, mask, lora=LoRA(a, lora_cfg.scale)),
                                                               ids, mask)))
    tr_grad = jax.jit(jax.grad(tr))
    tr_grad_lora = jax.jit(jax.grad(lambda q, a: tr(q, LoRA(a, lora_cfg.scale))))

    def full_lane():
        opt = optax.adamw(1e-2, weight_decay=0.0)
        p, s = theta, opt.init(theta)
        acc = jax.tree.map(jnp.zeros_like, theta)
        for k in range(K):
            ids, mask = batch["adv_ids"][0, k], batch["adv_mask"][0, k]
            u, s = opt.update(full_grad(p, ids, mask), s, p)
            p = optax.apply_updates(p, u)
            if w[k]:
                acc = jax.tree.map(lambda a, b: a + w[k] * b, acc, tr_grad(p))
        return acc

    def lora_lane():
        opt = optax.adamw(3e-2, weight_decay=0.0)
        ad = init_lora(theta, lora_cfg, jax.random.fold_in(jax.random.key(7), 0))
        s = opt.init(ad)
        acc = jax.tree.map(jnp.zeros_like, theta)
        for k in range(K):
            ids, mask = batch["lora_ids"][0, k], batch["lora_mask"][0, k]
            u, s = opt.update(lora_grad(ad, ids, mask), s, ad)
            ad = optax.apply_updates(ad, u)
            if w[k]:
                # the gradient with respect to θ of the adapted model equals the merged model's weight gradient
                acc = jax.tree.map(lambda a, b: a + w[k] * b, acc, tr_grad_lora(theta, ad))
        return acc

    full, lora = full_lane(), lora_lane()
    expected = jax.tree.map(lambda a, b: (a + b) / 2, full, lora)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-6, err_msg=jax.tree_util.keystr(path))
    # the LoRA lane is its own term (not the full lane's, not the gradient at θ itself)
    gap = lambda x, y: max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y)))
    assert gap(lora, full) > 1e-3 and gap(lora, jax.tree.map(lambda g: 2 * g, tr_grad(theta))) > 1e-3
    assert np.isfinite(float(metrics["loss"]))


def test_microbatches_give_the_one_batch_update(tokenizer):
    """microbatches=2 splits the retain rows, x_TR and every adversary's batch (full and LoRA
    lanes): with rows of equal token counts the outer update equals the one-batch update; with
    padded rows of unequal length it differs (each slice's token mean weighs 1/2), so the
    slices are really taken."""
    from jaxsafe.lm.lora import LoRAConfig
    from jaxsafe.train import split_microbatches

    # DPO's x_TR (n chosen rows, then their n rejected rows) keeps its pairs in every slice when k | n
    pairs = np.asarray(["c0", "c1", "c2", "c3", "r0", "r1", "r2", "r3"])
    slices = np.asarray(split_microbatches(np.arange(8), 2))
    assert [list(pairs[s]) for s in slices] == [["c0", "c2", "r0", "r2"], ["c1", "c3", "r1", "r3"]]

    model = tiny_model(tokenizer, seed=3, layers=1)
    graphdef, theta, rest = _split(model)
    c = AttackCorpora.from_texts(tokenizer, {"forget": FORGET, "retain": RETAIN}, max_length=16)
    f, r = c.streams["forget"], c.streams["retain"]
    rows = np.random.default_rng(1).choice(f, (2, 1, K, 2))  # [full|LoRA lane, A, K, b]
    full_rows = {"retain_ids": c.ids[r[:4]], "tr_ids": c.ids[f[-4:]], "adv_ids": c.ids[rows[0]],
                 "adv_lr": np.asarray([1e-2], np.float32), "lora_ids": c.ids[rows[1]],
                 "lora_lr": np.asarray([3e-2], np.float32), "lora_seed": np.asarray([7], np.uint32)}
    for k in ("retain", "tr", "adv", "lora"):  # every row counts all its tokens
        full_rows[f"{k}_mask"] = np.ones_like(full_rows[f"{k}_ids"])
    # the same rows with every other one cut to 6 tokens (padding after)
    padded = {k: v.copy() for k, v in full_rows.items()}
    for k in ("retain", "tr", "adv", "lora"):
        padded[f"{k}_mask"][..., ::2, 6:] = 0
    adversary = make_optimizer(OptimizerConfig(name="adamw", lr=1.0), K)
    outer = make_optimizer(OptimizerConfig(name="sgd", lr=1.0), 10)
    inner = InnerLoop(steps=K, tr_every=EVERY, lora=LoRAConfig(rank=4, alpha=8.0, dropout=0.0))
    ref = jax.tree.map(lambda x: x * 1.01, theta)  # so the retain term has a gradient
    steps = {k: jax.jit(make_tar_step(graphdef, inner, adversary, outer, microbatches=k)) for k in (1, 2)}
    gap = lambda x, y: max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y)))
    for name, batch in (("equal rows", full_rows), ("padded rows", padded)):
        (one, m1), (two, m2) = (steps[k](init_state(theta, outer), batch, (rest, ref)) for k in (1, 2))
        update = jax.tree.map(lambda a, b: a - b, theta, one.params)
        if name == "equal rows":
            for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(one.params), jax.tree.leaves(two.params)):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=jax.tree_util.keystr(path))
            for key in ("loss", "tr_objective", "retain_loss"):
                np.testing.assert_allclose(float(m1[key]), float(m2[key]), rtol=1e-5, err_msg=key)
        else:
            assert gap(one.params, two.params) > 1e-3 * gap(update, jax.tree.map(jnp.zeros_like, update))
