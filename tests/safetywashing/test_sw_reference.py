"""Exact reproduction of the authors' numbers (shared/data/safetywashing/README.md) from their CSVs."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from jaxsafe.safetywashing.analysis import DEFAULT_CAPABILITIES, analyze
from jaxsafe.safetywashing.tables import load_info, load_scores

# README "Expected values": benchmark as listed there -> CSV column, (base, chat); None = not in that table.
EXPECTED = {
    "truthfulqa_mc1": (69.7, 81.2),  # TruthfulQA MC1
    "ethics_all": (70.3, 82.2),  # ETHICS (all)
    "MT_Bench": (64.2, 78.7),  # MT-Bench
    "LMSYS_Chatbot_Arena": (None, 62.1),  # LMSYS Arena
    "rmsce_mmlu": (-2.4, 41.4),  # RMSCE-MMLU
    "brier_mmlu": (91.8, 83.8),  # Brier-MMLU
    "adv_glue": (63.9, 65.5),  # AdvGLUE
    "bbq_amb": (30.8, -37.3),  # BBQ-ambiguous
    "sycophancy": (-65.6, -66.8),
    "wmdp": (-90.6, -88.6),
    "wmdp_bio": (-92.5, -87.5),
    "HarmBench-GCG-T-all": (-61.5, -28.4),
    "HarmBench-HumanJailbreaks-all": (-79.2, -31.4),
    "machiavelli-utility.Σ": (-48.3, -49.9),  # MACHIAVELLI utility Σ
}
EXPLAINED = {"base": 78.26, "chat": 70.76}
OFF_DIAGONAL = {"base": (75.8, 13.4), "chat": (67.5, 14.3)}
KINDS = ("base", "chat")


@pytest.fixture(scope="module")
def results(shared_dir):
    data = shared_dir / "data" / "safetywashing"
    names = load_info(data / "benchmarks_info.csv")
    out = {}
    for kind in KINDS:
        table = load_scores(data / f"benchmarks_{kind}_models.csv")
        out[kind] = (table, analyze(table, names=names))
    out["chat_compute_branch"] = analyze(load_scores(data / "compute_correlations_branch" / "benchmarks_chat_models.csv"))
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_explained_variance_matches_readme(results, kind):
    _, result = results[kind]
    assert 100 * result.explained_variance == pytest.approx(EXPLAINED[kind], abs=0.005)
    assert result.n_models == {"base": 27, "chat": 26}[kind]
    assert result.dropped == {}


@pytest.mark.parametrize("kind", KINDS)
def test_every_listed_capabilities_correlation_matches_readme(results, kind):
    _, result = results[kind]
    ours = result.correlations.set_index("benchmark").capabilities_correlation
    i = KINDS.index(kind)
    for column, expected in EXPECTED.items():
        if expected[i] is None:
            assert column not in ours.index
            continue
        # the README rounds to 0.1: ours must round to the same value
        assert abs(ours[column] - expected[i]) <= 0.05 + 1e-9, (kind, column, ours[column], expected[i])


@pytest.mark.parametrize("kind", KINDS)
def test_capability_intercorrelation_matches_readme(results, kind):
    table, _ = results[kind]
    corr = table.scores[list(DEFAULT_CAPABILITIES)].corr(method="spearman").to_numpy()
    off = 100 * corr[~np.eye(len(DEFAULT_CAPABILITIES), dtype=bool)]
    mean, std = OFF_DIAGONAL[kind]
    assert off.mean() == pytest.approx(mean, abs=0.05)
    assert off.std() == pytest.approx(std, abs=0.05)


@pytest.mark.parametrize("kind", KINDS)
def test_all_columns_match_an_independent_pandas_implementation(results, kind):
    """Every correlation (not just the listed ones) against a plain pandas/numpy rewrite of the method."""
    table, result = results[kind]
    z = (table.scores - table.scores.mean()) / table.scores.std(ddof=0)
    eigvals, eigvecs = np.linalg.eigh(z[list(DEFAULT_CAPABILITIES)].corr(method="spearman").to_numpy())
    pc1 = eigvecs[:, -1] * np.sign(eigvecs[np.argmax(np.abs(eigvecs[:, -1])), -1])
    score = pd.Series(z[list(DEFAULT_CAPABILITIES)].to_numpy() @ pc1, index=z.index)
    expected = z.apply(lambda col: 100 * col.corr(score, method="spearman"))
    ours = result.correlations.set_index("benchmark").capabilities_correlation
    assert len(ours) == table.scores.shape[1]
    np.testing.assert_allclose(ours[expected.index].to_numpy(), expected.to_numpy(), atol=1e-8)
    np.testing.assert_allclose(result.score.to_numpy(), score.to_numpy(), atol=1e-9)
    np.testing.assert_allclose(result.explained_variance, eigvals[-1] / eigvals.sum(), atol=1e-12)


def test_compute_correlations_pairwise_flop(results):
    """FLOP correlation drops models with unknown FLOP; the compute branch fills in two chat models."""
    table, result = results["chat"]
    known = table.flop.notna()
    assert known.sum() == 21
    rho = scipy.stats.spearmanr(result.score[known], table.flop[known]).statistic
    assert 100 * result.score_compute_correlation == pytest.approx(100 * rho, abs=1e-9)
    ours = result.correlations.set_index("benchmark").compute_correlation
    for column in ("wmdp", "truthfulqa_mc1", "LMSYS_Chatbot_Arena"):
        pair = table.scores[column].notna() & known
        rho = scipy.stats.spearmanr(table.scores[column][pair], table.flop[pair]).statistic
        assert ours[column] == pytest.approx(100 * rho, abs=1e-9)
    branch = results["chat_compute_branch"].correlations.set_index("benchmark")
    mine = result.correlations.set_index("benchmark")
    # README: capabilities correlations identical on both versions, only FLOP ones change
    np.testing.assert_allclose(branch.capabilities_correlation[mine.index], mine.capabilities_correlation, atol=1e-9)
    assert not np.allclose(branch.compute_correlation[mine.index], mine.compute_correlation)


def test_base_lmsys_absent_and_pairwise_count(results):
    _, chat = results["chat"]
    row = chat.correlations.set_index("benchmark").loc["LMSYS_Chatbot_Arena"]
    assert row.n_models == 20  # 6 chat models lack an Arena Elo
    _, base = results["base"]
    assert base.correlations.set_index("benchmark").loc["cyberseceval2_autocomplete"].n_models == 26
