"""``jaxsafe graphs train`` end to end on a tiny budget, and its data-parallel mode on 8 simulated devices."""

import json

import jax
import numpy as np
import pytest
import safetensors.numpy as stn

from jaxsafe.errors import UserError
from jaxsafe.graphs.generators import delaunay
from jaxsafe.graphs.gnn import WEIGHTS_FILE, GNNBisector
from jaxsafe.graphs.partition import bisect, evaluate
from jaxsafe.optim.config import OptimizerConfig
from jaxsafe.graphs.train import PhaseConfig, TrainConfig, train


def tiny(**overrides) -> TrainConfig:
    """One node bucket (n + 1 <= 256), so each phase compiles its step once."""
    phase = PhaseConfig(graphs=8, n_min=130, n_max=250, wide_fraction=0.0, epochs=3, accumulate=8,
                        optimizer=OptimizerConfig(name="adam", lr=3e-3, clip_norm=1.0))
    return TrainConfig(eval_graphs=0, checkpoint_every=1000, embedding=phase, partition=phase, **overrides)


def losses(path):
    return [json.loads(line)["loss"] for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def single_device_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train1")
    train(tiny(), out)
    return out


def test_tiny_training_lowers_both_losses_and_ships_loadable_weights(single_device_run):
    out = single_device_run
    for phase in ("embedding", "partition"):
        seen = losses(out / phase / "metrics.jsonl")
        assert len(seen) == 3 and np.all(np.isfinite(seen))
        assert seen[-1] < seen[0], (phase, seen)
    model = GNNBisector.load(out / WEIGHTS_FILE)
    adj, _ = delaunay(300, seed=3)
    parts = bisect(adj, "gnn", model=model)
    assert set(np.unique(parts)) == {0, 1} and evaluate(adj, parts)["normalized_cut"] < 0.5


def test_data_parallel_training_matches_one_device(single_device_run, tmp_path):
    assert jax.device_count() == 8
    train(tiny(data_parallel=8), tmp_path)
    one = stn.load_file(str(single_device_run / WEIGHTS_FILE))
    eight = stn.load_file(str(tmp_path / WEIGHTS_FILE))
    assert one.keys() == eight.keys()
    for key in one:
        np.testing.assert_allclose(eight[key], one[key], atol=2e-5, err_msg=key)
    np.testing.assert_allclose(losses(tmp_path / "embedding" / "metrics.jsonl"),
                               losses(single_device_run / "embedding" / "metrics.jsonl"), rtol=1e-5)


def test_data_parallel_must_divide_the_batch(tmp_path):
    with pytest.raises(UserError, match="not a multiple of data_parallel=3"):
        train(tiny(data_parallel=3), tmp_path)
    with pytest.raises(UserError, match="devices available"):
        train(tiny(data_parallel=16), tmp_path)
