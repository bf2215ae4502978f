"""Bad inputs to ``jaxsafe eval mcq`` / ``eval ppl``: caught before the model is loaded."""

import pytest
from climatrix import assert_bad

OK = ["--model", "model_ok", "--data", "q.jsonl"]

CASES = {
    "out is a folder": (["mcq", *OK, "--out", "outdir"], ["--out", "outdir"]),
    "out through a file": (["mcq", *OK, "--out", "out.json/r.json"], ["out.json"]),
    "predictions is a folder": (["mcq", *OK, "--predictions", "outdir"], ["--predictions", "outdir"]),
    "out and predictions one file": (["mcq", *OK, "--out", "r.json", "--predictions", "r.json"], ["--out", "--predictions"]),
    "zero batch size": (["mcq", *OK, "--batch-size", "0"], ["--batch-size"]),
    "zero limit": (["mcq", *OK, "--limit", "0"], ["--limit"]),
    "zero max length": (["mcq", *OK, "--max-length", "0"], ["--max-length"]),
    "bad formats": (["mcq", *OK, "--formats", "essay"], ["--formats"]),
    "model is a file": (["mcq", "--model", "out.json", "--data", "q.jsonl"], ["--model", "out.json"]),
    "model without tokenizer": (["mcq", "--model", "model_notok", "--data", "q.jsonl"], ["model_notok", "tokenizer"]),
    "data missing": (["mcq", "--model", "model_ok", "--data", "nope.jsonl"], ["nope.jsonl"]),
    "data empty": (["mcq", "--model", "model_ok", "--data", "empty.jsonl"], ["empty.jsonl"]),
    "data malformed": (["mcq", "--model", "model_ok", "--data", "bad.jsonl"], ["bad.jsonl", "line 2"]),
    "csv row too long": (["mcq", "--model", "model_ok", "--data", "bad.csv"], ["bad.csv", "line 3"]),
    "question without answer": (["mcq", "--model", "model_ok", "--data", "noanswer.jsonl"], ["noanswer.jsonl", "answer"]),
    "ppl out is a folder": (["ppl", "--model", "model_ok", "--data", "texts.jsonl", "--out", "outdir"], ["--out", "outdir"]),
    "ppl data empty": (["ppl", "--model", "model_ok", "--data", "empty.jsonl"], ["empty.jsonl"]),
    "ppl no such field": (["ppl", "--model", "model_ok", "--data", "texts.jsonl", "--field", "body"], ["texts.jsonl", "body"]),
    "missing --model": (["mcq", "--data", "q.jsonl"], ["--model"]),
    "hub dataset unreachable": (["mcq", "--model", "model_ok", "--data", "cais/wmdp", "--config", "wmdp-bio"], ["cais/wmdp"]),
    "resume without out": (["mcq", *OK, "--resume"], ["--resume", "--out"]),
}


@pytest.mark.parametrize("args, names", CASES.values(), ids=CASES.keys())
def test_bad_eval(ws, args, names):
    assert_bad(ws, ["eval", *args], *names)
