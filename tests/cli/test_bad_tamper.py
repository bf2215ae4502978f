"""Bad inputs to ``jaxsafe tamper tar`` and ``jaxsafe attack``: one line, exit 2, nothing touched."""

import json

import pytest
from climatrix import assert_bad

# a TAR config that resolves without a toy world (the files exist in the workspace)
NO_WORLD = ["model=model_ok", "forget=texts.jsonl", "retain=texts.jsonl"]

CASES = {
    "tar zero steps": (["tamper", "tar", "--out", "new_tar", "world=world", "steps=0"], ["steps"]),
    "tar negative lambda": (["tamper", "tar", "--out", "new_tar", "world=world", "lambda_tr=-1"], ["lambda_tr"]),
    "tar unknown key": (["tamper", "tar", "--out", "new_tar", "world=world", "stpes=3"], ["stpes"]),
    "tar missing config": (["tamper", "tar", "--out", "new_tar", "--config", "nope.yaml"], ["nope.yaml"]),
    "attack model missing": (["attack", "--model", "nope", "--suite", "s.yaml"], ["nope"]),
    "attack model outside a world": (["attack", "--model", "model_ok", "--suite", "s.yaml"], ["model_ok", "--world"]),
    "tar out is a file": (["tamper", "tar", "--out", "out.json", "world=world"], ["--out", "out.json", "is a file"]),
    "tar finished run": (["tamper", "tar", "--out", "run", *NO_WORLD], ["run", "already holds a run", "--overwrite"]),
    # the stored "seed: 123" is read through TARConfig: its first differing key is then `model` ('' by default)
    "tar finished run, other config": (["tamper", "tar", "--out", "run", "--resume", *NO_WORLD],
                                       ["run", "different config", "model"]),
    "tar interrupted run, no flag": (["tamper", "tar", "--out", "tw2", *NO_WORLD], [".tw2.partial", "--resume"]),
    "tar out under a file": (["tamper", "tar", "--out", "out.json/tar", *NO_WORLD], ["out.json", "is a file"]),
    "tar missing forget": (["tamper", "tar", "--out", "new_tar", "model=model_ok", "forget=nope.jsonl",
                            "retain=texts.jsonl"], ["nope.jsonl"]),
    "tar bad tr_data": (["tamper", "tar", "--out", "new_tar", *NO_WORLD, "tr_data=everything"], ["tr_data"]),
    "tar lora second order, adam without eps_root": (["tamper", "tar", "--out", "new_tar", *NO_WORLD,
                                                      "adversary.lora_num=1", "second_order=true"],
                                                     ["second_order", "eps_root"]),
    "tar missing suite": (["tamper", "tar", "--out", "new_tar", *NO_WORLD, "suite=nope.yaml"], ["nope.yaml"]),
}


@pytest.mark.parametrize("args, names", CASES.values(), ids=CASES.keys())
def test_bad_tamper(ws, args, names):
    assert_bad(ws, args, *names)


@pytest.fixture(scope="module")
def tamper_world(tmp_path_factory):
    """The files a toy world must have for ``jaxsafe attack`` (contents are never read: every
    case fails before loading)."""
    w = tmp_path_factory.mktemp("tamper_world")
    for rel in ("base/config.json", "corpora/forget.jsonl", "corpora/retain.jsonl", "corpora/attack_A.jsonl",
                "mcq/hazard_E.jsonl", "mcq/hazard_A.jsonl", "mcq/benign.jsonl"):
        (w / rel).parent.mkdir(parents=True, exist_ok=True)
        (w / rel).write_text(json.dumps({"num_hidden_layers": 1}) + "\n")
    return w


ATTACK_CASES = {
    "attack out is a file": (["--suite", "s.yaml", "--out", "out.json"], ["--out", "out.json", "is a file"]),
    "search out is a file": (["--out", "out.json", "search"], ["--out", "out.json", "is a file"]),
    "search out under a file": (["--out", "out.json/search", "search"], ["out.json", "is a file"]),
    "search zero budget": (["--budget", "0", "search"], ["--budget", "at least 1"]),
    "search zero lanes": (["--lanes", "0", "search"], ["--lanes", "at least 1"]),
    "negative questions": (["--questions", "-1", "--suite", "s.yaml"], ["--questions", "at least 0"]),
    "negative seed": (["--seed", "-2", "search"], ["--seed", "at least 0"]),
    "negative epsilon": (["--epsilon", "-1", "--out", "new_search", "search"], ["--epsilon"]),
    "search bad steps": (["--steps", "50,x", "--out", "new_search", "search"], ["--steps"]),
    "search empty refusal": (["--refusal", " ", "--out", "new_search", "search"], ["--refusal", "non-empty"]),
    "suite empty refusal": (["--refusal", "", "--suite", "s.yaml"], ["--refusal", "non-empty"]),
}


@pytest.mark.parametrize("args, names", ATTACK_CASES.values(), ids=ATTACK_CASES.keys())
def test_bad_attack(ws, tamper_world, args, names):
    assert_bad(ws, ["attack", "--model", "model_ok", "--world", str(tamper_world), *args], *names)
