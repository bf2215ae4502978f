"""Test setup: 8 simulated CPU devices (set before JAX starts), offline hubs, and the
``shared_dir`` fixture for the reference data in ``../shared``."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ../shared folder (specs, reference numbers, data) next to the checkout.

    Outside CI the tests that compare with its reference numbers skip without it (a
    clone elsewhere has no ../shared). In CI (``CI`` set, as ``.ci/run`` runs) it is
    always there, so its absence fails those tests instead of skipping them.
    """
    if not SHARED.is_dir():
        message = f"../shared (the reference data) not found next to the repository ({SHARED})"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must have it")
        pytest.skip(message)
    return SHARED


def pytest_configure(config):
    assert jax.device_count() == 8, "tests expect 8 simulated CPU devices; was JAX imported before conftest?"
