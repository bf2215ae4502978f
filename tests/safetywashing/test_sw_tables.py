"""Input checks, direction maps, areas, user capability lists and adding models/benchmarks."""

import numpy as np
import pandas as pd
import pytest

from jaxsafe.errors import UserError
from jaxsafe.safetywashing.analysis import analyze
from jaxsafe.safetywashing.synthetic import synthetic_table
from jaxsafe.safetywashing.tables import (
    add_scores,
    area_of,
    load_areas,
    load_directions,
    load_scores,
    resolve_directions,
)

CAPS = ("logiqa", "piqa", "mmlu")


def _table(seed=0, n=12):
    return synthetic_table(seed, n, CAPS, {"harm_a": 0.6, "harm_b": -0.3})


def _write(tmp_path, text, name="scores.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_scores_separates_metadata(tmp_path):
    path = _write(tmp_path, "model,mmlu,FLOP,name,type,x\nm1,0.5,1e22,Model One,base,3\nm2,0.6,,,base,4\n")
    table = load_scores(path)
    assert list(table.scores.columns) == ["mmlu", "x"]
    assert table.flop.iloc[0] == 1e22 and np.isnan(table.flop.iloc[1])
    assert list(table.names) == ["Model One", "m2"]


def test_non_numeric_cell_is_named(tmp_path):
    path = _write(tmp_path, "model,mmlu,piqa\nm1,0.5,0.7\nm2,0.6,n/a?\n")
    with pytest.raises(UserError, match=r"model 'm2', column 'piqa'.*'n/a\?'"):
        load_scores(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("model,mmlu,mmlu\nm1,1,2\n", "appears twice"),
        ("model,mmlu\nm1,1\nm1,2\n", "model 'm1' appears in more than one row"),
        ("model,mmlu\nm1,inf\n", "not finite"),
        ("model\nm1\n", "at least one benchmark column"),
    ],
)
def test_bad_tables_are_user_errors(tmp_path, text, message):
    with pytest.raises(UserError, match=message):
        load_scores(_write(tmp_path, text))


def test_missing_file_is_user_error(tmp_path):
    with pytest.raises(UserError, match="scores file not found"):
        load_scores(tmp_path / "nope.csv")


def test_fewer_than_three_models():
    table = _table(n=12)
    small = type(table)(table.scores.iloc[:2], table.flop.iloc[:2], table.names.iloc[:2])
    with pytest.raises(UserError, match="at least 3 models"):
        analyze(small, capabilities=CAPS)


def test_no_capability_columns():
    table = synthetic_table(0, 10, ("skill_a", "skill_b"), {"harm": 0.5})
    with pytest.raises(UserError, match="no usable capability columns"):
        analyze(table)
    with pytest.raises(UserError, match="not in the table: typo"):
        analyze(table, capabilities=["skill_a", "typo"])
    # naming them works, and a single-column table with the default list present partly is noted
    result = analyze(table, capabilities=["skill_a", "skill_b"])
    assert list(result.pc1.index) == ["skill_a", "skill_b"]


def test_default_capabilities_partly_present_are_noted():
    result = analyze(_table())
    assert list(result.pc1.index) == list(CAPS)
    assert any("absent from the table" in n and "hellaswag" in n for n in result.notes)


def test_constant_and_empty_columns_are_reported_and_left_out():
    table = _table()
    scores = table.scores.assign(flat=1.0, empty=np.nan, piqa_copy=table.scores["piqa"])
    scores.loc[scores.index[0], "flat"] = np.nan  # NaN next to one repeated value is still constant
    result = analyze(type(table)(scores, table.flop, table.names))
    assert result.dropped == {"flat": "constant (std = 0)", "empty": "empty (no values)"}
    assert "flat" not in set(result.correlations.benchmark)
    # a constant capability column is left out of PC1 with a note rather than failing
    scores = table.scores.assign(mmlu=0.5)
    result = analyze(type(table)(scores, table.flop, table.names))
    assert list(result.pc1.index) == ["logiqa", "piqa"]
    assert any("mmlu: constant" in n for n in result.notes)


def test_user_capability_list_changes_the_score():
    table = _table()
    one = analyze(table, capabilities=["mmlu"])
    assert one.explained_variance == pytest.approx(1.0)
    rows = one.correlations.set_index("benchmark")
    assert rows.loc["mmlu", "capabilities_correlation"] == pytest.approx(100.0)
    assert rows.loc["mmlu", "role"] == "capability" and rows.loc["piqa", "role"] == "safety"
    z = (table.scores.mmlu - table.scores.mmlu.mean()) / table.scores.mmlu.std(ddof=0)
    np.testing.assert_allclose(one.score.to_numpy(), z.to_numpy(), atol=1e-12)


def test_direction_map_negates_columns(tmp_path):
    table = _table()
    path = _write(tmp_path, "harm_*: -1\nharm_b: 1\n", "dirs.yaml")
    directions = load_directions(path)
    assert resolve_directions(directions, list(table.scores.columns)) == {"harm_a": -1}
    plain = analyze(table).correlations.set_index("benchmark")
    flipped = analyze(table, directions=directions).correlations.set_index("benchmark")
    assert flipped.loc["harm_a", "capabilities_correlation"] == pytest.approx(-plain.loc["harm_a", "capabilities_correlation"])
    assert flipped.loc["harm_a", "direction"] == -1 and flipped.loc["harm_b", "direction"] == 1
    assert flipped.loc["harm_b", "capabilities_correlation"] == pytest.approx(plain.loc["harm_b", "capabilities_correlation"])
    with pytest.raises(UserError, match="'nothing_\\*' matches no benchmark"):
        analyze(table, directions={"nothing_*": -1})
    with pytest.raises(UserError, match="must be 1 or -1"):
        load_directions(_write(tmp_path, "harm_a: down\n", "bad.yaml"))


def test_packaged_areas_follow_the_spec():
    areas = load_areas()
    expected = {
        "MT_Bench": "alignment", "LMSYS_Chatbot_Arena": "alignment", "Alpaca-Eval_win-rate": "alignment", "ifeval": "alignment",
        "ethics_cm": "machine ethics", "machiavelli-utility.Σ": "machine ethics", "moralchoice": "machine ethics",
        "scruples": "machine ethics", "truthfulqa_mc1": "truthfulness", "halueval_qa": "truthfulness",
        "bbq_amb": "bias", "crows_pairs_english": "bias", "discrim_eval_older": "bias", "winogender": "bias",
        "toxigen": "bias", "simple_cooccurrence_bias": "bias", "brier_temp_tuned_mmlu": "calibration",
        "rmsce_piqa": "calibration", "adv_glue": "adversarial robustness", "decodingtrust_adv_glue++": "adversarial robustness",
        "anli": "adversarial robustness", "HarmBench-GCG-T-all": "adversarial robustness", "wmdp_bio": "malicious use",
        "cyberseceval2_frr": "malicious use", "rules_all": "malicious use", "advanced_ai_risk": "other",
        "sycophancy": "other", "glue_mnli": "other",
    }
    assert {c: area_of(c, areas) for c in expected} == expected


def test_user_area_file_overrides(tmp_path):
    areas = load_areas(_write(tmp_path, "harms:\n  - harm_*\n", "areas.yaml"))
    result = analyze(_table(), areas=areas).correlations.set_index("benchmark")
    assert result.loc["harm_a", "area"] == "harms" and result.loc["logiqa", "area"] == "capabilities"
    with pytest.raises(UserError, match="must map to a list"):
        load_areas(_write(tmp_path, "harms: harm_a\n", "bad.yaml"))


def test_add_new_model_and_new_benchmark():
    base = _table(seed=0, n=12)
    more = _table(seed=1, n=14)
    new_model = more.scores.iloc[[13]].rename(index={more.scores.index[13]: "my-model"})
    new_bench = base.scores[["logiqa"]].rename(columns={"logiqa": "my_benchmark"}) * 2.0 + 1.0
    extra = pd.concat([new_model, new_bench])
    merged = add_scores(base, type(base)(extra, None, pd.Series(extra.index, index=extra.index)))
    assert list(merged.scores.index) == [*base.scores.index, "my-model"]
    assert list(merged.scores.columns) == [*base.scores.columns, "my_benchmark"]
    assert np.isnan(merged.scores.loc["my-model", "my_benchmark"])
    assert np.isnan(merged.flop["my-model"])
    result = analyze(merged).correlations.set_index("benchmark")
    # an affine copy of a capability column has the same capabilities correlation, over one model fewer
    assert result.loc["my_benchmark", "n_models"] == 12 and result.loc["logiqa", "n_models"] == 13


def test_add_scores_refuses_conflicting_cells():
    base = _table()
    changed = base.scores.iloc[[0]].copy()
    changed.iloc[0, 0] += 1.0
    with pytest.raises(UserError, match=rf"model '{base.scores.index[0]}', column 'logiqa'"):
        add_scores(base, type(base)(changed, None, base.names.iloc[[0]]))
    same = add_scores(base, type(base)(base.scores.iloc[[0]], None, base.names.iloc[[0]]))
    pd.testing.assert_frame_equal(same.scores, base.scores)
