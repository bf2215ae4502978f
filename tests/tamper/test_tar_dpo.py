"""TAR's refusal variant: the DPO tamper-resistance gradient through an inner step (full
fine-tuning and LoRA adversaries) equals a hand-written computation; preference rows and the
refusal metric."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxsafe.optim.config import OptimizerConfig
from jaxsafe.optim.factory import make_optimizer
from jaxsafe.tamper.preferences import answered_questions, pair_rows
from jaxsafe.tamper.tar import InnerLoop, make_tar_step
from jaxsafe.train import init_state
from tests.tamper.conftest import preference_rows, tiny_model

BETA = 0.1
REFUSAL = " I cannot help with that."


def test_pair_rows_mark_the_completion(tokenizer):
    ids, mask, loss_mask = pair_rows(tokenizer, ["How does strain 1 spread?\nAnswer:"], [" by route 1"], 32,
                                     tokenizer.pad_token_id)
    n = int(mask.sum())
    completion = tokenizer.decode(ids[0, :n][loss_mask[0, :n] == 1])
    assert completion.strip() == "by route 1" and loss_mask[0, n:].sum() == 0


def _hand_logprob(logits, ids, loss_mask):
    """Σ over completion tokens of log softmax(logits_t)[x_{t+1}], written out in NumPy (float64)."""
    logits = np.asarray(logits, np.float64)
    out = np.zeros(len(ids))
    for b in range(len(ids)):
        for t in range(ids.shape[1] - 1):
            if loss_mask[b, t + 1]:
                row = logits[b, t]
                out[b] += row[ids[b, t + 1]] - (row.max() + np.log(np.exp(row - row.max()).sum()))
    return out


def test_dpo_gradient_through_one_inner_step_equals_hand_written(tokenizer):
    """A full fine-tuning lane and a LoRA lane, one inner step each; the outer step's gradient is
    λ_TR times their mean first-order DPO term."""
    from jaxsafe.lm.lora import LoRA, LoRAConfig, init_lora

    model = tiny_model(tokenizer, seed=4, layers=1)
    graphdef, theta, rest = nnx.split(model, nnx.Param, ...)
    f = lambda p, lora=None: lambda i, m: nnx.merge(graphdef, p, rest)(i, m, lora=lora)
    tr_ids, tr_mask, tr_loss = preference_rows(tokenizer, REFUSAL)
    # π_ref = the model before TAR (θ itself); its log-probabilities by hand
    ref = _hand_logprob(f(theta)(tr_ids, tr_mask), tr_ids, tr_loss).astype(np.float32)
    from tests.tamper.test_tar import _batch

    base = _batch(tokenizer)
    lora_cfg = LoRAConfig(rank=4, alpha=8.0, dropout=0.0)
    batch = {**base, "adv_ids": base["adv_ids"][:, :1], "adv_mask": base["adv_mask"][:, :1],  # one inner step
             "lora_ids": base["adv_ids"][:, 1:2], "lora_mask": base["adv_mask"][:, 1:2],  # other harmful rows
             "lora_lr": np.asarray([3e-2], np.float32), "lora_seed": np.asarray([7], np.uint32),
             "tr_ids": tr_ids, "tr_mask": tr_mask, "tr_loss_mask": tr_loss, "tr_ref_logp": ref}
    adversary = make_optimizer(OptimizerConfig(name="adamw", lr=1.0), 1)
    outer = make_optimizer(OptimizerConfig(name="sgd", lr=1.0), 10)  # θ_new = θ − g exposes g
    inner = InnerLoop(steps=1, tr_every=1, tr_loss="dpo", dpo_beta=BETA, lora=lora_cfg)
    step = make_tar_step(graphdef, inner, adversary, outer, lambda_tr=2.0, lambda_retain=0.0)
    new_state, metrics = jax.jit(step)(init_state(theta, outer), batch, (rest, theta))
    got = jax.tree.map(lambda a, b: a - b, theta, new_state.params)

    # by hand: one optax AdamW step on the harmful text (of θ, or of fresh adapters on the frozen θ),
    # then ∇_θ of DPO's loss at θ'_1 (w_0 = 1)
    def ce(logits_fn, ids, mask):
        logp = jax.nn.log_softmax(logits_fn(ids, mask)[:, :-1], axis=-1)
        nll = -jnp.take_along_axis(logp, ids[:, 1:, None], -1)[..., 0]
        m = mask[:, :-1] * mask[:, 1:]
        return jnp.sum(nll * m) / jnp.sum(m)

    @functools.partial(jax.jit, static_argnums=(0, 1))  # jitted only for speed
    def adamw_step(lr, loss, p):
        opt = optax.adamw(lr, weight_decay=0.0)
        u, _ = opt.update(jax.grad(loss)(p), opt.init(p), p)
        return optax.apply_updates(p, u)

    theta1 = adamw_step(float(batch["adv_lr"][0]), lambda q: ce(f(q), *(x[0, 0] for x in (batch["adv_ids"],
                                                                                         batch["adv_mask"]))), theta)
    ad0 = init_lora(theta, lora_cfg, jax.random.fold_in(jax.random.key(7), 0))
    ad1 = adamw_step(3e-2, lambda a: ce(f(theta, LoRA(a, lora_cfg.scale)), batch["lora_ids"][0, 0],
                                        batch["lora_mask"][0, 0]), ad0)
    n = len(tr_ids) // 2

    def dpo(q, lora=None):
        logits = f(q, lora)(tr_ids, tr_mask)
        lp = jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logits[:, :-1], -1), tr_ids[:, 1:, None], -1)[..., 0]
                     * tr_loss[:, 1:], axis=-1)
        margin = BETA * ((lp[:n] - ref[:n]) - (lp[n:] - ref[n:]))
        return jnp.mean(jnp.log1p(jnp.exp(-margin)))  # −log σ(m)

    v_full, g_full = jax.jit(jax.value_and_grad(dpo))(theta1)
    v_lora, g_lora = jax.jit(jax.value_and_grad(lambda q: dpo(q, LoRA(ad1, lora_cfg.scale))))(theta)
    # the values also from the NumPy log-probabilities at θ'_1 of each lane
    hand = []
    for fn in (f(theta1), f(theta, LoRA(ad1, lora_cfg.scale))):
        lp1 = _hand_logprob(fn(tr_ids, tr_mask), tr_ids, tr_loss)
        hand.append(np.mean(np.log1p(np.exp(-BETA * ((lp1[:n] - ref[:n]) - (lp1[n:] - ref[n:]))))))
    np.testing.assert_allclose(float(metrics["tr_dpo_last"]), np.mean(hand), rtol=1e-4)
    np.testing.assert_allclose(float(metrics["tr_dpo_last"]), (float(v_full) + float(v_lora)) / 2, rtol=1e-5)
    # λ_TR = 2 times the mean of the two lanes
    for (path, a), b, c in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(g_full),
                               jax.tree.leaves(g_lora)):
        np.testing.assert_allclose(a, b + c, rtol=2e-3, atol=2e-7, err_msg=jax.tree_util.keystr(path))
    # each inner step matters: the gradient at θ itself (where DPO's loss is log 2) differs from either lane's
    g0 = jax.jit(jax.grad(dpo))(theta)
    gap = lambda x, y: max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y)))
    assert gap(g_full, g0) > 1e-4 and gap(g_lora, g0) > 1e-4
    np.testing.assert_allclose(float(dpo(theta)), np.log(2.0), rtol=1e-5)


def test_answered_metric_is_the_fraction_where_the_answer_beats_the_refusal(tokenizer):
    from jaxsafe.evals.mcq import cloze_prompt
    from jaxsafe.tamper.scoring import accuracy, question_arrays
    from tests.tamper.conftest import questions

    qs = questions(8, seed=3)
    answered = answered_questions(qs, REFUSAL.strip())
    assert answered[0].choices == (qs[0].choices[qs[0].answer], REFUSAL.strip()) and answered[0].answer == 0
    model = tiny_model(tokenizer, seed=5)
    got = float(accuracy(lambda i, m: model(i, m), question_arrays(tokenizer, answered, 64, chunk=8)))
    # by hand: Σ log p of " answer" and of " refusal" after each cloze prompt
    prompts = [cloze_prompt(q) for q in qs]
    lp = {}
    for name, conts in (("answer", [f" {q.choices[q.answer]}" for q in qs]), ("refusal", [REFUSAL] * len(qs))):
        ids, mask, loss = pair_rows(tokenizer, prompts, conts, 64, tokenizer.pad_token_id)
        lp[name] = _hand_logprob(model(ids, mask), ids, loss)
    expected = np.mean(lp["answer"] > lp["refusal"])
    np.testing.assert_allclose(got, expected)
