"""Bad inputs to ``jaxsafe unlearn rmu``: caught before any model is loaded."""

import pytest
from climatrix import assert_bad

W = ["world=world"]

CASES = {
    "negative steps": (W + ["steps=-5"], ["steps", "-5", ">= 1"]),
    "negative lr": (W + ["optimizer.lr=-1"], ["optimizer.lr", "-1", "> 0"]),
    "zero batch": (W + ["batch_size=0"], ["batch_size"]),
    "negative alpha": (W + ["alpha=-1"], ["alpha"]),
    "negative seed": (W + ["seed=-1"], ["seed"]),
    "bad dtype": (W + ["dtype=float64"], ["dtype", "float64"]),
    "bad eval format": (W + ["eval_format=essay"], ["eval_format"]),
    "unknown optimizer": (W + ["optimizer.name=lion"], ["optimizer.name", "lion"]),
    "schedule fraction": (W + ["optimizer.schedule.final_fraction=2"], ["final_fraction"]),
    "layer outside model": (W + ["layer=5"], ["layer 5", "1 layers"]),
    "update outside model": (W + ["layer=0", "update=layers.0-3.mlp.down_proj"], ["update", "layer 3"]),
    "typo in key": (W + ["alpah=3"], ["unknown key 'alpah'"]),
    "microbatches not dividing the batch": (W + ["batch_size=4", "microbatches=3"], ["microbatches", "batch_size"]),
    "negative max_rows": (W + ["max_rows=-1"], ["max_rows"]),
    "typo in nested key": (W + ["retain.max_lenght=3"], ["retain.max_lenght"]),
    "no model": ([], ["no model"]),
    "missing world": (["world=nowhere"], ["nowhere"]),
    "out is a file": (W + ["layer=0"], ["out.json"]),
    "finished run": (W + ["layer=0"], ["run", "already holds a run"]),
    "missing config": (["--config", "nope.yaml"], ["nope.yaml"]),
}
OUT = {"out is a file": "out.json", "finished run": "run"}


@pytest.mark.parametrize("name", CASES)
def test_bad_unlearn_rmu(ws, name):
    args, names = CASES[name]
    assert_bad(ws, ["unlearn", "rmu", "--out", OUT.get(name, "new_run"), *args], *names)
