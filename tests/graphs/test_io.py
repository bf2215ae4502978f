"""Graph I/O: formats round-trip, cleaning rules, and bad files name the line."""

import numpy as np
import pytest
import scipy.sparse as sp

from jaxsafe.errors import UserError
from jaxsafe.graphs.generators import delaunay
from jaxsafe.graphs.io import clean_adjacency, from_graphs_tuple, read_graph, to_graphs_tuple, write_metis


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_mtx_symmetric_weights_and_self_loops(tmp_path):
    p = _write(tmp_path, "g.mtx", "%%MatrixMarket matrix coordinate real symmetric\n% c\n3 3 3\n2 1 2.5\n3 2 1\n3 3 7\n")
    a = read_graph(p)
    assert a.toarray().tolist() == [[0, 2.5, 0], [2.5, 0, 1], [0, 1, 0]]


def test_general_mtx_symmetrized_by_maximum(tmp_path):
    p = _write(tmp_path, "g.mtx", "%%MatrixMarket matrix coordinate integer general\n3 3 3\n1 2 4\n2 1 1\n2 3 2\n")
    a = read_graph(p)
    assert a[0, 1] == 4 and a[1, 0] == 4 and a[1, 2] == 2 and a[2, 1] == 2


def test_metis_round_trip(tmp_path):
    adj, _ = delaunay(60, seed=1)
    adj = adj.multiply(sp.random(60, 60, density=1, random_state=0, data_rvs=lambda k: np.ones(k) * 3)).tocsr()
    adj = clean_adjacency(adj + adj.T)
    write_metis(tmp_path / "g.graph", adj)
    assert (read_graph(tmp_path / "g.graph") != adj).nnz == 0


def test_metis_vertex_and_edge_weights_comments_and_blank_lines(tmp_path):
    # fmt 011: each line "vertex weight, then neighbour/weight pairs"; vertex 3 has no neighbours
    p = _write(tmp_path, "g.graph", "% a comment\n4 2 011\n5 2 1.5 4 2\n% inside\n7 1 1.5\n1\n2 1 2\n\n\n")
    assert read_graph(p).toarray().tolist() == [[0, 1.5, 0, 2], [1.5, 0, 0, 0], [0, 0, 0, 0], [2, 0, 0, 0]]
    assert read_graph(p, pattern=True).toarray().tolist() == [[0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]]


def test_edge_list_and_graphs_tuple(tmp_path):
    p = _write(tmp_path, "g.edges", "# comment\n0 1 1\n1 2 3.0\n2 0 2\n")
    a = read_graph(p)
    g = to_graphs_tuple(a)
    assert g.n_node.tolist() == [3] and g.n_edge.tolist() == [6]
    assert (from_graphs_tuple(g) != a).nnz == 0
    # messages flow sender -> receiver: receiver rows hold the adjacency row
    assert sorted(g.senders[g.receivers == 1].tolist()) == [0, 2]


@pytest.mark.parametrize("name,text,where,what", [
    ("g.mtx", "%%MatrixMarket matrix array real general\n2 2\n", ":1:", "coordinate"),
    ("g.mtx", "%%MatrixMarket matrix coordinate real general\n2 3 1\n1 2 1\n", ":2:", "not square"),
    ("g.mtx", "%%MatrixMarket matrix coordinate real general\n3 3 2\n1 2 1\n2 3 -1\n", ":4:", "non-negative"),
    ("g.mtx", "%%MatrixMarket matrix coordinate real general\n3 3 2\n1 2 1\n2 4 1\n", ":4:", "out of range"),
    ("g.mtx", "%%MatrixMarket matrix coordinate real general\n3 3 2\n1 2 x\n2 3 1\n", ":3:", "not a number"),
    ("g.mtx", "hello\n", ":1:", "Matrix Market"),
    ("g.graph", "3 2\n2\n1 3\n5\n", ":4:", "out of range"),
    ("g.graph", "3 5\n2\n1 3\n2\n", ":1:", "edges"),
    ("g.graph", "3 2 001\n2 1\n1 1 3\n", ":3:", "odd"),
    ("g.graph", "3 2\n2\n1 99999999999999999999\n2\n", ":3:", "out of range"),
    ("g.graph", "3 2\n2\n1 3\n2\n2\n", ":5:", "more vertex lines"),
    ("g.graph", "3 2\n2\n1 x\n2\n", ":3:", "not a number"),
    ("g.edges", "0 1\n1 2 3 4\n", ":2:", "expected"),
    ("g.edges", "0 1\n-1 2\n", ":2:", "non-negative"),
])
def test_bad_files_name_the_line(tmp_path, name, text, where, what):
    p = _write(tmp_path, name, text)
    with pytest.raises(UserError) as e:
        read_graph(p)
    assert where in str(e.value) and what in str(e.value)


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="suffix"):
        read_graph(_write(tmp_path, "g.xyz", "0 1\n"))
    with pytest.raises(UserError, match="not found"):
        read_graph(tmp_path / "none.mtx")


def test_pattern_ignores_negative_values(tmp_path):
    p = _write(tmp_path, "l.mtx", "%%MatrixMarket matrix coordinate real symmetric\n2 2 3\n1 1 1\n2 1 -1\n2 2 1\n")
    assert read_graph(p, pattern=True).toarray().tolist() == [[0, 1], [1, 0]]
