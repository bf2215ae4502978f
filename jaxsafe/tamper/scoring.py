"""Multiple-choice accuracy as a pure, jittable function of the parameters.

The attack loop evaluates inside one compiled program (a ``lax.scan`` over attack
steps, ``vmap`` over attacks), so the evaluator cannot be the host-side batching of
:mod:`jaxsafe.evals.loglik`. Here a question set is tokenized once, with the same
request encoding as lm-evaluation-harness (:func:`jaxsafe.evals.loglik.encode_pair`
on :mod:`jaxsafe.evals.mcq`'s prompts), into fixed padded arrays; accuracy is then
``jnp`` code over those arrays, and agrees with :func:`jaxsafe.evals.mcq.evaluate_questions`
(tests/tamper/test_scoring.py checks it).

- cloze: one row per (question, choice): context + " {choice}", summed log-likelihood
  of the choice's tokens; the prediction is the argmax (the first on ties).
- letter: one row per question (the WMDP prompt ending in "Answer:"); the prediction
  is the argmax of the next-token log-probabilities of " A" … " D".
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxsafe.errors import UserError


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class QuestionArrays:
    """A tokenized question set. cloze: ``ids``/``targets``/``weights`` [N·C, T]; letter:
    ``ids`` [N, T], ``last`` [N] (index of the last prompt token), ``candidates`` [N, C]."""

    ids: jax.Array
    mask: jax.Array
    targets: jax.Array
    weights: jax.Array
    last: jax.Array
    candidates: jax.Array
    answers: jax.Array  # [N]
    fmt: str = dataclasses.field(metadata=dict(static=True), default="cloze")
    chunk: int = dataclasses.field(metadata=dict(static=True), default=64)

    @property
    def num_questions(self) -> int:
        return int(self.answers.shape[0])


def _pad(rows: Sequence[Sequence[int]], length: int, pad_id: int, multiple: int) -> tuple[np.ndarray, np.ndarray]:
    n = -(-len(rows) // multiple) * multiple
    ids = np.full((n, length), pad_id, np.int32)
    mask = np.zeros((n, length), np.int32)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return ids, mask


def question_arrays(tokenizer, questions, max_length: int, fmt: str = "cloze", chunk: int = 64,
                    pad_id: int | None = None) -> QuestionArrays:
    """Tokenize ``questions`` (:class:`~jaxsafe.data.multiple_choice.Question`) for :func:`accuracy`.

    Rows are right-padded to the longest one (≤ ``max_length``) and their count to a
    multiple of ``chunk`` (rows scored per forward pass).
    """
    from jaxsafe.evals.loglik import encode_pair
    from jaxsafe.evals.mcq import cloze_continuations, cloze_prompt, letter_continuations, letter_prompt

    if fmt not in ("cloze", "letter"):
        raise UserError(f"question format must be 'cloze' or 'letter', got {fmt!r}")
    if not questions:
        raise UserError("no questions to score")
    pad_id = tokenizer.pad_token_id if pad_id is None else pad_id
    pad_id = 0 if pad_id is None else pad_id
    n_choices = len(questions[0].choices)
    if any(len(q.choices) != n_choices for q in questions):
        raise UserError("every question of a set must have the same number of choices")
    answers = np.array([q.answer for q in questions], np.int32)
    if fmt == "cloze":
        inputs, targets, n_scored = [], [], []
        for q in questions:
            ctx_text = cloze_prompt(q)
            for cont_text in cloze_continuations(q):
                ctx, cont = encode_pair(tokenizer, ctx_text, cont_text)
                whole = (ctx + cont)[-(max_length + 1):]
                inputs.append(whole[:-1])
                targets.append(whole[1:])
                n_scored.append(len(cont))
        length = max(len(r) for r in inputs)
        ids, mask = _pad(inputs, length, pad_id, chunk)
        tgt, _ = _pad(targets, length, pad_id, chunk)
        weights = np.zeros(ids.shape, np.float32)
        for i, (r, k) in enumerate(zip(inputs, n_scored)):
            weights[i, len(r) - k: len(r)] = 1.0
        empty = np.zeros((0,), np.int32)
        return QuestionArrays(ids, mask, tgt, weights, empty, np.zeros((0, n_choices), np.int32), answers, fmt, chunk)
    inputs, cands = [], []
    for q in questions:
        row, letters = None, []
        for cont_text in letter_continuations(q):
            ctx, cont = encode_pair(tokenizer, letter_prompt(q), cont_text)
            if len(cont) != 1:
                raise UserError(f"letter continuation {cont_text!r} is {len(cont)} tokens; letter scoring needs one")
            row = (ctx + cont)[-(max_length + 1):][:-1]
            letters.append(cont[0])
        inputs.append(row)
        cands.append(letters)
    length = max(len(r) for r in inputs)
    ids, mask = _pad(inputs, length, pad_id, chunk)
    last = np.zeros(ids.shape[0], np.int32)
    last[: len(inputs)] = [len(r) - 1 for r in inputs]
    candidates = np.zeros((ids.shape[0], n_choices), np.int32)
    candidates[: len(cands)] = cands
    empty = np.zeros((0, 0), np.float32)
    return QuestionArrays(ids, mask, empty.astype(np.int32), empty, last, candidates, answers, fmt, chunk)


def choice_scores(logits_fn: Callable[[jax.Array, jax.Array], jax.Array], qa: QuestionArrays) -> jax.Array:
    """Log-likelihood of every choice: [N, C]. ``logits_fn(ids, mask) -> [B, T, V]``."""
    n, c = qa.answers.shape[0], qa.candidates.shape[1]
    split = lambda x: x.reshape(x.shape[0] // qa.chunk, qa.chunk, *x.shape[1:])
    if qa.fmt == "cloze":
        def one(args):
            ids, mask, tgt, w = args
            lp = jax.nn.log_softmax(logits_fn(ids, mask).astype(jnp.float32), axis=-1)
            return jnp.sum(jnp.take_along_axis(lp, tgt[..., None], -1)[..., 0] * w, axis=-1)

        sums = jax.lax.map(one, (split(qa.ids), split(qa.mask), split(qa.targets), split(qa.weights)))
        return sums.reshape(-1)[: n * c].reshape(n, c)

    def one_letter(args):
        ids, mask, last, cand = args
        lp = jax.nn.log_softmax(logits_fn(ids, mask).astype(jnp.float32), axis=-1)
        at_last = jnp.take_along_axis(lp, last[:, None, None], axis=1)[:, 0]
        return jnp.take_along_axis(at_last, cand, axis=-1)

    scores = jax.lax.map(one_letter, (split(qa.ids), split(qa.mask), split(qa.last), split(qa.candidates)))
    return scores.reshape(-1, c)[:n]


def accuracy(logits_fn: Callable[[jax.Array, jax.Array], jax.Array], qa: QuestionArrays) -> jax.Array:
    """Fraction of questions whose highest-scoring choice is the answer (float32 scalar)."""
    scores = choice_scores(logits_fn, qa)
    return jnp.mean((jnp.argmax(scores, axis=-1) == qa.answers).astype(jnp.float32))
