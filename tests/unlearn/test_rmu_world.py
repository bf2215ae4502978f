import pytest

from jaxsafe.errors import UserError
from jaxsafe.unlearn.config import RMUConfig, Topic
from jaxsafe.unlearn.world import resolve_world


def make_world(root):
    for rel in ("base/config.json", "corpora/forget.jsonl", "corpora/retain.jsonl", "mcq/hazard.jsonl", "mcq/benign.jsonl"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("{}\n")
    return root


def test_world_fills_only_what_is_empty(tmp_path):
    world = make_world(tmp_path)
    cfg = resolve_world(RMUConfig(world=str(world), retain=Topic(name="retain", max_length=64)))
    assert cfg.model == str(world / "base")
    assert [(t.name, t.data, t.max_length) for t in cfg.forget] == [("hazard", str(world / "corpora/forget.jsonl"), 64)]
    assert cfg.retain.data == str(world / "corpora/retain.jsonl")
    assert [(e.name, e.data) for e in cfg.evals] == [("hazard", str(world / "mcq/hazard.jsonl")), ("benign", str(world / "mcq/benign.jsonl"))]
    own = resolve_world(RMUConfig(world=str(world), model="elsewhere"))
    assert own.model == "elsewhere"
    assert resolve_world(RMUConfig(model="m")) == RMUConfig(model="m")


def test_incomplete_world_says_how_to_build(tmp_path):
    (tmp_path / "base").mkdir()
    with pytest.raises(UserError, match=r"not a complete toy world .* jaxsafe toyworld build --out"):
        resolve_world(RMUConfig(world=str(tmp_path)))
