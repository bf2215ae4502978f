"""Bad inputs to ``jaxsafe tamper tar`` and ``jaxsafe attack``: one line, exit 2, nothing touched."""

import pytest
from climatrix import assert_bad

CASES = {
    "tar zero steps": (["tamper", "tar", "--out", "new_tar", "world=world", "steps=0"], ["steps"]),
    "tar negative lambda": (["tamper", "tar", "--out", "new_tar", "world=world", "lambda_tr=-1"], ["lambda_tr"]),
    "tar unknown key": (["tamper", "tar", "--out", "new_tar", "world=world", "stpes=3"], ["stpes"]),
    "tar missing config": (["tamper", "tar", "--out", "new_tar", "--config", "nope.yaml"], ["nope.yaml"]),
    "attack model missing": (["attack", "--model", "nope", "--suite", "s.yaml"], ["nope"]),
    "attack model outside a world": (["attack", "--model", "model_ok", "--suite", "s.yaml"], ["model_ok", "--world"]),
}


@pytest.mark.parametrize("args, names", CASES.values(), ids=CASES.keys())
def test_bad_tamper(ws, args, names):
    assert_bad(ws, args, *names)
