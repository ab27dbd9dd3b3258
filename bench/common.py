"""What the benchmarks share: finding the plain tools, their versions, a tree of random
data made once per size and seed, and CPU accounting (Linux)."""

from __future__ import annotations

import os
import random
import resource
import shutil
import subprocess
import sys
from pathlib import Path

MIB = 1024 * 1024


def find_tool(name: str) -> str:
    """The tool beside this Python (the venv's ``rclone``), else on PATH; exit if none."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if not found:
        sys.exit(f"{name} not found: see the benchmark's docstring")
    return found


def tool_version(binary: str) -> str:
    """The first line of ``BINARY version``."""
    output = subprocess.run([binary, "version"], capture_output=True, text=True).stdout
    return output.splitlines()[0] if output else "?"


def random_tree(root: Path, size: int, seed: int) -> tuple[int, int]:
    """About ``size`` bytes of random (incompressible) data in many files: mostly small,
    some medium, a few large. Made once per size and seed. Returns (files, bytes)."""
    marker = root / f".generated-{size}-{seed}"
    if marker.exists():
        files, total = marker.read_text().split()
        return int(files), int(total)
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(seed)
    total = files = 0
    while total < size:
        roll = rng.random()
        if roll < 0.9:
            length = rng.randint(1024, 64 * 1024)
        elif roll < 0.99:
            length = rng.randint(64 * 1024, 4 * MIB)
        else:
            length = rng.randint(8 * MIB, 32 * MIB)
        length = min(length, size - total) or 1
        directory = root / f"d{files % 29:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{files:06d}.bin").write_bytes(rng.randbytes(length))
        files += 1
        total += length
    marker.write_text(f"{files} {total}")
    return files, total


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its reaped children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def own_and_children_cpu() -> tuple[float, float]:
    """CPU seconds so far of this process (all threads) and of its reaped children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def rclone_env(servers: list) -> dict[str, str]:
    """rclone's environment for remotes ``S0:``, ``S1:``, ... on SeaweedFS ``servers``
    (no config file; restic's, AWS's and the caller's own rclone settings left out)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("RESTIC_", "AWS_", "RCLONE_"))}
    env["RCLONE_CONFIG"] = "/dev/null"
    for index, server in enumerate(servers):
        remote = f"RCLONE_CONFIG_S{index}_"
        env.update({
            remote + "TYPE": "s3", remote + "PROVIDER": "Other",
            remote + "ENDPOINT": server.endpoint, remote + "REGION": "us-east-1",
            remote + "ACCESS_KEY_ID": server.access_key,
            remote + "SECRET_ACCESS_KEY": server.secret_key,
        })
    return env
