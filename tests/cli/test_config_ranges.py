"""Ranges declared on config fields (jaxsafe.config.field): checked on load and on overrides, named in errors."""

import dataclasses

import pytest

from jaxsafe.config import Range, check_ranges, config_from_dict, config_to_dict, field, load_config, range_of
from jaxsafe.errors import UserError


@dataclasses.dataclass(frozen=True)
class Inner:
    lr: float = field(1e-3, gt=0)
    warmup: int = field(0, ge=0)
    clip: float = field(1.0, ge=0)


@dataclasses.dataclass(frozen=True)
class Outer:
    steps: int = field(10, ge=1)
    p: float = field(0.5, ge=0, le=1)
    devices: int = field(1, ge=1, also=(-1,))
    mode: str = field("a", choices=("a", "b"))
    sizes: tuple[int, ...] = field((1, 2), ge=1)
    inner: Inner = field(Inner(lr=0.5, clip=2.0))
    layer: int | None = field(None, ge=0)


def test_range_description_and_membership():
    assert Range(ge=1).describe() == ">= 1" and Range(gt=0).describe() == "> 0"
    assert Range(ge=0, le=1).describe() == "in [0, 1]" and Range(gt=0, lt=1).describe() == "in (0, 1)"
    assert Range(ge=0, lt=2**32).describe() == "in [0, 2**32)"
    assert Range(ge=1, also=(-1,)).describe() == ">= 1 or -1"
    assert Range(choices=("a", "b")).describe() == "one of 'a', 'b'"
    assert -1 in Range(ge=1, also=(-1,)) and 0 not in Range(ge=1, also=(-1,))
    assert None in Range(ge=0) and float("nan") not in Range(ge=0)
    assert range_of(Outer, "p") == Range(ge=0, le=1) and range_of(Inner, "lr").gt == 0


@pytest.mark.parametrize("override, message", [
    ("steps=0", "override steps=0: key 'steps' is 0, must be >= 1"),
    ("steps=-5", "key 'steps' is -5, must be >= 1"),
    ("p=1.5", "key 'p' is 1.5, must be in [0, 1]"),
    ("devices=0", "key 'devices' is 0, must be >= 1 or -1"),
    ("mode=c", "key 'mode' is 'c', must be one of 'a', 'b'"),
    ("sizes=[1,0]", "key 'sizes[1]' is 0, must be >= 1"),
    ("inner.lr=0", "override inner.lr=0: key 'inner.lr' is 0.0, must be > 0"),
    ("layer=-1", "key 'layer' is -1, must be >= 0"),
    ("inner.lr=.nan", "key 'inner.lr' must be a finite number"),
])
def test_override_out_of_range(override, message):
    with pytest.raises(UserError) as e:
        load_config(Outer, None, [override])
    assert message in str(e.value)


def test_file_value_out_of_range_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  warmup: -2\n")
    with pytest.raises(UserError, match=r"c\.yaml: key 'inner\.warmup' is -2, must be >= 0"):
        load_config(Outer, path)


def test_sentinels_and_bounds_pass():
    cfg = load_config(Outer, None, ["devices=-1", "p=0", "p=1", "layer=3", "sizes=[4]"])
    assert cfg.devices == -1 and cfg.p == 1.0 and cfg.layer == 3 and cfg.sizes == (4,)


def test_partial_section_applies_over_the_field_default(tmp_path):
    # the section's default instance (lr 0.5, clip 2.0) is kept where the file/override says nothing
    assert load_config(Outer, None, ["inner.warmup=3"]).inner == Inner(lr=0.5, warmup=3, clip=2.0)
    path = tmp_path / "c.yaml"
    path.write_text("inner: {lr: 0.1}\n")
    assert load_config(Outer, path).inner == Inner(lr=0.1, warmup=0, clip=2.0)
    assert load_config(Outer).inner == Inner(lr=0.5, clip=2.0)


def test_check_ranges_on_a_config_built_in_python():
    assert check_ranges(Outer()) == Outer()
    with pytest.raises(UserError, match=r"key 'inner.lr' is -1"):
        check_ranges(Outer(inner=Inner(lr=-1)))


def test_every_shipped_config_loads():
    """The YAML configs in configs/ satisfy their declared ranges."""
    from pathlib import Path

    from jaxsafe.graphs.config import TrainConfig
    from jaxsafe.graphs.rl_config import RLTrainConfig
    from jaxsafe.toyworld.config import BuildConfig
    from jaxsafe.unlearn.config import RMUConfig

    root = Path(__file__).resolve().parents[2] / "configs"
    for cls, folder, pattern in ((BuildConfig, "toyworld", "*.yaml"), (RMUConfig, "rmu", "*.yaml"),
                                 (TrainConfig, "graphs", "train*.yaml"), (RLTrainConfig, "graphs", "rl_*.yaml")):
        paths = sorted((root / folder).glob(pattern))
        assert paths
        for path in paths:
            check_ranges(load_config(cls, path))
    assert {p.name for p in (root / "graphs").glob("*.yaml")} == {
        p.name for pattern in ("train*.yaml", "rl_*.yaml") for p in (root / "graphs").glob(pattern)}


def test_config_from_dict_round_trips_and_checks():
    cfg = load_config(Outer, None, ["steps=3", "inner.lr=0.25"])
    assert config_from_dict(Outer, config_to_dict(cfg)) == cfg
    assert config_from_dict(Outer, {"inner": {"warmup": 2}}).inner == Inner(lr=0.5, warmup=2, clip=2.0)
    with pytest.raises(UserError, match=r"suite\.yaml attack 3: key 'steps' is 0, must be >= 1"):
        config_from_dict(Outer, {"steps": 0}, source="suite.yaml attack 3")
