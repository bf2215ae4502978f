"""jaxsafe.io: preflight checks, atomic writes that name the user's path, and StagedDir's life cycle."""

import dataclasses

import pytest

from jaxsafe.errors import UserError
from jaxsafe.io import StagedDir, atomic_write_text, check_output_dir, check_output_file


def test_atomic_write_error_names_the_users_path(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=r"cannot write .*file/sub/out\.json") as e:
        atomic_write_text(tmp_path / "file" / "sub" / "out.json", "{}")
    assert ".tmp" not in str(e.value)


def test_preflight(tmp_path):
    (tmp_path / "f").write_text("x")
    assert check_output_file(None) is None
    assert check_output_file(tmp_path / "new" / "deeper" / "r.json") == tmp_path / "new" / "deeper" / "r.json"
    assert check_output_file(tmp_path / "f")  # an existing file is replaced atomically
    with pytest.raises(UserError, match="is a folder"):
        check_output_file(tmp_path, "--out")
    with pytest.raises(UserError, match=r"--predictions .*f/x: .*f is a file"):
        check_output_file(tmp_path / "f" / "x", "--predictions")
    with pytest.raises(UserError, match="is a file; give a folder"):
        check_output_dir(tmp_path / "f")


def test_staged_dir_life_cycle(tmp_path):
    out = tmp_path / "world"
    stage = StagedDir(out, "seed: 0\n")
    work = stage.start()
    assert work == tmp_path / ".world.partial" and not out.exists()
    (work / "a.txt").write_text("one")
    stage.commit()
    assert (out / "a.txt").read_text() == "one" and not work.exists()
    # finished: refused without a flag; reused with --resume and the same config; refused with another config
    with pytest.raises(UserError, match="already holds a result"):
        StagedDir(out, "seed: 0\n")
    assert StagedDir(out, "seed: 0\n", resume=True).done
    with pytest.raises(UserError, match=r"different config \(seed: 0 there, 1 now\)"):
        StagedDir(out, "seed: 1\n", resume=True)
    # --overwrite: the old output stays until the new one is complete
    stage = StagedDir(out, "seed: 1\n", overwrite=True)
    (stage.start() / "b.txt").write_text("two")
    assert (out / "a.txt").exists()
    # an interrupted one: refused without a flag, resumed with --resume
    with pytest.raises(UserError, match="interrupted"):
        StagedDir(out, "seed: 1\n")
    stage = StagedDir(out, "seed: 1\n", resume=True)
    assert stage.resuming and not stage.done
    stage.commit()
    assert sorted(p.name for p in out.iterdir()) == ["b.txt", "config.yaml"]
    assert not (tmp_path / ".world.old").exists()


def test_staged_dir_recovers_a_swap_killed_between_its_renames(tmp_path):
    old = tmp_path / ".world.old"
    old.mkdir()
    (old / "a.txt").write_text("previous")
    (old / "config.yaml").write_text("seed: 0\n")
    StagedDir(tmp_path / "world", "seed: 0\n", resume=True)  # the previous output is put back first
    assert (tmp_path / "world" / "a.txt").read_text() == "previous" and not old.exists()


def test_staged_dir_never_replaces_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("mine")
    for flags in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(UserError, match="holding other files"):
            StagedDir(tmp_path / "home", "seed: 0\n", **flags)
    assert (tmp_path / "home" / "notes.txt").read_text() == "mine"


@dataclasses.dataclass(frozen=True)
class _Optimizer:
    name: str = "adamw"
    eps_root: float = 0.0  # a key added to the code after the stored run was made


@dataclasses.dataclass(frozen=True)
class _Run:
    seed: int = 0
    optimizer: _Optimizer = dataclasses.field(default_factory=_Optimizer)


def test_staged_dir_reads_a_stored_config_through_the_current_class(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("seed: 0\noptimizer:\n  name: adamw\n")  # written before eps_root existed
    assert StagedDir(out, _Run(), resume=True).done  # the new key at its default: the same run
    with pytest.raises(UserError, match=r"different config \(optimizer.eps_root: 0.0 there, 1e-12 now\)"):
        StagedDir(out, _Run(optimizer=_Optimizer(eps_root=1e-12)), resume=True)
    with pytest.raises(UserError, match=r"different config \(seed: 0 there, 1 now\)"):
        StagedDir(out, _Run(seed=1), resume=True)
    (out / "config.yaml").write_text("seed: 0\nretired_key: 3\n")  # a key this code no longer has
    with pytest.raises(UserError, match=r"different config \(retired_key: 3 there, None now\)"):
        StagedDir(out, _Run(), resume=True)
