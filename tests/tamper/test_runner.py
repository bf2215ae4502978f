"""Attacks as pure compiled programs: scorer vs the evaluator, vmap lanes vs sequential runs, LoRA and ablation."""

import dataclasses

import jax
import numpy as np
import pytest

from jaxsafe.evals.loglik import ScoreOptions
from jaxsafe.evals.mcq import evaluate_questions
from jaxsafe.optim.config import OptimizerConfig, ScheduleConfig
from jaxsafe.tamper.attacks import AttackConfig, group_key
from jaxsafe.tamper.runner import AttackCorpora, Target, batch_table, run_attacks, run_group
from jaxsafe.tamper.scoring import accuracy, choice_scores, question_arrays
from tests.tamper.conftest import FORGET, RETAIN, questions, tiny_model


@pytest.fixture(scope="module")
def setup(tokenizer):
    model = tiny_model(tokenizer)
    corpora = AttackCorpora.from_texts(tokenizer, {"forget": FORGET[:20], "forget2": FORGET[20:], "retain": RETAIN},
                                       max_length=32)
    sets = {"hazard": question_arrays(tokenizer, questions(6), 64, chunk=8),
            "letter": question_arrays(tokenizer, questions(5, seed=1), 64, fmt="letter", chunk=4)}
    return model, corpora, sets


@pytest.mark.parametrize("fmt", ["cloze", "letter"])
def test_scorer_agrees_with_evaluator(tokenizer, setup, fmt):
    model, _, _ = setup
    qs = questions(6, seed=2)
    qa = question_arrays(tokenizer, qs, 64, fmt=fmt, chunk=8)
    scores = np.asarray(jax.jit(lambda qa: choice_scores(lambda i, m: model(i, m), qa))(qa))
    _, records = evaluate_questions(model, tokenizer, qs, ScoreOptions(max_length=64, batch_size=8,
                                    pad_id=tokenizer.pad_token_id, progress=False), formats=(fmt,))
    np.testing.assert_allclose(scores, [r[fmt]["loglik"] for r in records], rtol=1e-4, atol=1e-4)
    acc = float(accuracy(lambda i, m: model(i, m), qa))
    assert acc == pytest.approx(np.mean([r[fmt]["correct"] for r in records]))


def test_batch_table_streams(setup):
    _, corpora, _ = setup
    a = AttackConfig(data="retain_then_forget", steps=10, batch_size=3, switch_fraction=0.4)
    t = batch_table(a, corpora)
    assert t.shape == (10, 3)
    assert set(t[:4].ravel()) <= set(corpora.streams["retain"]) and set(t[4:].ravel()) <= set(corpora.streams["forget"])
    few = batch_table(AttackConfig(data="retain", max_texts=5, steps=6, batch_size=4), corpora)
    assert set(few.ravel()) <= set(corpora.streams["retain"][:5])


def _attack(**kw):
    base = dict(steps=6, batch_size=2, eval_every=3, optimizer=OptimizerConfig(name="adamw", lr=3e-3))
    return AttackConfig(**{**base, **kw})


@pytest.mark.parametrize("lora", [False, True])
def test_vmap_lanes_equal_sequential_runs(tokenizer, setup, lora):
    model, corpora, sets = setup
    target = Target.from_model(model)
    sched = ScheduleConfig(kind="warmup_cosine", warmup_steps=2)
    attacks = [
        _attack(name="a", lora=lora, optimizer=OptimizerConfig(name="adamw", lr=3e-3, schedule=sched)),
        _attack(name="b", lora=lora, data="forget2", seed=1,
                optimizer=OptimizerConfig(name="adamw", lr=1e-2, schedule=dataclasses.replace(sched, warmup_steps=4))),
        _attack(name="c", lora=lora, data="retain_then_forget", seed=2,
                optimizer=OptimizerConfig(name="adamw", lr=3e-2, schedule=sched)),
    ]
    assert len({group_key(a) for a in attacks}) == 1
    together = run_group(target, attacks, corpora, sets, vmap=True)
    alone = run_group(target, attacks, corpora, sets, vmap=False)
    for t, s in zip(together, alone):
        np.testing.assert_allclose(t["loss"], s["loss"], rtol=1e-5)
        for k in t["acc"]:
            np.testing.assert_allclose(t["acc"][k], s["acc"][k])
    # the lanes really differ (different lr and data)
    assert together[0]["loss"] != together[2]["loss"]
    assert together[0]["steps"] == [3, 6]


def test_run_attacks_with_ablation_and_other_optimizers(tokenizer, setup):
    model, corpora, sets = setup
    target = Target.from_model(model)
    attacks = [_attack(name="sgd", optimizer=OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, nesterov=True)),
               _attack(name="sf", optimizer=OptimizerConfig(name="schedule_free_adamw", lr=1e-3), eval_every=4),
               AttackConfig(name="abl", kind="ablation", ablation_layer=1, ablation_texts=8)]
    out = run_attacks(target, attacks, corpora, sets)
    names = [a["name"] for a in out["attacks"]]
    assert names == ["sgd", "sf", "abl"]
    assert out["attacks"][1]["steps"] == [0, 4, 6]  # eval_every 4 over 6 steps: a remainder segment
    assert all(0.0 <= x <= 1.0 for a in out["attacks"] for v in a["acc"].values() for x in v)
    assert out["attacks"][2]["steps"] == [0, 1]
