"""Latency: graphs of nearby sizes share compiled programs (padded-shape buckets), so a CLI process with a
warm persistent cache loads them instead of compiling, and a library user compiles once per bucket."""

import logging

import jax
import numpy as np
import pytest

from jaxsafe.graphs.generators import delaunay
from jaxsafe.graphs.partition import bisect
from jaxsafe.graphs.rl_agents import ActorCritic
from jaxsafe.graphs.rl_drivers import rl_bisect


def _compiled_programs(caplog, fn) -> list[str]:
    """Names of the programs JAX compiles while running ``fn`` (``jax.log_compiles`` records)."""
    caplog.clear()
    with caplog.at_level(logging.WARNING), jax.log_compiles():
        fn()
    return [r.getMessage().split(" with ")[0] for r in caplog.records if r.getMessage().startswith("Compiling")]


@pytest.mark.parametrize("method", ["gnn", "rl"])
def test_nearby_sizes_reuse_the_compiled_programs(method, caplog, random_model):
    agent = ActorCritic.load()
    run = {"gnn": lambda adj: bisect(adj, "gnn", model=random_model),
           "rl": lambda adj: rl_bisect(adj, agent)}[method]
    first, second = (delaunay(n, seed=3)[0] for n in (1100, 1200))  # one finest-level bucket (1280 rows)
    run(first)  # compiles whatever earlier tests did not
    assert _compiled_programs(caplog, lambda: run(second)) == []


def test_compile_log_capture_sees_a_compilation(caplog):
    """The check above cannot pass vacuously: a fresh jitted function is seen."""
    assert _compiled_programs(caplog, lambda: jax.jit(lambda x: x * 3 + 1)(np.ones(3))) != []
