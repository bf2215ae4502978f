import dataclasses
from typing import Literal

import pytest

from jaxsafe.config import config_to_dict, dump_config, load_config
from jaxsafe.errors import UserError


@dataclasses.dataclass(frozen=True)
class Optim:
    lr: float = 1e-3
    betas: tuple[float, ...] = (0.9, 0.999)


@dataclasses.dataclass(frozen=True)
class Train:
    steps: int = 10
    name: str = "run"
    mode: Literal["fast", "slow"] = "fast"
    layer: int | None = None
    optim: Optim = Optim()


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_defaults_file_and_overrides(tmp_path):
    p = write(tmp_path, "steps: 20\noptim:\n  lr: 0.5\n  betas: [0.8, 0.9]\n")
    cfg = load_config(Train, p, ["name=x", "optim.lr=2", "layer=3"])
    assert cfg == Train(steps=20, name="x", layer=3, optim=Optim(lr=2.0, betas=(0.8, 0.9)))
    assert isinstance(cfg.optim.lr, float)
    assert load_config(Train) == Train()
    # YAML 1.1 reads exponents without a dot as strings; float fields accept them
    assert load_config(Train, write(tmp_path, "optim:\n  lr: 5e-5\n"), []).optim.lr == 5e-5
    assert load_config(Train, None, ["optim.lr=3e-3"]).optim.lr == 3e-3
    assert config_to_dict(cfg)["optim"]["betas"] == [0.8, 0.9]
    # the saved form loads back to the same config
    assert load_config(Train, write(tmp_path, dump_config(cfg))) == cfg


@pytest.mark.parametrize(
    "text, overrides, match",
    [
        ("stpes: 3\n", [], r"unknown key 'stpes'"),
        ("optim:\n  lrr: 3\n", [], r"unknown key 'optim.lrr'"),
        ("steps: three\n", [], r"key 'steps' must be an integer"),
        ("steps: 2.5\n", [], r"key 'steps' must be an integer"),
        ("", ["optim.lr=fast"], r"key 'optim.lr' must be a number"),
        ("", ["mode=medium"], r"key 'mode' must be one of"),
        ("", ["steps"], r"not of the form key=value"),
        ("- a\n- b\n", [], r"top level must be a mapping"),
        ("steps: [1\n", [], r"not valid YAML"),
    ],
)
def test_errors_name_key_and_file(tmp_path, text, overrides, match):
    p = write(tmp_path, text)
    with pytest.raises(UserError, match=match) as e:
        load_config(Train, p, overrides)
    if not overrides or text:
        assert str(p) in str(e.value) or "override" in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(Train, tmp_path / "nope.yaml")


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Train().steps = 3  # type: ignore[misc]
