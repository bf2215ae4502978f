"""Bad inputs to ``jaxsafe partition``, ``jaxsafe order`` and ``jaxsafe graphs train``."""

import pytest
from climatrix import assert_bad

PARTITION = {
    "zero parts": (["k4.edges", "--parts", "0"], ["--parts"]),
    "negative parts": (["k4.edges", "--parts", "-3"], ["--parts"]),
    "more parts than vertices": (["k4.edges", "--parts", "5", "--method", "metis"], ["--parts 5", "4 vertices"]),
    "missing graph": (["nope.edges"], ["nope.edges"]),
    "graph is a folder": (["outdir"], ["outdir"]),
    "malformed graph": (["bad.edges", "--method", "metis"], ["bad.edges"]),
    "empty graph": (["empty.edges", "--method", "metis"], ["empty.edges"]),
    "out is a folder": (["k4.edges", "--method", "metis", "--out", "outdir"], ["--out", "outdir"]),
    "out through a file": (["k4.edges", "--method", "metis", "--out", "out.json/p.txt"], ["out.json"]),
    "unknown method": (["k4.edges", "--method", "kl"], ["--method"]),
    "negative seed": (["k4.edges", "--seed", "-1"], ["--seed"]),
    "missing weights": (["k4.edges", "--weights", "nope.safetensors"], ["nope.safetensors"]),
}
ORDER = {
    "out is a folder": (["k4.edges", "--out", "outdir"], ["--out", "outdir"]),
    "missing graph": (["nope.edges"], ["nope.edges"]),
    "unknown method": (["k4.edges", "--method", "amd"], ["--method"]),
    "unknown engine": (["k4.edges", "--engine", "cholmod"], ["--engine"]),
}
TRAIN = {
    "negative epochs": (["embedding.epochs=-1"], ["embedding.epochs", "-1"]),
    "zero lr": (["partition.optimizer.lr=0"], ["partition.optimizer.lr"]),
    "zero data parallel": (["data_parallel=0"], ["data_parallel", "-1"]),
    "unknown laplacian": (["model.laplacian=lap"], ["model.laplacian"]),
    "n_min above n_max": (["embedding.n_min=5000"], ["n_min"]),
    "fraction above 1": (["embedding.wide_fraction=2"], ["embedding.wide_fraction"]),
    "unknown key": (["embeding.epochs=3"], ["embeding"]),
    "out is a file": (["--out", "out.json"], ["out.json"]),
    "finished run": (["--out", "run"], ["run", "--overwrite"]),
}


@pytest.mark.parametrize("args, names", PARTITION.values(), ids=PARTITION.keys())
def test_bad_partition(ws, args, names):
    assert_bad(ws, ["partition", *args], *names)


@pytest.mark.parametrize("args, names", ORDER.values(), ids=ORDER.keys())
def test_bad_order(ws, args, names):
    assert_bad(ws, ["order", *args], *names)


@pytest.mark.parametrize("args, names", TRAIN.values(), ids=TRAIN.keys())
def test_bad_graphs_train(ws, args, names):
    out = [] if "--out" in args else ["--out", "new_train"]
    assert_bad(ws, ["graphs", "train", *out, *args], *names)
