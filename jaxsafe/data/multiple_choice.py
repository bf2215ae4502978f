"""Multiple-choice sets in the WMDP/MMLU schema: ``question`` (str), ``choices`` (list of str), ``answer`` (int).

Rows come from :func:`jaxsafe.data.sources.load_rows` (a hub name such as
``cais/wmdp`` with config ``wmdp-bio``, or local JSON/JSONL/Parquet/CSV files).
Every row is checked, and the first bad one is a :class:`~jaxsafe.errors.UserError`
naming the source, the row and the problem. In CSV files, where a cell cannot
hold a list, ``choices`` is a JSON list in one cell.

Each question also gets a ``subject`` — the words after "about" in the lm-eval
description line — from, in order: the row's own ``subject`` field (MMLU's
``college_biology`` becomes "college biology", as lm-eval writes it), the
``subject`` argument, the WMDP config (``wmdp-bio`` → "biology"), or the file
stem / dataset name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from jaxsafe.data.sources import load_rows, local_files
from jaxsafe.errors import UserError

# lm-evaluation-harness's wmdp_* task descriptions
WMDP_SUBJECTS = {"wmdp-bio": "biology", "wmdp-cyber": "cybersecurity", "wmdp-chem": "chemistry"}
MAX_CHOICES = 26  # one capital letter each


@dataclass(frozen=True)
class Question:
    question: str
    choices: tuple[str, ...]
    answer: int
    subject: str


def load_questions(
    source: str | Path, config: str | None = None, split: str | None = None, subject: str | None = None
) -> list[Question]:
    """Load and check a multiple-choice set; see the module docstring for sources and subjects."""
    rows = load_rows(source, config, split)
    if not rows:
        raise UserError(f"{source}: no questions")
    default_subject = subject or WMDP_SUBJECTS.get(config or "") or _source_stem(source, config)
    return [_parse_row(row, i, source, default_subject) for i, row in enumerate(rows)]


def _source_stem(source: str | Path, config: str | None) -> str:
    files = local_files(source)
    if files is not None:
        return Path(source).stem if len(files) == 1 else Path(source).name
    return config or str(source).rsplit("/", 1)[-1]


def _parse_row(row: dict, i: int, source, default_subject: str) -> Question:
    where = f"{source}: row {i}"
    for field in ("question", "choices", "answer"):
        if row.get(field) is None:  # datasets fills a field missing from some rows with None
            present = [k for k, v in row.items() if v is not None]
            raise UserError(f"{where}: missing field {field!r} (fields: {', '.join(present) or 'none'})")
    question, choices, answer = row["question"], row["choices"], row["answer"]
    if not isinstance(question, str) or not question.strip():
        raise UserError(f"{where}: 'question' must be a non-empty string")
    if isinstance(choices, str):
        try:
            choices = json.loads(choices)
        except json.JSONDecodeError:
            raise UserError(f"{where}: 'choices' is a string but not a JSON list") from None
    if not isinstance(choices, (list, tuple)) or not all(isinstance(c, str) for c in choices):
        raise UserError(f"{where}: 'choices' must be a list of strings")
    if not 2 <= len(choices) <= MAX_CHOICES:
        raise UserError(f"{where}: needs 2 to {MAX_CHOICES} choices, has {len(choices)}")
    if isinstance(answer, str) and answer.strip().isdigit():
        answer = int(answer)
    if isinstance(answer, float) and answer.is_integer():  # Arrow widens an int column mixed with floats
        answer = int(answer)
    if isinstance(answer, bool) or not isinstance(answer, int):
        raise UserError(f"{where}: 'answer' must be an integer index, got {answer!r}")
    if not 0 <= answer < len(choices):
        raise UserError(f"{where}: answer {answer} is out of range for {len(choices)} choices")
    subject = row.get("subject") or default_subject
    if not isinstance(subject, str):
        raise UserError(f"{where}: 'subject' must be a string")
    return Question(question, tuple(choices), answer, subject.replace("_", " "))
