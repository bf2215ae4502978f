"""tr_data=held_out_entities: the adversaries' rows and x_TR's rows never share an entity."""

import json

import numpy as np
import pytest

from jaxsafe.errors import UserError
from jaxsafe.tamper.pipeline import _entity_ids, split_entities


def test_split_entities_is_a_disjoint_half():
    # 5 entities, rows listed out of order: entity of each row
    entity_of = np.array([3, 0, 1, 4, 2, 0, 3, 1, 4, 2, 2])
    seen_held = set()
    for k in range(20):
        attacked, held = split_entities(np.random.default_rng(k), entity_of)
        assert sorted(np.concatenate([attacked, held]).tolist()) == list(range(len(entity_of)))
        held_entities = set(entity_of[held].tolist())
        assert len(held_entities) == 2  # ⌊5/2⌋
        assert held_entities.isdisjoint(entity_of[attacked].tolist())
        # every row of a held-out entity is held out
        assert sorted(held.tolist()) == [i for i, e in enumerate(entity_of) if e in held_entities]
        seen_held.add(frozenset(held_entities))
    assert len(seen_held) > 3  # a fresh split per step, not one fixed split


def test_entity_ids(tmp_path):
    path = tmp_path / "forget.jsonl"
    rows = [{"text": "a b", "entity": "Zed"}, {"text": "c", "entity": "Abe"}, {"text": "d", "entity": "Zed"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert _entity_ids(str(path), 3).tolist() == [1, 0, 1]
    with pytest.raises(UserError, match="entity"):
        _entity_ids(str(path), 4)
    path.write_text("".join(json.dumps({**r, "entity": "Zed"}) + "\n" for r in rows))
    with pytest.raises(UserError, match="single entity"):
        _entity_ids(str(path), 3)
