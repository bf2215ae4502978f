import pytest

from jaxsafe.graphs.gnn import GNNBisector


@pytest.fixture(scope="session")
def random_model():
    """An untrained GNN bisector: exercises every code path without depending on the shipped weights."""
    return GNNBisector.init(seed=0)
