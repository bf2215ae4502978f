"""Bad inputs to ``jaxsafe safetywashing``, ``jaxsafe lm info``, ``jaxsafe demo``, ``jaxsafe plan`` and the top level."""

from pathlib import Path

import pytest
from climatrix import assert_bad

ZEPHYR = str(Path(__file__).resolve().parents[2] / "configs" / "rmu" / "zephyr-7b.yaml")

CASES = {
    "sw scores missing": (["safetywashing", "--scores", "nope.csv"], ["--scores", "nope.csv"]),
    "sw scores malformed": (["safetywashing", "--scores", "bad.csv", "--out", "sw"], ["bad.csv"]),
    "sw level above 1": (["safetywashing", "--scores", "bad.csv", "--level", "2"], ["--level"]),
    "sw negative bootstrap": (["safetywashing", "--scores", "bad.csv", "--bootstrap", "-1"], ["--bootstrap"]),
    "sw out is a file": (["safetywashing", "--scores", "bad.csv", "--out", "out.json"], ["--out", "out.json"]),
    "sw info missing": (["safetywashing", "--scores", "bad.csv", "--info", "nope.csv"], ["--info", "nope.csv"]),
    "sw add missing": (["safetywashing", "--scores", "bad.csv", "--add", "nope.csv"], ["--add", "nope.csv"]),
    "sw negative show": (["safetywashing", "--scores", "bad.csv", "--show", "-2"], ["--show"]),
    "lm info missing": (["lm", "info", "nope"], ["nope"]),
    "lm info folder without config": (["lm", "info", "outdir"], ["outdir", "config.json"]),
    "unknown command": (["partiton"], ["partiton"]),
    "unknown demo step": (["demo", "--only", "nope", "--out", "outdir"], ["nope"]),
    "demo out is a file": (["demo", "--only", "foundation", "--out", "out.json"], ["--out", "out.json"]),
    "demo out through a file": (["demo", "--only", "foundation", "--out", "out.json/demo"], ["out.json"]),
    "plan unknown remat policy": (["plan", "--config", ZEPHYR, "--remat", "sometimes"], ["remat", "sometimes", "full"]),
}


@pytest.mark.parametrize("args, names", CASES.values(), ids=CASES.keys())
def test_bad_misc(ws, args, names):
    assert_bad(ws, args, *names)
