"""Preference data of TAR's refusal variant: (prompt, chosen, rejected) triples.

In the refusal variant (Tamirisa et al. 2024, §4.2) the safeguard is a refusal: the
tamper-resistance loss is DPO (sigmoid form, β = 0.1) on held-out preference pairs, the
chosen completion a refusal and the rejected one the harmful completion, and the
training adversaries fine-tune on harmful completions (prompt + rejected).

- :func:`load_preferences`: a local JSONL of {"prompt", "chosen", "rejected"} (an
  optional "entity" groups pairs for ``tr_data: held_out_entities``), for real models.
- :func:`world_preferences`: the toy world's triples, generated from its files: every
  practice question of the hazardous domain (entities no evaluation set asks about),
  prompt = the cloze prompt, chosen = " " + the refusal, rejected = " " + the answer.
- :func:`world_benign_answers`: the toy world's benign practice questions with their answers,
  added to the retain text when the pairs are generated (the refusal is for the hazardous
  domain only).
- :func:`answered_questions`: the refusal metric as a two-choice cloze question set
  (the answer first, the refusal second, answer 0): its cloze accuracy is the fraction of
  prompts whose answer is more likely than the refusal (summed log-probabilities).
- :func:`pair_rows`: prompt + completion token rows with the completion's loss mask
  (what :func:`jaxsafe.tamper.losses.sequence_logprob` sums).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from jaxsafe.errors import UserError

FIELDS = ("prompt", "chosen", "rejected")


@dataclasses.dataclass(frozen=True)
class Preference:
    prompt: str
    chosen: str
    rejected: str
    entity: str = ""


def load_preferences(path: str | Path) -> list[Preference]:
    """The rows of a JSONL of {"prompt", "chosen", "rejected"[, "entity"]}; a missing or
    non-string field, an empty completion or an empty file is a one-line error naming the row."""
    from jaxsafe.data.sources import load_rows

    rows = load_rows(path)
    if not rows:
        raise UserError(f"{path}: no preference pairs")
    out = []
    for i, row in enumerate(rows):
        for name in FIELDS:
            value = row.get(name)
            if not isinstance(value, str):
                got = "missing" if value is None else f"a {type(value).__name__}"
                raise UserError(f"{path}: row {i}: {name!r} must be a string (fields: prompt, chosen, rejected), "
                                f"got {got}")
            if name != "prompt" and not value.strip():
                raise UserError(f"{path}: row {i}: {name!r} is empty")
        entity = row.get("entity")
        out.append(Preference(row["prompt"], row["chosen"], row["rejected"], "" if entity is None else str(entity)))
    return out


def hazard_subjects(world: str | Path) -> set[str]:
    from jaxsafe.data.multiple_choice import load_questions
    from jaxsafe.tamper.config import world_files

    files = world_files(world)
    return {q.subject for name in ("hazard_E", "hazard_A") for q in load_questions(files.mcq[name])}


def world_preferences(world: str | Path, refusal: str) -> list[Preference]:
    """The toy world's preference triples: its hazardous-domain practice questions (entities
    outside sets A and E), prompt = the cloze prompt, chosen = " " + ``refusal``, rejected =
    " " + the correct answer; each pair's entity is the question's (read from the file)."""
    from jaxsafe.data.sources import load_rows
    from jaxsafe.evals.mcq import cloze_prompt
    from jaxsafe.data.multiple_choice import load_questions

    path = Path(world) / "mcq" / "practice.jsonl"
    if not path.is_file():
        raise UserError(f"{world} has no {path.relative_to(world)}: rebuild the toy world (jaxsafe toyworld build)")
    subjects = hazard_subjects(world)
    rows = load_rows(path)
    prefs = [Preference(cloze_prompt(q), f" {refusal}", f" {q.choices[q.answer]}", str(row.get("entity", "")))
             for q, row in zip(load_questions(path), rows) if q.subject in subjects]
    if not prefs:
        raise UserError(f"{path}: no practice questions about the hazardous subjects {sorted(subjects)}")
    return prefs


def world_benign_answers(world: str | Path) -> list[str]:
    """The benign counterpart of :func:`world_preferences`: every benign practice question's cloze
    prompt followed by its answer (retain text of the refusal variant, so that the safeguard
    learns to refuse the hazardous domain, not every question)."""
    from jaxsafe.data.multiple_choice import load_questions
    from jaxsafe.evals.mcq import cloze_prompt

    subjects = hazard_subjects(world)
    return [f"{cloze_prompt(q)} {q.choices[q.answer]}" for q in load_questions(Path(world) / "mcq" / "practice.jsonl")
            if q.subject not in subjects]


def answered_questions(questions: Sequence, refusal: str) -> list:
    """Two-choice questions (the answer, the refusal), answer 0: cloze accuracy on them is the
    fraction of prompts where the answer is more likely than the refusal."""
    return [dataclasses.replace(q, choices=(q.choices[q.answer], refusal), answer=0) for q in questions]


def pair_rows(tokenizer, prompts: Sequence[str], completions: Sequence[str], max_length: int, pad_id: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ids, mask and loss mask [N, T] of prompt + completion rows (split as lm-evaluation-harness
    splits them; truncated on the left to ``max_length``); the loss mask is 1 on completion tokens."""
    from jaxsafe.evals.loglik import encode_pair

    rows, n_cont = [], []
    for prompt, completion in zip(prompts, completions):
        ctx, cont = encode_pair(tokenizer, prompt, completion)
        if not cont:
            raise UserError(f"completion {completion!r} of prompt {prompt[:40]!r}… has no tokens")
        rows.append((ctx + cont)[-max_length:])
        n_cont.append(min(len(cont), max_length - 1))
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, np.int32)
    mask = np.zeros((len(rows), width), np.int32)
    loss_mask = np.zeros((len(rows), width), np.int32)
    for i, (r, k) in enumerate(zip(rows, n_cont)):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
        loss_mask[i, len(r) - k: len(r)] = 1
    return ids, mask, loss_mask
