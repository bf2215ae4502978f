"""Bad inputs to ``jaxsafe toyworld build``: one line, exit 2, nothing at --out touched."""

import pytest
from climatrix import TINY_WORLD, assert_bad

T = str(TINY_WORLD)

CASES = {
    "negative seed": (["--out", "new", "--config", T, "--seed", "-1"], ["seed", "-1", "[0, 2**32)"]),
    "zero steps": (["--out", "new", "--config", T, "train.steps=0"], ["train.steps", "0"]),
    "negative lr": (["--out", "new", "--config", T, "train.optimizer.lr=-1"], ["train.optimizer.lr", "-1"]),
    "fraction above 1": (["--out", "new", "--config", T, "world.attack_fraction=1.5"], ["world.attack_fraction", "1.5"]),
    "unknown key": (["--out", "new", "--config", T, "trian.steps=3"], ["unknown key 'trian'"]),
    "unknown domain": (["--out", "new", "--config", T, "world.domains=[moons]"], ["world.domains[0]", "moons"]),
    "heads not multiple of kv heads": (["--out", "new", "--config", T, "model.num_heads=3"], ["num_heads"]),
    "warmup not below steps": (["--out", "new", "--config", T, "train.optimizer.schedule.warmup_steps=50"], ["warmup_steps"]),
    "wrong type": (["--out", "new", "--config", T, "train.batch_size=big"], ["train.batch_size", "integer"]),
    "missing config": (["--out", "new", "--config", "nope.yaml"], ["nope.yaml"]),
    "invalid yaml": (["--out", "new", "--config", "bad.yaml"], ["bad.yaml"]),
    "config is a list": (["--out", "new", "--config", "list.yaml"], ["list.yaml"]),
    "out holds other files": (["--out", "outdir", "--config", T, "--overwrite"], ["outdir", "other files"]),
    "out is the working folder": (["--out", ".", "--config", T, "--overwrite"], ["other files"]),
    "out is a file": (["--out", "out.json", "--config", T], ["--out", "out.json"]),
    "out through a file": (["--out", "out.json/world", "--config", T], ["out.json"]),
    "finished world, no flag": (["--out", "tw", "--config", T, "--seed", "5"], ["tw", "--resume", "--overwrite"]),
    "finished world, other config": (["--out", "tw", "--config", T, "--seed", "5", "--resume"], ["tw", "seed", "5"]),
    "interrupted world, no flag": (["--out", "tw2", "--config", T], [".tw2.partial", "--resume"]),
    "interrupted world, other config": (["--out", "tw2", "--config", T, "--resume", "train.steps=7"], ["train.steps"]),
    "seed not an integer": (["--out", "new", "--seed", "x"], ["--seed"]),
    "missing --out": (["--config", T], ["--out"]),
    "vocabulary too small": (["--out", "new", "--config", T, "vocab_size=10"], ["vocab_size", ">= 64"]),
    "zero eval batch": (["--out", "new", "--config", T, "eval_batch_size=0"], ["eval_batch_size"]),
    "override without =": (["--out", "new", "--config", T, "train.steps"], ["train.steps", "key=value"]),
}


@pytest.mark.parametrize("args, names", CASES.values(), ids=CASES.keys())
def test_bad_toyworld_build(ws, args, names):
    assert_bad(ws, ["toyworld", "build", *args], *names)
