"""Training-graph families shared by the GNN trainer and the RL agents (generators.family_graph)."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from jaxsafe.errors import UserError
from jaxsafe.graphs.config import PhaseConfig, TrainConfig
from jaxsafe.graphs.generators import delaunay, family_graph
from jaxsafe.graphs.train import generate


def test_families_are_drawn_in_turn_and_connected():
    phase = PhaseConfig(graphs=5, n_min=300, n_max=400, families=("delaunay", "holes", "geometric", "grid2d", "grid3d"))
    graphs = generate(phase, TrainConfig(), seed=1)
    degrees = [np.diff(g.adj.indptr) for g in graphs]
    # a 2D grid has degrees 2..4 and a 3D grid 3..6 (corners to interior), both with exactly these extremes
    assert (degrees[3].min(), degrees[3].max()) == (2, 4) and (degrees[4].min(), degrees[4].max()) == (3, 6)
    assert degrees[0].min() >= 2 and degrees[0].max() > 6  # a triangulation: no pendant vertex, some high degree
    for g in graphs:
        assert connected_components(g.adj, directed=False)[0] == 1 and abs(g.adj - g.adj.T).max() == 0
    assert 200 <= graphs[2].adj.shape[0] <= 400  # largest component of a random geometric graph of 300-400 points


def test_delaunay_only_keeps_the_shipped_weights_draws():
    phase = PhaseConfig(graphs=3, n_min=100, n_max=300, wide_fraction=0.5)
    rng = np.random.default_rng(7)  # the draws of the run that trained the shipped weights: n, width, seed
    expected = []
    for _ in range(3):
        n = int(rng.integers(100, 301))
        width = 2.0 if rng.random() < 0.5 else 1.0
        expected.append(delaunay(n, width, 1.0, seed=int(rng.integers(2**31)))[0])
    for g, adj in zip(generate(phase, TrainConfig(), seed=7), expected):
        assert g.adj.shape == adj.shape and (g.adj != adj).nnz == 0


def test_unknown_family():
    with pytest.raises(UserError, match="unknown graph family 'tree'"):
        family_graph("tree", 10, 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="families"):
        PhaseConfig(families=())
    assert sp.issparse(family_graph("grid3d", 27, 0, np.random.default_rng(0)))
