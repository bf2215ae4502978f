import subprocess
import sys

import pytest

from jaxsafe.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "jaxsafe.cli", *args], capture_output=True, text=True, timeout=300)


def test_unknown_subcommand_is_one_line():
    r = run_cli("no-such-command")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "invalid choice" in r.stderr
    assert "Traceback" not in r.stderr


def test_help_lists_demo(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "demo" in capsys.readouterr().out


def test_demo_unknown_step(capsys):
    assert main(["demo", "--only", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxsafe: error: unknown demo step 'nope'") and err.count("\n") == 1


def test_foundation_demo_runs_twice(tmp_path, capsys):
    for _ in range(2):  # a second run into the same folder must not be refused
        assert main(["demo", "--only", "foundation", "--out", str(tmp_path)]) == 0
    assert "max |Δw| = 0.0e+00" in capsys.readouterr().out
