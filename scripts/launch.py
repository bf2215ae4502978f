#!/usr/bin/env python3
"""Launch a jaxsafe command on many accelerators: a TPU pod slice, SLURM GPU nodes, or one machine.

Every process of a JAX job runs the same command; JAX's own runtime
(``jax.distributed``) connects them — Cloud TPU and SLURM are detected by JAX
itself, a plain multi-process job on one machine gets ``--coordinator``,
``--num-processes`` and ``--process-id`` from this script. Make the data axis span
every device with ``data_parallel=-1`` (RMU) or choose a mesh in the config.

    # a TPU v4-32 slice (4 hosts): the same command on every worker
    python scripts/launch.py tpu --name my-v4-32 --zone us-central2-b -- \
        unlearn rmu --config configs/rmu/zephyr-7b.yaml --out /mnt/runs/zephyr data_parallel=-1

    # 2 SLURM nodes with 8 GPUs each: one process per GPU (srun), JAX reads SLURM's variables
    python scripts/launch.py slurm --nodes 2 --gpus-per-node 8 --partition gpu --time 04:00:00 -- \
        unlearn rmu --config configs/rmu/yi-34b.yaml --out /scratch/runs/yi data_parallel=-1

    # one machine: all its GPUs in one process, or N CPU processes (a rehearsal of a multi-host run)
    python scripts/launch.py local -- unlearn rmu --config configs/rmu/zephyr-7b.yaml --out runs/z data_parallel=-1
    python scripts/launch.py local --processes 2 -- unlearn rmu --config configs/rmu/toyworld.yaml --out runs/t data_parallel=-1

``--dry-run`` prints what would run (the commands, and for SLURM the batch script)
and starts nothing.
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import subprocess
import sys
import tempfile


def tpu_commands(args, command: list[str]) -> list[list[str]]:
    remote = f"cd {shlex.quote(args.repo)} && " + ("pip install -q -e . && " if args.install else "")
    remote += "jaxsafe " + shlex.join(command)
    ssh = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", args.name, f"--zone={args.zone}", "--worker=all"]
    if args.project:
        ssh.append(f"--project={args.project}")
    return [ssh + [f"--command={remote}"]]


def slurm_script(args, command: list[str]) -> str:
    lines = ["#!/bin/bash", f"#SBATCH --job-name={args.job_name}", f"#SBATCH --nodes={args.nodes}",
             f"#SBATCH --ntasks-per-node={args.gpus_per_node}", f"#SBATCH --gpus-per-node={args.gpus_per_node}",
             f"#SBATCH --time={args.time}"]
    if args.partition:
        lines.append(f"#SBATCH --partition={args.partition}")
    lines += ["set -euo pipefail", f"cd {shlex.quote(args.repo)}",
              "# one process per GPU; jax.distributed reads SLURM's variables (coordinator, ranks)",
              "srun --gpus-per-task=1 jaxsafe " + shlex.join(command), ""]
    return "\n".join(lines)


def local_commands(args, command: list[str]) -> list[list[str]]:
    if args.processes == 1:
        return [["jaxsafe", *command]]
    port = args.port or _free_port()
    return [["jaxsafe", "--coordinator", f"127.0.0.1:{port}", "--num-processes", str(args.processes),
             "--process-id", str(i), *command] for i in range(args.processes)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        print("launch.py: give the jaxsafe command after --, e.g. ... -- unlearn rmu --config FILE --out DIR",
              file=sys.stderr)
        return 2
    cut = argv.index("--")
    own, command = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dry-run", action="store_true", help="print what would run; start nothing")
    sub = p.add_subparsers(dest="where", required=True)
    t = sub.add_parser("tpu", help="every worker of a Cloud TPU VM slice (gcloud ... ssh --worker=all)")
    t.add_argument("--name", required=True)
    t.add_argument("--zone", required=True)
    t.add_argument("--project", default=None)
    t.add_argument("--repo", default="~/jaxsafe", help="the checkout on the workers (default ~/jaxsafe)")
    t.add_argument("--install", action="store_true", help="pip install -e . on every worker first")
    s = sub.add_parser("slurm", help="sbatch a job with one process per GPU (srun)")
    s.add_argument("--nodes", type=int, required=True)
    s.add_argument("--gpus-per-node", type=int, default=8)
    s.add_argument("--partition", default=None)
    s.add_argument("--time", default="04:00:00")
    s.add_argument("--job-name", default="jaxsafe")
    s.add_argument("--repo", default=os.getcwd(), help="the checkout on the nodes (default: here)")
    loc = sub.add_parser("local", help="this machine: one process, or --processes N on CPU")
    loc.add_argument("--processes", type=int, default=1)
    loc.add_argument("--port", type=int, default=0)
    args = p.parse_args(own)
    if not command:
        p.error("no jaxsafe command after --")

    if args.where == "slurm":
        script = slurm_script(args, command)
        if args.dry_run:
            print(script, end="")
            print("sbatch <the script above>")
            return 0
        with tempfile.NamedTemporaryFile("w", suffix=".sbatch", delete=False) as f:
            f.write(script)
        return subprocess.call(["sbatch", f.name])
    commands = tpu_commands(args, command) if args.where == "tpu" else local_commands(args, command)
    if args.dry_run:
        for c in commands:
            print(shlex.join(c))
        return 0
    procs = [subprocess.Popen(c) for c in commands]
    return max(proc.wait() for proc in procs)


if __name__ == "__main__":
    sys.exit(main())
