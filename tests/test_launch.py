"""scripts/launch.py: the commands it would run on a TPU slice, SLURM nodes and one machine."""

import importlib.util
import shlex
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("launch", Path(__file__).resolve().parents[1] / "scripts" / "launch.py")
launch = importlib.util.module_from_spec(spec)
spec.loader.exec_module(launch)
RMU = ["unlearn", "rmu", "--config", "configs/rmu/zephyr-7b.yaml", "--out", "runs/z", "data_parallel=-1"]


def test_tpu_runs_the_command_on_every_worker(capsys):
    assert launch.main(["--dry-run", "tpu", "--name", "v4-32", "--zone", "us-central2-b", "--install", "--", *RMU]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    argv = shlex.split(line)
    assert argv[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "v4-32"]
    assert "--worker=all" in argv and "--zone=us-central2-b" in argv
    remote = next(a for a in argv if a.startswith("--command="))[len("--command="):]
    assert remote == "cd '~/jaxsafe' && pip install -q -e . && jaxsafe " + shlex.join(RMU)


def test_slurm_batch_script_has_one_process_per_gpu(capsys):
    assert launch.main(["--dry-run", "slurm", "--nodes", "2", "--gpus-per-node", "8", "--partition", "gpu",
                        "--repo", "/scratch/jaxsafe", "--", *RMU]) == 0
    out = capsys.readouterr().out
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --partition=gpu", "cd /scratch/jaxsafe", "srun --gpus-per-task=1 jaxsafe " + shlex.join(RMU)):
        assert line in out.splitlines()


def test_local_processes_get_coordinator_and_ranks(capsys):
    assert launch.main(["--dry-run", "local", "--processes", "3", "--port", "4567", "--", *RMU]) == 0
    lines = [shlex.split(x) for x in capsys.readouterr().out.splitlines()]
    assert lines == [["jaxsafe", "--coordinator", "127.0.0.1:4567", "--num-processes", "3", "--process-id", str(i), *RMU]
                     for i in range(3)]
    assert launch.main(["--dry-run", "local", "--", *RMU]) == 0
    assert capsys.readouterr().out.split() == ["jaxsafe", *RMU]


def test_a_command_is_required(capsys):
    assert launch.main(["local"]) == 2
    with pytest.raises(SystemExit):
        launch.main(["local", "--"])
