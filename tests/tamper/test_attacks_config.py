"""The attack description and the red-team suite YAML."""

import pytest

from jaxsafe.errors import UserError
from jaxsafe.tamper.attacks import group_key, load_suite, suite_from_dict
from tests.conftest import REPO

SUITE = REPO / "configs" / "attacks" / "redteam.yaml"


def test_redteam_suite_spans_the_grid():
    suite = load_suite(SUITE)
    attacks = suite.attacks
    assert len(attacks) >= 28
    finetune = [a for a in attacks if a.kind == "finetune"]
    assert {a.optimizer.name for a in finetune} >= {"sgd", "adam", "adamw", "adagrad", "adadelta", "schedule_free_adamw"}
    assert {a.optimizer.schedule.kind for a in finetune} == {"constant", "linear_warmup", "warmup_cosine", "sgdr"}
    assert {a.data for a in finetune} == {"forget", "forget2", "retain", "retain_then_forget"}
    assert any(a.lora for a in finetune) and any(not a.lora for a in finetune)
    assert all(a.lora_settings.rank == 16 and a.lora_settings.alpha == 32 and a.lora_settings.dropout == 0.05
               for a in finetune if a.lora)
    assert all(a.optimizer.nesterov and a.optimizer.momentum == 0.9 for a in finetune if a.optimizer.name == "sgd")
    qi = [a for a in finetune if a.optimizer.schedule.kind == "warmup_cosine" and a.optimizer.schedule.warmup_steps == 100]
    assert len(qi) >= 2  # Qi et al.'s warm-up + cosine attacks
    assert any(a.kind == "ablation" for a in attacks)
    assert any(a.data == "retain" and 0 < a.max_texts <= 10 for a in finetune)  # Łucki et al.'s benign texts
    assert suite.epsilon == 10.0
    # fewer compiled programs than attacks: those differing only in numbers share one
    assert len({group_key(a) for a in attacks}) < len(attacks)


def test_overrides_apply_to_every_attack():
    suite = load_suite(SUITE, ["steps=20", "batch_size=2"])
    assert {a.steps for a in suite.attacks} == {20}
    assert {a.batch_size for a in suite.attacks} == {2}


@pytest.mark.parametrize("entry,message", [
    ({"name": "x", "lr": 1.0}, "unknown key"),
    ({"name": "x", "optimizer": {"name": "rmsprop"}}, "optimizer.name"),
    ({"name": "x", "data": "retain_then_forget", "switch_fraction": 1.0}, "switch_fraction"),
    ({"name": "x", "steps": 0}, "steps"),
])
def test_bad_attacks_are_user_errors(entry, message):
    with pytest.raises(UserError, match=message):
        suite_from_dict({"attacks": [entry]})


def test_duplicate_names_refused():
    with pytest.raises(UserError, match="twice"):
        suite_from_dict({"attacks": [{"name": "a"}, {"name": "a"}]})
