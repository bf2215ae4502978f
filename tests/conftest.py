"""Test setup: 8 simulated CPU devices (set before JAX starts) and strict dtype promotion."""

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
    """The read-only ../shared folder (specs, reference numbers, data)."""
    if not SHARED.is_dir():
        pytest.skip(f"../shared not found next to the repository ({SHARED})")
    return SHARED


def pytest_configure(config):
    assert jax.device_count() == 8, "tests expect 8 simulated CPU devices; was JAX imported before conftest?"
