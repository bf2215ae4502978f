"""The measurement protocol every script in benchmarks/ follows.

Speed figures taken on a busy machine are not speed figures: on the 2-core
machine this project is developed on, other jobs pushed recorded ratios around
by up to 2.5×. So every benchmark

* records the load average (1, 5, 15 min) before and after its run, and the CPU
  that other processes used meanwhile (from /proc/stat, in cores);
* refuses to write its results file when the machine was loaded — the 1-minute
  load above ``LOAD_LIMIT`` before the run, or, after it, once its own use is
  subtracted — unless ``--allow-load`` is given, and then the file says
  ``"loaded": true``;
* times the sides it compares in interleaved rounds (A B, B A, ...), so a slow
  phase of the machine hits both, and reports the median of the per-round ratios
  with their spread (min, max, interquartile range).

Usage in a script::

    from _protocol import Monitor, add_arguments, interleaved, ratio, write_results
    add_arguments(parser)              # --allow-load
    monitor = Monitor()                # first thing: the load before
    times = interleaved({"ours": f, "theirs": g}, rounds=7)
    result = {..., "train_ratio": ratio(times["theirs"], times["ours"])}
    write_results(path, result, monitor, allow_load=args.allow_load)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, when run as a script

LOAD_LIMIT = 1.5  # 1-minute load average, on the 2-core reference machine


def add_arguments(parser) -> None:
    """Adds ``--allow-load`` to a script's argument parser."""
    parser.add_argument("--allow-load", action="store_true",
                        help=f"write the results file even if the load average exceeded {LOAD_LIMIT} "
                             "(it is then marked \"loaded\": true)")


def add_cpu_time_argument(parser) -> None:
    """Adds ``--cpu-time``: time calls by this process's CPU seconds instead of wall seconds.

    For comparing two versions of OUR code on a loaded machine: CPU time barely moves
    with other jobs' load (wall time moved up to 10× at load 20), but it counts threads
    that spin while waiting, so it is no speed figure and not for comparing frameworks
    with different threading (JAX vs PyTorch).
    """
    parser.add_argument("--cpu-time", action="store_true",
                        help="time by process CPU seconds (A/B of our code under load; not a speed figure)")


def clock(cpu_time: bool) -> Callable[[], float]:
    return time.process_time if cpu_time else time.perf_counter


def _busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (Linux), or None."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU seconds of this process and of the children it has waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def is_loaded(load_before: float, load_after: float, own_cores: float, limit: float = LOAD_LIMIT) -> bool:
    """Whether other work competed with the run.

    ``load_before`` is the 1-minute load average before the run; ``load_after``
    the one after it, which includes the run itself: ``own_cores`` (its CPU
    seconds per wall second) is subtracted. Under contention a process gets fewer
    cores than it has runnable threads, so the subtraction then falls short and
    errs towards "loaded".
    """
    return load_before > limit or max(load_after - own_cores, 0.0) > limit


class Monitor:
    """The machine's load around one benchmark run; create it before the work starts."""

    def __init__(self, limit: float = LOAD_LIMIT):
        self.limit = limit
        self.load_before = os.getloadavg()
        self._wall = time.perf_counter()
        self._busy = _busy_seconds()
        self._own = _own_seconds()

    def finish(self) -> dict:
        """The protocol record: load before/after, CPU use of this run and of the others."""
        wall = time.perf_counter() - self._wall
        own = (_own_seconds() - self._own) / wall
        busy = _busy_seconds()
        others = None if busy is None or self._busy is None else max((busy - self._busy) / wall - own, 0.0)
        after = os.getloadavg()
        return {
            "load_average_before": [round(v, 2) for v in self.load_before],
            "load_average_after": [round(v, 2) for v in after],
            "cpu_cores": os.cpu_count(),
            "own_cores": round(own, 2),
            "other_processes_cores": None if others is None else round(others, 2),
            "wall_s": round(wall, 1),
            "load_limit": self.limit,
            "loaded": is_loaded(self.load_before[0], after[0], own, self.limit),
        }


def interleaved(sides: Mapping[str, Callable[[], object]], rounds: int, *, settle: bool = False,
                clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Times every side once per round, the order rotating (A B, B A for two sides).

    Each callable must finish its work before returning (``block_until_ready``).
    With ``settle`` every timed call follows an untimed call of the same side, so
    it does not inherit the previous side's state of caches and threads.
    Returns seconds per call: ``{side: [round 0, round 1, ...]}``.
    """
    names = list(sides)
    times = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            if settle:
                sides[name]()
            start = clock()
            sides[name]()
            times[name].append(clock() - start)
    return times


def fresh_breakdown(fn: Callable[..., object], breakdown: dict) -> Callable[[], object]:
    """``fn(seconds=breakdown)`` with ``breakdown`` emptied first, for :func:`interleaved`.

    The library's ``seconds=`` dicts accumulate over calls; emptied before each call,
    ``breakdown`` holds the last call's time breakdown.
    """
    def call():
        breakdown.clear()
        return fn(seconds=breakdown)

    return call


def spread(values: Sequence[float]) -> dict:
    """Median, min, max and interquartile range of a sample."""
    v = np.asarray(values, np.float64)
    q25, q50, q75 = np.quantile(v, [0.25, 0.5, 0.75])
    return {"median": float(q50), "min": float(v.min()), "max": float(v.max()),
            "q25": float(q25), "q75": float(q75), "n": int(v.size)}


def ratio(numerator: Sequence[float], denominator: Sequence[float]) -> dict:
    """Spread of the per-round ratios numerator[i] / denominator[i] (same round, same machine state).

    For a speed-up of "ours" over "theirs" pass (theirs' times, ours' times).
    """
    if len(numerator) != len(denominator) or not len(numerator):
        raise ValueError(f"ratio: need the same, non-zero number of rounds, got {len(numerator)} and {len(denominator)}")
    return spread(np.asarray(numerator, np.float64) / np.asarray(denominator, np.float64))


def format_ratio(r: dict) -> str:
    """``1.23× (1.10–1.31)``: the median and the min–max of per-round ratios."""
    return f"{r['median']:.2f}× ({r['min']:.2f}–{r['max']:.2f})"


def decide(protocol: dict, allow_load: bool, speed: bool = True) -> str:
    """``"write"``, ``"write-loaded"`` or ``"refuse"``."""
    if not protocol["loaded"]:
        return "write"
    return "write-loaded" if allow_load or not speed else "refuse"


def write_results(path: Path, result: dict, monitor: Monitor, *, allow_load: bool, speed: bool = True,
                  writer: Callable[[Path, dict], None] | None = None) -> dict:
    """Writes ``result`` with its protocol record to ``path``, or refuses (exit status 3) when loaded.

    ``speed=False`` is for scripts whose headline numbers are accuracies or
    agreements, not timings: they always write, and ``"loaded"`` tells whether the
    timings they also record can be trusted. Returns the protocol record. Print
    the tables before calling this, so a refused run still shows its numbers.
    """
    protocol = monitor.finish()
    action = decide(protocol, allow_load, speed)
    before, after = protocol["load_average_before"][0], protocol["load_average_after"][0]
    print(f"load average {before:.2f} before, {after:.2f} after (this run used {protocol['own_cores']:.2f} cores, "
          f"other processes {protocol['other_processes_cores']}); limit {protocol['load_limit']}")
    if action == "refuse":
        print(f"NOT writing {path}: the machine was loaded; rerun when it is idle, or pass --allow-load "
              "to write the file marked \"loaded\": true", file=sys.stderr)
        raise SystemExit(3)
    if writer is None:
        from jaxsafe.io import atomic_write_json as writer
    writer(Path(path), {**result, "loaded": protocol["loaded"], "protocol": protocol})
    if action == "write-loaded":
        print(f"wrote {path} marked \"loaded\": true", file=sys.stderr)
    return protocol
