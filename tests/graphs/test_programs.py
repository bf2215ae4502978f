"""Executables kept on disk (jaxsafe.graphs.programs): a warm CLI process traces and compiles nothing."""

import json
import os
import shutil
import subprocess
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsafe.graphs import programs
from jaxsafe.graphs.generators import delaunay
from jaxsafe.graphs.io import write_metis


@pytest.fixture
def program_dir(tmp_path):
    programs.set_directory(tmp_path / "programs")
    yield tmp_path / "programs"
    programs.set_directory(None)


def _affine(x, scale, power):
    return {"y": x * scale + 1.0, "sum": jnp.sum(x ** power)}


def test_a_program_is_compiled_once_then_loaded_and_gives_the_same_outputs(program_dir):
    x, scale = np.arange(6, dtype=np.float32).reshape(2, 3), np.float32(2.0)
    before = dict(programs.counts)
    first = programs.Program(_affine, "affine", static_argnums=(2,))(x, scale, 2)
    assert programs.counts["compiled"] == before["compiled"] + 1
    assert len(list(program_dir.glob("affine-*.xla"))) == 1
    # a new Program object has an empty in-memory table, like a new process
    again = programs.Program(_affine, "affine", static_argnums=(2,))
    second = again(x, scale, 2)
    assert programs.counts["loaded"] == before["loaded"] + 1 and programs.counts["compiled"] == before["compiled"] + 1
    jax.tree.map(np.testing.assert_array_equal, first, second)
    np.testing.assert_array_equal(second["y"], x * 2 + 1)
    # another static argument or input shape is another program
    again(x, scale, 3)
    again(np.ones((4, 3), np.float32), scale, 2)
    assert len(list(program_dir.glob("affine-*.xla"))) == 3
    assert programs.counts["plain"] == before["plain"]


def test_an_unreadable_program_file_is_compiled_again(program_dir):
    x = np.ones(3, np.float32)
    programs.Program(_affine, "affine", static_argnums=(2,))(x, np.float32(1.0), 2)
    (path,) = program_dir.glob("affine-*.xla")
    path.write_bytes(b"not a program")
    before = programs.counts["compiled"]
    out = programs.Program(_affine, "affine", static_argnums=(2,))(x, np.float32(1.0), 2)
    assert programs.counts["compiled"] == before + 1
    np.testing.assert_array_equal(out["y"], x + 1)


def test_the_files_a_process_used_are_listed_and_prefetched_by_the_next(program_dir):
    x = np.ones(3, np.float32)
    programs.Program(_affine, "affine", static_argnums=(2,))(x, np.float32(1.0), 2)
    programs.Program(_affine, "affine", static_argnums=(2,))(x, np.float32(1.0), 3)
    programs._finish()  # what a process does at exit
    listed = (program_dir / "affine.recent").read_text().split()
    assert sorted(listed) == sorted(p.name for p in program_dir.glob("affine-*.xla")) and len(listed) == 2
    programs.set_directory(program_dir)  # a new process: nothing used or prefetched yet
    before = dict(programs.counts)
    out = programs.Program(_affine, "affine", static_argnums=(2,))(x, np.float32(3.0), 3)
    assert len(programs._prefetched) == 1  # the other listed file is loading in the background
    assert programs.counts["loaded"] == before["loaded"] + 1 and programs.counts["compiled"] == before["compiled"]
    np.testing.assert_array_equal(out["y"], x * 3 + 1)


class _Pair(NamedTuple):
    total: jax.Array
    count: jax.Array


def test_outputs_it_cannot_store_run_as_plain_jit(program_dir):
    """A NamedTuple output (a user-defined pytree node) and a weakly typed one: plain jax.jit, right values."""
    x = np.arange(4, dtype=np.float32)
    before = dict(programs.counts)
    pair = programs.Program(lambda v: _Pair(v.sum(), jnp.float32(v.size)), "pair")(x)
    weak = programs.Program(lambda v: 2.0 * v, "weak")(1.0)  # a Python float: weakly typed
    assert pair == _Pair(6.0, 4.0) and float(weak) == 2.0 and jax.typeof(weak).weak_type
    assert programs.counts["plain"] == before["plain"] + 2 and programs.counts["compiled"] == before["compiled"]
    assert list(program_dir.glob("*.xla")) == []


def test_a_client_that_cannot_compile_or_serialize_falls_back_to_plain_jit(program_dir, monkeypatch):
    """XLA's client API is not jax's public one: if a jaxlib's differs, the program still runs (plain jit)."""
    client = type(jax.devices()[0].client)

    def broken(*args, **kwargs):
        raise AttributeError("no such client method in this jaxlib")

    monkeypatch.setattr(client, "serialize_executable", broken)
    before = dict(programs.counts)
    out = programs.Program(_affine, "affine", static_argnums=(2,))(np.arange(3, dtype=np.float32), np.float32(2.0), 2)
    np.testing.assert_array_equal(out["y"], np.array([1.0, 3.0, 5.0], np.float32))
    assert float(out["sum"]) == 5.0
    assert programs.counts["plain"] == before["plain"] + 1 and programs.counts["compiled"] == before["compiled"]
    assert list(program_dir.glob("*.xla")) == []


def test_without_a_directory_a_program_is_plain_jit(tmp_path):
    assert programs.directory() is None
    before = dict(programs.counts)
    out = programs.Program(_affine, "affine", static_argnums=(2,))(np.ones(3, np.float32), np.float32(1.0), 2)
    assert programs.counts == before
    np.testing.assert_array_equal(out["y"], np.full(3, 2.0, np.float32))


_DRIVER = """
import json, sys
from jax import monitoring
seen = {"xla_compilations": 0, "traced": []}
def on_event(event, **kw):
    if event == "/jax/compilation_cache/cache_misses":
        seen["xla_compilations"] += 1
def on_duration(event, duration, **kw):
    if event == "/jax/core/compile/jaxpr_trace_duration":
        seen["traced"].append(str(kw.get("fun_name")))
monitoring.register_event_listener(on_event)
monitoring.register_event_duration_secs_listener(on_duration)
from jaxsafe.cli import main
from jaxsafe.graphs import programs
for method in ("gnn", "rl"):
    assert main(["partition", sys.argv[1], "--method", method]) == 0
print(json.dumps({**seen, **programs.counts}))
"""


def test_a_warm_cli_process_traces_and_compiles_none_of_the_programs(tmp_path):
    """`jaxsafe partition` (gnn, then rl) in three processes with one HOME: the first compiles the programs;
    the second, its programs folder deleted, compiles them again while jax's persistent cache holds its
    own compilations (an executable jax loads from there serializes without its kernels); the third
    loads every program, compiles nothing, traces no program (only the weights' shape evaluation) and
    partitions as the first did."""
    graph = tmp_path / "d300.graph"
    write_metis(graph, delaunay(300, seed=5)[0])
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    runs = []
    for i in range(3):
        if i == 1:
            shutil.rmtree(tmp_path / "home" / ".cache" / "jaxsafe" / "programs")
        proc = subprocess.run([sys.executable, "-c", _DRIVER, str(graph)], env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        *results, counts = [json.loads(line) for line in proc.stdout.strip().splitlines()]
        runs.append((counts, [r["normalized_cut"] for r in results]))
    (cold, cold_nc), (again, _), (warm, warm_nc) = runs
    assert cold["compiled"] > 0 and cold["plain"] == 0 and again["compiled"] == cold["compiled"]
    assert warm["compiled"] == 0 and warm["plain"] == 0, warm
    assert warm["loaded"] == cold["compiled"], (cold, warm)
    assert warm["xla_compilations"] == 0, warm
    traced_programs = [name for name in warm["traced"] if name in ("flat", "_greedy_one", "_greedy_many")]
    assert traced_programs == [], warm["traced"]
    assert warm_nc == cold_nc and len(cold_nc) == 2
