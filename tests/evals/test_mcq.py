import json
import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsafe.cli import main
from jaxsafe.data.multiple_choice import Question
from jaxsafe.evals.loglik import ScoreOptions, encode_pair
from jaxsafe.evals.mcq import acc_stderr, cloze_prompt, evaluate_questions, letter_prompt, pooled_stderr


class Unigram(nnx.Module):
    """log p(token | anything) = log_softmax(bias): every score is known in closed form."""

    def __init__(self, bias):
        self.bias = nnx.Param(jnp.asarray(bias, jnp.float32))

    def __call__(self, ids, attention_mask=None):
        return jnp.broadcast_to(self.bias[...], ids.shape + self.bias.shape)


def test_letter_prompt_is_the_wmdp_template():
    q = Question("  What is X? ", ("a", "b", "c", "d"), 0, "biology")
    assert letter_prompt(q) == (
        "The following are multiple choice questions (with answers) about biology.\n\n"
        "What is X?\nA. a\nB. b\nC. c\nD. d\nAnswer:"
    )
    assert cloze_prompt(q) == "The following are multiple choice questions (with answers) about biology.\n\nWhat is X?\nAnswer:"


def test_stderr_formulas_match_lm_eval():
    from lm_eval.api.metrics import mean_stderr, pooled_sample_stderr

    x = [1, 0, 1, 1, 0, 1, 1]
    assert acc_stderr(x) == pytest.approx(math.sqrt((5 / 7) * (2 / 7) / 6))
    assert acc_stderr(x) == pytest.approx(mean_stderr(x))
    assert acc_stderr([1]) is None
    assert pooled_stderr([0.1, 0.05], [10, 40]) == pytest.approx(pooled_sample_stderr([0.1, 0.05], [10, 40]))


def test_unigram_model_scores_in_closed_form(tokenizer, mcq_rows):
    questions = [Question(r["question"], tuple(r["choices"]), r["answer"], r["subject"]) for r in mcq_rows]
    bias = np.random.default_rng(0).normal(size=len(tokenizer)).astype(np.float32)
    letters = [tokenizer.encode(f" {c}", add_special_tokens=False) for c in "ABCD"]
    assert all(len(t) == 1 for t in letters)
    bias[letters[2][0]] = 10.0  # " C" is the most likely letter for every question
    lp = np.asarray(jnp.asarray(bias) - jnp.log(jnp.sum(jnp.exp(jnp.asarray(bias)))))
    summary, records = evaluate_questions(Unigram(bias), tokenizer, questions, ScoreOptions(max_length=128, batch_size=8, progress=False))
    answers = np.array([q.answer for q in questions])
    assert [r["letter"]["pred"] for r in records] == [2] * len(questions)
    np.testing.assert_allclose(records[0]["letter"]["loglik"], [lp[t[0]] for t in letters], atol=1e-5)
    assert summary["acc"] == pytest.approx(np.mean(answers == 2))
    assert summary["n"] == len(questions) and set(summary["subjects"]) == {"virology", "geography"}
    for subject, block in summary["subjects"].items():
        sub = answers[[q.subject == subject for q in questions]]
        assert block["n"] == len(sub) and block["letter"]["acc"] == pytest.approx(np.mean(sub == 2))
        assert block["letter"]["acc_stderr"] == pytest.approx(acc_stderr(sub == 2))
    # cloze: sum of the continuation tokens' log-probabilities; acc_norm divides by the choice's characters
    for q, r in zip(questions, records):
        want = [sum(lp[t] for t in encode_pair(tokenizer, cloze_prompt(q), " " + c)[1]) for c in q.choices]
        np.testing.assert_allclose(r["cloze"]["loglik"], want, atol=1e-4)
        assert r["cloze"]["pred"] == int(np.argmax(want))
        assert r["cloze"]["pred_norm"] == int(np.argmax([w / len(c) for w, c in zip(want, q.choices)]))


def test_cli_mcq_writes_results_and_predictions(tmp_path, model_dir, mcq_rows, capsys):
    data = tmp_path / "set.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in mcq_rows))
    out, preds = tmp_path / "results.json", tmp_path / "preds.jsonl"
    code = main(["eval", "mcq", "--model", str(model_dir), "--data", str(data), "--out", str(out),
                 "--predictions", str(preds), "--batch-size", "8"])
    assert code == 0
    res = json.loads(out.read_text())
    assert res["n"] == len(mcq_rows) and 0 <= res["acc"] <= 1 and res["acc_stderr"] > 0
    lines = [json.loads(x) for x in preds.read_text().splitlines()]
    assert len(lines) == len(mcq_rows) and len(lines[0]["letter"]["loglik"]) == 4
    assert np.mean([x["letter"]["correct"] for x in lines]) == pytest.approx(res["acc"])
    assert "all" in capsys.readouterr().out


def test_cli_mcq_bad_row_is_one_line_exit_2(tmp_path, model_dir, mcq_rows, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps(mcq_rows[0]) + "\n" + json.dumps({**mcq_rows[1], "answer": 7}) + "\n")
    assert main(["eval", "mcq", "--model", str(model_dir), "--data", str(data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "row 1: answer 7 is out of range for 4 choices" in err[0]


def test_cli_ppl_matches_per_token_loss(tmp_path, model_dir, tokenizer):
    from jaxsafe.evals.perplexity import perplexity
    from jaxsafe.lm.checkpoint import from_pretrained

    texts = [" Zorvax infects the ferret. Zorvax spreads through ticks.", " Brolin lies on the Amber River."]
    data = tmp_path / "corpus.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    assert main(["eval", "ppl", "--model", str(model_dir), "--data", str(data), "--out", str(tmp_path / "p.json")]) == 0
    res = json.loads((tmp_path / "p.json").read_text())
    model = from_pretrained(model_dir)
    # windows of 4 predicted tokens give the same count of predicted tokens (each once)
    small = perplexity(model, tokenizer, texts, ScoreOptions(max_length=4, batch_size=4, progress=False))
    assert res["tokens"] == small["tokens"] == sum(len(tokenizer.encode(t)) - 1 for t in texts)
    assert res["perplexity"] == pytest.approx(math.exp(res["mean_token_loss"]))
