"""The bad-input matrix: the contract every bad input must meet, and how commands are run.

Each case runs the real command line in a subprocess (as a user would) inside a
workspace of good and bad files and of previous outputs, and checks:
exit status 2, exactly one line on stderr naming the offending argument or file,
no traceback, and every file of the workspace byte-identical afterwards (nothing
written, nothing removed).
"""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY_WORLD = REPO / "configs" / "toyworld" / "tiny.yaml"


def cli_env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one CPU device: the commands' own default
    return env


def run_cli(args, cwd, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jaxsafe.cli", *map(str, args)], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def snapshot(root: Path) -> dict:
    """Every file (bytes) and folder under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = p.read_bytes() if p.is_file() else "<dir>"
    return out


def assert_bad(ws: Path, args, *names) -> str:
    """Run ``jaxsafe args`` in ``ws``; check the bad-input contract; return the error line."""
    before = snapshot(ws)
    r = run_cli(args, ws)
    lines = r.stderr.splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert len(lines) == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    after = snapshot(ws)
    assert after.keys() == before.keys(), sorted(set(after) ^ set(before))
    changed = [k for k in before if before[k] != after[k]]
    assert not changed, changed
    return lines[0]


