import json

import pandas as pd
import pytest

from jaxsafe.data.multiple_choice import load_questions
from jaxsafe.data.text import load_texts
from jaxsafe.errors import UserError

ROWS = [
    {"question": "What is 2+2?", "choices": ["3", "4", "5", "6"], "answer": 1},
    {"question": "Capital of France?", "choices": ["Rome", "Paris", "Oslo", "Bern"], "answer": 1, "subject": "world_geography"},
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_local_jsonl_csv_parquet_agree(tmp_path):
    a = load_questions(_jsonl(tmp_path / "wmdp-mini.jsonl", ROWS))
    assert [q.answer for q in a] == [1, 1] and a[0].choices == ("3", "4", "5", "6")
    # a row without a subject gets the file stem; MMLU-style underscores become spaces (lm-eval's description)
    assert [q.subject for q in a] == ["wmdp-mini", "world geography"]
    df = pd.DataFrame([{**r, "choices": json.dumps(r["choices"])} for r in ROWS])
    df.to_csv(tmp_path / "mini.csv", index=False)
    c = load_questions(tmp_path / "mini.csv", subject="arithmetic")
    assert [(q.question, q.choices, q.answer) for q in c] == [(q.question, q.choices, q.answer) for q in a]
    assert c[0].subject == "arithmetic"
    pd.DataFrame(ROWS).to_parquet(tmp_path / "mini.parquet")
    p = load_questions(tmp_path / "mini.parquet")
    assert [(q.question, q.choices, q.answer) for q in p] == [(q.question, q.choices, q.answer) for q in a]


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"question": "q", "choices": ["a", "b"]}, "row 1: missing field 'answer'"),
        ({"question": "q", "choices": ["a", "b", "c", "d"], "answer": 4}, "row 1: answer 4 is out of range for 4 choices"),
        ({"question": "q", "choices": ["a", "b", "c", "d"], "answer": -1}, "row 1: answer -1 is out of range"),
        ({"question": "q", "choices": "a, b", "answer": 0}, "row 1: 'choices' is a string but not a JSON list"),
        ({"question": "q", "choices": ["a"], "answer": 0}, "row 1: needs 2 to 26 choices, has 1"),
        ({"question": "", "choices": ["a", "b"], "answer": 0}, "row 1: 'question' must be a non-empty string"),
        ({"question": "q", "choices": ["a", "b"], "answer": 0.5}, "row 1: 'answer' must be an integer index"),
    ],
)
def test_bad_rows_are_named(tmp_path, bad, message):
    path = _jsonl(tmp_path / "bad.jsonl", [ROWS[0], bad])
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        load_questions(path)
    assert str(path) in str(e.value)


def test_missing_sources_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="data file not found"):
        load_questions(tmp_path / "nope.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no .json"):
        load_questions(tmp_path / "empty")
    with pytest.raises(UserError, match="could not load dataset no-such-org/no-such-set"):
        load_questions("no-such-org/no-such-set", "cfg")  # hub unreachable in tests (HF_DATASETS_OFFLINE)
    (tmp_path / "broken.jsonl").write_text('{"question": "q", "choices": [\n')
    with pytest.raises(UserError, match="could not load dataset"):
        load_questions(tmp_path / "broken.jsonl")


def test_load_texts(tmp_path):
    path = _jsonl(tmp_path / "c.jsonl", [{"text": "alpha"}, {"text": "  "}, {"text": "beta"}])
    assert load_texts(path) == ["alpha", "beta"]
    assert load_texts(path, skip_empty=False) == ["alpha", "  ", "beta"]
    _jsonl(tmp_path / "d.jsonl", [{"text": "alpha"}, {"body": "x"}])
    with pytest.raises(UserError, match="row 1 has no 'text' field"):
        load_texts(tmp_path / "d.jsonl")
