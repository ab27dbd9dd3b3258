"""Benchmark: the centre's API under load on a large catalog.

Not a test. For each catalog (SQLite, PostgreSQL): a new centre (``drd init``), three
stores and a policy, then -- written straight into the catalog, not timed -- ``--systems``
enrolled systems in 50 departments with ``--snapshots`` snapshots between them (two
present copies each), replicas, one drill per system and a few job runs. Then the real
daemon (``drd serve --insecure-http --no-scheduler --workers 0``: API and daemon, no jobs)
is loaded by ``--concurrency`` client threads for ``--seconds`` each:

  status    ``GET /v1/status`` (an operator's token);
  system    ``GET /v1/systems/{name}`` of random systems;
  reports   agents' snapshot reports, ``POST /v1/agent/snapshots`` (each thread posts for
            systems of its own, as agents do), counted per second;
  healthz   ``GET /healthz`` (reads nothing): the ceiling of the HTTP stack and the
            clients on this machine, against which the others are read.

Prints p50/p99 latency per read, reports per second, and the daemon's resident memory
(peak, from /proc) against the goals: p99 <= 100 ms, >= 1,000 reports/s on PostgreSQL,
RSS <= 250 MB. The client threads share the machine's cores with the daemon, as they
would not in production: the figures are a lower bound.

    .venv/bin/python bench/api_load.py [--database sqlite|postgresql|both]
        [--systems 10000] [--snapshots 1000000] [--seconds 20] [--concurrency 8]
        [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

PostgreSQL: a database ``drd_bench_<pid>`` is created on that server and dropped after.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from drd.catalog.models import (  # noqa: E402
    Department,
    Drill,
    Job,
    JobRun,
    Policy,
    Replica,
    Snapshot,
    SnapshotCopy,
    System,
    Token,
)
from drd.catalog.models import Store as StoreRow  # noqa: E402

DEPARTMENTS = 50
AGENT_SYSTEMS = 400  # systems whose agents post reports in the reports phase
BATCH = 20_000
GOALS = {"p99_ms": 100.0, "reports_per_second": 1000.0, "rss_mb": 250.0}
POLICY = """\
policy: bench
schedule: "0 * * * *"
sources: [{path: /srv}]
stores: [dc-a, dc-b, vault]
min_copies: 2
retention: {keep_last: 200}
rpo: 2h
rto: 4h
"""


def drd_binary() -> str:
    beside = Path(sys.executable).parent / "drd"
    return str(beside) if beside.is_file() else shutil.which("drd") or sys.exit("no drd")


def drd(home: Path, *args: str) -> str:
    """Run drd's CLI; its stdout."""
    done = subprocess.run([drd_binary(), "--home", str(home), *args], capture_output=True,
                          text=True, env=os.environ | {"DRD_HOME": str(home)})
    if done.returncode != 0:
        sys.exit(f"drd {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- seeding -------------------------------------------------------------------------------


@dataclass
class Seeded:
    systems: list[str]
    agent_tokens: dict[str, str]  # system -> agent token
    seconds: float


def seed(url: str, systems: int, snapshots: int, now: datetime) -> Seeded:
    """Write the catalog's bulk straight in (Core inserts in batches), then ANALYZE."""
    started = time.monotonic()
    engine = sa.create_engine(url)
    per_system = max(snapshots // systems, 1)
    names = [f"sys-{index:05d}" for index in range(systems)]
    agent_tokens = {name: secrets.token_urlsafe(32) for name in names[:AGENT_SYSTEMS]}
    with engine.begin() as connection:
        stores = dict(connection.execute(sa.select(StoreRow.name, StoreRow.id)).all())
        policy_id = connection.scalar(sa.select(Policy.id).where(Policy.name == "bench"))
        connection.execute(sa.insert(Department), [
            {"name": f"dept-{index:02d}", "created_at": now} for index in range(DEPARTMENTS)])
        departments = dict(connection.execute(sa.select(Department.name, Department.id)).all())
        connection.execute(sa.insert(System), [
            {"name": name, "department_id": departments[f"dept-{index % DEPARTMENTS:02d}"],
             "policy_id": policy_id, "hostname": f"{name}.city", "status": "enrolled",
             "enrolled_at": now - timedelta(days=30), "created_at": now - timedelta(days=30),
             "last_seen_at": now - timedelta(minutes=5)}
            for index, name in enumerate(names)])
        system_ids = dict(connection.execute(sa.select(System.name, System.id)).all())
        connection.execute(sa.insert(Token), [
            {"name": f"agent:{name}", "role": "agent", "systems": [name], "departments": [],
             "token_hash": hashlib.sha256(token.encode()).hexdigest(), "created_at": now}
            for name, token in agent_tokens.items()])
        connection.execute(sa.insert(Replica), [
            {"system_id": system_ids[name], "store_id": stores[store],
             "watermark_at": now - timedelta(minutes=40), "listed_at": now,
             "lag_objects": 0, "lag_bytes": 0}
            for name in names for store in ("dc-a", "dc-b", "vault")])
    _seed_snapshots(engine, [system_ids[name] for name in names], per_system, stores, now)
    with engine.begin() as connection:
        jobs = [{"name": f"{kind}:{name}", "kind": kind, "system_id": system_ids[name],
                 "schedule": "0 * * * *", "active": True}
                for name in names for kind in ("replicate", "drill")]
        for start in range(0, len(jobs), BATCH):
            connection.execute(sa.insert(Job), jobs[start:start + BATCH])
        job_ids = dict(connection.execute(sa.select(Job.name, Job.id)).all())
        runs = [{"job_id": job_ids[f"replicate:{name}"], "system_id": system_ids[name],
                 "started_at": now - timedelta(hours=hour, minutes=1),
                 "finished_at": now - timedelta(hours=hour),
                 "outcome": "failed" if (index + hour) % 97 == 0 else "succeeded",
                 "bytes_processed": 1 << 20}
                for index, name in enumerate(names) for hour in range(3)]
        for start in range(0, len(runs), BATCH):
            connection.execute(sa.insert(JobRun), runs[start:start + BATCH])
        drills = [{"system_id": system_ids[name], "store_id": stores["vault"],
                   "started_at": now - timedelta(days=2), "passed": index % 50 != 0,
                   "finished_at": now - timedelta(days=2) + timedelta(minutes=3),
                   "rto_seconds": 170.0, "rpo_seconds": 1800.0}
                  for index, name in enumerate(names)]
        for start in range(0, len(drills), BATCH):
            connection.execute(sa.insert(Drill), drills[start:start + BATCH])
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            # the snapshots' ids were given here: move the sequence past them
            connection.execute(sa.text(
                "SELECT setval(pg_get_serial_sequence('snapshots', 'id'), "
                "(SELECT max(id) FROM snapshots))"))
        connection.execute(sa.text("ANALYZE"))
        connection.commit()
    engine.dispose()
    return Seeded(names, agent_tokens, time.monotonic() - started)


def _seed_snapshots(engine: sa.Engine, system_ids: list[int], per_system: int,
                    stores: dict[str, int], now: datetime) -> None:
    """``per_system`` hourly snapshots per system, each with two present copies."""
    snapshot_rows: list[dict] = []

    def flush() -> None:
        if not snapshot_rows:
            return
        with engine.begin() as connection:
            first = connection.scalar(sa.select(sa.func.coalesce(sa.func.max(Snapshot.id), 0)))
            for offset, row in enumerate(snapshot_rows, start=1):
                row["id"] = first + offset
            connection.execute(sa.insert(Snapshot), snapshot_rows)
            connection.execute(sa.insert(SnapshotCopy), [
                {"snapshot_id": row["id"], "store_id": stores[store], "state": "present",
                 "verified_at": None, "missing_objects": 0}
                for row in snapshot_rows for store in ("dc-a", "vault")])
        snapshot_rows.clear()

    tree = "e" * 64
    for system_id in system_ids:
        for hour in range(per_system):
            time_of = now - timedelta(hours=hour, minutes=system_id % 50)
            snapshot_rows.append({
                "restic_id": hashlib.sha256(f"{system_id}:{hour}".encode()).hexdigest(),
                "system_id": system_id, "time": time_of, "hostname": "h", "paths": ["/srv"],
                "tags": [], "tree": tree, "size_bytes": 10 << 20, "file_count": 1000,
                "reported_at": time_of, "status": "active", "duration_seconds": 3.0,
                "partial": False})
        if len(snapshot_rows) >= BATCH:
            flush()
    flush()


# -- load ----------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(int(len(ordered) * fraction), len(ordered) - 1)] * 1000

    def summary(self) -> dict:
        return {"requests": len(self.latencies), "errors": self.errors,
                "per_second": round(len(self.latencies) / self.seconds, 1),
                "p50_ms": round(self.percentile(0.5), 1),
                "p99_ms": round(self.percentile(0.99), 1),
                "mean_ms": round(statistics.fmean(self.latencies) * 1000, 1)}


def load(name: str, base: str, concurrency: int, seconds: float, request) -> Phase:
    """Run ``request(client, thread_index)`` from ``concurrency`` threads for ``seconds``."""
    phase = Phase(name)
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(index: int) -> None:
        latencies, errors = [], 0
        with httpx.Client(base_url=base, timeout=30) as client:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                response = request(client, index)
                latencies.append(time.perf_counter() - started)
                if response.status_code >= 300:
                    errors += 1
                    if errors == 1:
                        print(f"  {name}: HTTP {response.status_code} {response.text[:200]}",
                              file=sys.stderr)
        with lock:
            phase.latencies.extend(latencies)
            phase.errors += errors

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(concurrency)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    phase.seconds = time.monotonic() - started
    return phase


def memory_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of ``pid`` in MB, from /proc."""
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def report_body(system: str, now: datetime) -> dict:
    snapshot_id = secrets.token_hex(32)
    return {"report_id": str(uuid.uuid4()), "snapshot_id": snapshot_id,
            "time": now.isoformat(), "hostname": f"{system}.city", "paths": ["/srv"],
            "tags": [], "tree": "f" * 64, "files": 1000, "bytes": 10 << 20,
            "duration_seconds": 2.5,
            "stores": {"dc-a": {"complete": True}, "dc-b": {"complete": True},
                       "vault": {"complete": True}}}


def bench_catalog(kind: str, url: str | None, args, work: Path) -> dict:
    home = work / f"centre-{kind}"
    init_args = ["init"] + (["--database-url", url] if url else [])
    drd(home, *init_args)
    for store in ("dc-a", "dc-b", "vault"):
        region = "region-b" if store == "vault" else "region-a"
        drd(home, "store", "add", store, "--url", f"file://{work / kind / store}",
            "--region", region)
    policy = work / "bench.yaml"
    policy.write_text(POLICY)
    drd(home, "policy", "apply", str(policy))
    catalog_url = url or f"sqlite:///{home / 'catalog.sqlite'}"
    now = datetime.now(UTC).replace(microsecond=0)
    print(f"[{kind}] seeding {args.systems} systems, {args.snapshots} snapshots ...",
          flush=True)
    seeded = seed(catalog_url, args.systems, args.snapshots, now)
    print(f"[{kind}] seeded in {seeded.seconds:.0f} s", flush=True)
    operator = drd(home, "token", "create", "--role", "operator", "--name", "bench").strip()

    port = free_port()
    daemon = subprocess.Popen(
        [drd_binary(), "--home", str(home), "serve", "--insecure-http", "--listen",
         f"127.0.0.1:{port}", "--no-scheduler", "--workers", "0"],
        stdout=subprocess.DEVNULL, stderr=open(work / f"serve-{kind}.log", "w"))
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            sys.exit(f"drd serve did not get ready: see {work / f'serve-{kind}.log'}")
        people = {"Authorization": f"Bearer {operator}"}
        idle_rss, _ = memory_mb(daemon.pid)
        # one warm-up request of each kind (imports, caches), not counted
        httpx.get(f"{base}/v1/status", headers=people, timeout=120)
        httpx.get(f"{base}/v1/systems/{seeded.systems[0]}", headers=people, timeout=60)

        # the ceiling of this machine's HTTP stack and client: a route that reads nothing
        floor = load("healthz", base, args.concurrency, args.seconds,
                     lambda client, _: client.get("/healthz"))
        status = load("status", base, args.concurrency, args.seconds,
                      lambda client, _: client.get("/v1/status", headers=people))
        chooser = random.Random(7)
        system = load("system", base, args.concurrency, args.seconds,
                      lambda client, _: client.get(
                          f"/v1/systems/{chooser.choice(seeded.systems)}", headers=people))
        agents = sorted(seeded.agent_tokens)

        def post_report(client: httpx.Client, index: int) -> httpx.Response:
            name = agents[(index + chooser.randrange(len(agents) // args.concurrency)
                           * args.concurrency) % len(agents)]
            return client.post("/v1/agent/snapshots",
                               json=report_body(name, datetime.now(UTC)),
                               headers={"Authorization": f"Bearer {seeded.agent_tokens[name]}"})

        reports = load("reports", base, args.concurrency, args.seconds, post_report)
        rss, peak = memory_mb(daemon.pid)
    finally:
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
    return {"catalog": kind, "systems": args.systems, "snapshots": args.snapshots,
            "seed_seconds": round(seeded.seconds), "healthz": floor.summary(),
            "status": status.summary(),
            "system": system.summary(), "reports": reports.summary(),
            "rss_idle_mb": round(idle_rss), "rss_mb": round(rss), "rss_peak_mb": round(peak)}


def postgres_database(server_url: str) -> tuple[str, callable]:
    """A fresh database on the server; its URL and a function that drops it."""
    name = f"drd_bench_{os.getpid()}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(server_url).set(database=name).render_as_string(
        hide_password=False)

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


def verdicts(result: dict) -> list[str]:
    floor = result["healthz"]
    lines = [f"  healthz  p50 {floor['p50_ms']:7.1f} ms  p99 {floor['p99_ms']:7.1f} ms  "
             f"({floor['per_second']:.0f}/s: the ceiling of HTTP alone, daemon and "
             f"clients on these cores)"]
    for read in ("status", "system"):
        p99 = result[read]["p99_ms"]
        lines.append(f"  {read:8} p50 {result[read]['p50_ms']:7.1f} ms  p99 {p99:7.1f} ms  "
                     f"({result[read]['per_second']:.0f}/s, {result[read]['errors']} errors)  "
                     f"goal p99 <= {GOALS['p99_ms']:.0f} ms: "
                     f"{'met' if p99 <= GOALS['p99_ms'] else 'NOT met'}")
    rate = result["reports"]["per_second"]
    goal = "met" if rate >= GOALS["reports_per_second"] else "NOT met"
    lines.append(f"  reports  {rate:7.0f}/s  p99 {result['reports']['p99_ms']:.1f} ms "
                 f"({result['reports']['errors']} errors)  goal >= 1000/s (PostgreSQL): "
                 f"{goal}")
    lines.append(f"  daemon RSS idle {result['rss_idle_mb']} MB, after {result['rss_mb']} MB, "
                 f"peak {result['rss_peak_mb']} MB  goal <= 250 MB: "
                 f"{'met' if result['rss_peak_mb'] <= GOALS['rss_mb'] else 'NOT met'}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--systems", type=int, default=10_000)
    parser.add_argument("--snapshots", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--postgres-url",
                        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--work", type=Path,
                        help="keep the centres and the daemons' logs in this directory")
    args = parser.parse_args()
    kinds = ("sqlite", "postgresql") if args.database == "both" else (args.database,)
    results = []
    with tempfile.TemporaryDirectory(prefix="drd-api-load-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        for kind in kinds:
            if kind == "postgresql":
                url, drop = postgres_database(args.postgres_url)
                try:
                    results.append(bench_catalog(kind, url, args, work))
                finally:
                    drop()
            else:
                results.append(bench_catalog(kind, None, args, work))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"\nAPI load: {args.systems} systems, {args.snapshots} snapshots, "
          f"{args.concurrency} client threads, {args.seconds:.0f} s per phase, "
          f"{os.cpu_count()} cores shared by daemon and clients")
    for result in results:
        print(f"{result['catalog']} (seeded in {result['seed_seconds']} s):")
        print("\n".join(verdicts(result)))


if __name__ == "__main__":
    main()
