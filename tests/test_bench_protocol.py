"""The benchmark protocol's pure parts (benchmarks/_protocol.py): load rule, interleaving, ratios, writing."""

import importlib.util
import itertools
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "_protocol.py"
_spec = importlib.util.spec_from_file_location("bench_protocol", _PATH)
protocol = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(protocol)


def test_load_rule_subtracts_own_use_after_the_run():
    assert not protocol.is_loaded(0.3, 2.1, own_cores=1.9)  # the run itself kept both cores busy
    assert protocol.is_loaded(1.6, 0.2, own_cores=0.0)  # busy before
    assert protocol.is_loaded(0.3, 4.0, own_cores=1.9)  # others came in during the run
    assert not protocol.is_loaded(1.5, 1.5, own_cores=0.0)  # the limit itself is allowed


def test_interleaved_rotates_order_and_times_each_call():
    calls = []
    ticks = itertools.count()
    clock = lambda: float(next(ticks))  # noqa: E731  every call of the clock advances 1 s
    times = protocol.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=4, clock=clock)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert times == {"a": [1.0] * 4, "b": [1.0] * 4}
    calls.clear()
    protocol.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=2, settle=True, clock=clock)
    assert calls == ["a", "a", "b", "b", "b", "b", "a", "a"]


def test_ratio_is_per_round_median_with_spread():
    # Round 2 was slow for both sides: the per-round ratio cancels it, a ratio of medians would not.
    theirs, ours = [2.0, 2.0, 20.0, 2.2, 1.8], [1.0, 1.0, 10.0, 1.0, 1.0]
    r = protocol.ratio(theirs, ours)
    assert r["median"] == pytest.approx(2.0) and r["min"] == pytest.approx(1.8) and r["max"] == pytest.approx(2.2)
    assert r["q25"] <= r["median"] <= r["q75"] and r["n"] == 5
    assert protocol.format_ratio(r) == "2.00× (1.80–2.20)"
    with pytest.raises(ValueError, match="same"):
        protocol.ratio([1.0], [1.0, 2.0])


class _FakeMonitor:
    def __init__(self, loaded):
        self.record = {"loaded": loaded, "load_average_before": [2.0, 1, 1], "load_average_after": [2.0, 1, 1],
                       "own_cores": 0.5, "other_processes_cores": 1.5, "load_limit": 1.5}

    def finish(self):
        return dict(self.record)


def test_fresh_breakdown_keeps_the_last_calls_times():
    """The library's seconds= dicts accumulate; in interleaved rounds each call starts from an empty one."""
    def work(seconds):
        seconds["step"] = seconds.get("step", 0.0) + 1.0
        return "done"

    breakdown = {}
    call = protocol.fresh_breakdown(work, breakdown)
    assert call() == "done" and call() == "done"
    assert breakdown == {"step": 1.0}


def test_loaded_run_refuses_unless_allowed_and_then_is_marked(tmp_path):
    written = {}
    writer = written.__setitem__
    with pytest.raises(SystemExit) as exit_info:
        protocol.write_results(tmp_path / "r.json", {"x": 1}, _FakeMonitor(True), allow_load=False, writer=writer)
    assert exit_info.value.code == 3 and not written
    protocol.write_results(tmp_path / "r.json", {"x": 1}, _FakeMonitor(True), allow_load=True, writer=writer)
    out = written[tmp_path / "r.json"]
    assert out["x"] == 1 and out["loaded"] is True and out["protocol"]["load_average_before"][0] == 2.0
    protocol.write_results(tmp_path / "q.json", {"x": 2}, _FakeMonitor(False), allow_load=False, writer=writer)
    assert written[tmp_path / "q.json"]["loaded"] is False
    # accuracy-first scripts always write; their timings carry the flag
    protocol.write_results(tmp_path / "a.json", {"x": 3}, _FakeMonitor(True), allow_load=False, speed=False, writer=writer)
    assert written[tmp_path / "a.json"]["loaded"] is True


def test_monitor_records_load_before_and_after():
    record = protocol.Monitor().finish()
    assert len(record["load_average_before"]) == 3 and len(record["load_average_after"]) == 3
    assert record["own_cores"] >= 0 and isinstance(record["loaded"], bool)
