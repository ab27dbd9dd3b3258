"""The daemon as real processes: several ``drd serve`` on PostgreSQL, and ``kill -9``.

Each test builds a centre with :mod:`tests.integration.staging` (real SeaweedFS stores,
a real restic repository of system ``fs1`` in store ``a``), writes a short
``lease_seconds`` and one copy at a time into its ``drd.yaml``, and runs ``drd serve
--insecure-http`` as subprocesses. Besides restic's own objects the repository gets a
few hundred extra packs named, as restic names them, by the SHA-256 of their bytes:
replication and verification are keyless, and the many objects give a pass long enough
to be killed in the middle. The moment to kill is picked by polling the catalog (the
ledger and the work queue), as an operator's monitoring would see it.
"""

from __future__ import annotations

import hashlib
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from drd.catalog.models import Daemon, Job, JobRun, Store, StoreObject, System, WorkItem
from drd.catalog.types import utcnow
from drd.config import write_config
from drd.daemon import queue
from drd.daemon.jobs import sync_jobs
from tests.conftest import _postgres_schema_url
from tests.integration.staging import StoreSetup, make_stage
from tests.integration.test_serve import _environment, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXTRA_PACKS = 300
PACK_SIZE = 8_000
NEVER = "0 0 1 1 *"  # scheduled jobs stay out of the way: the tests queue what they test
POLICY_EXTRA = f"""\
replication: {{schedule: "{NEVER}"}}
verification: {{schedule: "{NEVER}", check_schedule: "{NEVER}"}}
prune: {{schedule: "{NEVER}"}}
"""
STARTUP_SECONDS = 30
RUN_SECONDS = 90


class Serve:
    """A ``drd serve`` subprocess on a centre's home."""

    def __init__(self, home: Path, log_dir: Path, name: str) -> None:
        self.port = free_port()
        self.log_path = log_dir / f"serve-{name}.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "drd.cli.main", "serve", "--insecure-http",
                 "--listen", f"127.0.0.1:{self.port}"],
                env=_environment(home), stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert self.process.poll() is None, f"drd serve exited early:\n{self.log()}"
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz",
                             timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"drd serve did not start:\n{self.log()}"
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=15)


@pytest.fixture
def processes():
    started: list[Serve] = []
    yield started
    for serve in started:
        if serve.process.poll() is None:
            serve.kill()


def _stage(tmp_path: Path, seaweed, database_url: str | None):
    first, second = seaweed(2)
    stage = make_stage(tmp_path, database_url=database_url, policy_extra=POLICY_EXTRA,
                       stores=[StoreSetup("a", "region-a", first, "store-a"),
                               StoreSetup("b", "region-b", second, "store-b"),
                               StoreSetup("c", "region-b", first, "store-c")])
    stage.config.lease_seconds = 5
    stage.config.replication_parallel = 1
    stage.config.workers = 2
    write_config(stage.config)
    stage.init("a")
    stage.write_files(20, 50_000)
    snapshot = stage.backup("a")
    origin = stage.raw_store("a")
    for _ in range(EXTRA_PACKS):
        content = secrets.token_bytes(PACK_SIZE)
        name = hashlib.sha256(content).hexdigest()
        origin.put(f"data/{name[:2]}/{name}", content)
    with stage.catalog.session() as session:
        # one verification run reads a whole store
        session.execute(sa.update(Store).values(verify_budget_bytes=10**9))
    return stage, snapshot


def _wait(predicate, seconds: float, what: str, poll: float = 0.05):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)


def _count(stage, query) -> int:
    with stage.catalog.session() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))


def _store_ids(stage) -> dict[str, int]:
    with stage.catalog.session() as session:
        return {name: store_id for name, store_id in session.execute(
            sa.select(Store.name, Store.id))}


def _all_done(stage) -> bool:
    with stage.catalog.session() as session:
        states = list(session.scalars(sa.select(WorkItem.state)))
    assert "failed" not in states
    return bool(states) and set(states) == {"done"}


def _assert_every_run_once(stage, serves: list[Serve]) -> None:
    with stage.catalog.session() as session:
        items = list(session.scalars(sa.select(WorkItem)))
        runs = list(session.scalars(sa.select(JobRun)))
    logs = "\n".join(serve.log() for serve in serves)
    assert all(item.state == "done" for item in items), logs
    assert sorted(item.run_id for item in items) == sorted(run.id for run in runs)
    assert all(run.outcome == "succeeded" and run.finished_at for run in runs), \
        [(run.job_id, run.outcome, run.error) for run in runs]
    assert "Traceback" not in logs, logs


def _assert_every_object_everywhere(stage, expected: dict[str, int]) -> None:
    """Every store holds every object of store a, each with its name's SHA-256."""
    for name in stage.stores:
        store = stage.raw_store(name)
        assert stage.keys(name) == expected, name
        for key in expected:
            if key == "config":
                continue
            digest = hashlib.sha256(b"".join(store.get(key))).hexdigest()
            assert digest == key.rsplit("/", 1)[-1], (name, key)


def test_kill_9_during_replication_and_verification_ends_as_an_undisturbed_run(
        tmp_path: Path, seaweed, processes) -> None:
    stage, snapshot = _stage(tmp_path, seaweed, None)
    expected = stage.keys("a")
    total = len(expected)
    assert total > EXTRA_PACKS
    stage.report(snapshot, {"a": True, "b": False, "c": False})  # queues replication
    stores = _store_ids(stage)
    targets = [stores["b"], stores["c"]]
    copied = sa.select(StoreObject.id).where(StoreObject.store_id.in_(targets),
                                             StoreObject.state == "present")

    # replication, killed twice part-way, then left to finish
    for share in (0.2, 0.6):
        serve = Serve(stage.home, tmp_path, f"replicate-{share}")
        processes.append(serve)
        _wait(lambda share=share: _count(stage, copied) >= share * 2 * total, RUN_SECONDS,
              f"{share:.0%} of the copies")
        serve.kill()
        assert _count(stage, copied) < 2 * total, "the pass ended before the kill"
    serve = Serve(stage.home, tmp_path, "replicate-end")
    processes.append(serve)
    _wait(lambda: _all_done(stage), RUN_SECONDS, "replication to finish", poll=0.2)
    _assert_every_object_everywhere(stage, expected)
    with stage.catalog.session() as session:
        (item,) = session.scalars(sa.select(WorkItem))
        assert item.attempts == 3 and item.kind == "replicate"
        # the run's progress, as the last attempt recorded it
        assert item.checkpoint["objects_done"] == item.checkpoint["objects_total"] > 0
    assert serve.stop() == 0, serve.log()

    # verification of every store, killed part-way twice
    with stage.catalog.session() as session:
        system_id = session.scalar(sa.select(System.id))
        for store_id in stores.values():
            assert queue.request(session, "verify", system_id, "manual", store_id=store_id)
    verified = sa.select(StoreObject.id).where(StoreObject.verified_at.is_not(None))
    for share in (0.15, 0.5):
        serve = Serve(stage.home, tmp_path, f"verify-{share}")
        processes.append(serve)
        _wait(lambda share=share: _count(stage, verified) >= share * 3 * total, RUN_SECONDS,
              f"{share:.0%} verified")
        serve.kill()
        assert _count(stage, verified) < 3 * total, "verification ended before the kill"
    # a clean stop (SIGTERM) part-way exits 0 promptly and hands the work back
    serve = Serve(stage.home, tmp_path, "verify-sigterm")
    processes.append(serve)
    _wait(lambda: _count(stage, verified) >= 0.7 * 3 * total, RUN_SECONDS, "70% verified")
    stopping = time.monotonic()
    assert serve.stop() == 0, serve.log()
    assert time.monotonic() - stopping < 10
    with stage.catalog.session() as session:
        stopped = session.scalar(sa.select(Daemon).where(Daemon.pid == serve.pid))
        assert stopped.stopped_at is not None and not stopped.leader
        assert session.scalar(sa.select(sa.func.count()).select_from(WorkItem).where(
            WorkItem.claimed_by == stopped.id, WorkItem.state == "running")) == 0
    serve = Serve(stage.home, tmp_path, "verify-end")
    processes.append(serve)
    _wait(lambda: _all_done(stage), RUN_SECONDS, "verification to finish", poll=0.2)
    assert serve.stop() == 0, serve.log()

    _assert_every_run_once(stage, processes)
    _assert_every_object_everywhere(stage, expected)
    with stage.catalog.session() as session:
        ledger = list(session.scalars(sa.select(StoreObject)))
    assert len(ledger) == 3 * total
    assert all(entry.state == "present" and entry.verified_at for entry in ledger)


def test_two_daemons_on_postgresql_share_the_work_and_survive_the_leaders_death(
        tmp_path: Path, seaweed, processes, postgres_url: str) -> None:
    url, drop = _postgres_schema_url(postgres_url)
    try:
        stage, snapshot = _stage(tmp_path, seaweed, url)
        stage.copy_all("a")
        stage.report(snapshot)
        now = utcnow()
        with stage.catalog.session() as session:
            sync_jobs(session, now)
            # the replication the report queued, and verification of every store missed
            # while no daemon ran: caught up by the leader, once each. (Not restic check:
            # a restic killed with its daemon leaves its exclusive lock behind, and the
            # resumed check fails on it until `restic unlock`.)
            session.execute(sa.update(Job).where(Job.kind == "verify")
                            .values(next_run_at=now.replace(year=now.year - 1)))
        first = Serve(stage.home, tmp_path, "first")
        processes.append(first)
        second = Serve(stage.home, tmp_path, "second")
        processes.append(second)

        def leader() -> int | None:
            with stage.catalog.session() as session:
                return session.scalar(sa.select(Daemon.pid).where(
                    Daemon.leader.is_(True), Daemon.stopped_at.is_(None)))

        leading = _wait(leader, 10, "a leader")
        with stage.catalog.session() as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(WorkItem)) == 4
        by_pid = {first.pid: first, second.pid: second}
        victim, survivor = by_pid[leading], next(s for s in by_pid.values()
                                                 if s.pid != leading)

        def victim_busy() -> bool:
            with stage.catalog.session() as session:
                return session.scalar(sa.select(sa.func.count()).select_from(WorkItem).join(
                    Daemon, Daemon.id == WorkItem.claimed_by).where(
                    WorkItem.state == "running", Daemon.pid == victim.pid)) > 0

        _wait(victim_busy, 30, "the leader to run a job", poll=0.02)
        victim.kill()
        killed_at = time.monotonic()
        _wait(lambda: leader() == survivor.pid, 10, "the other daemon to lead")
        assert time.monotonic() - killed_at < 5
        _wait(lambda: _all_done(stage), RUN_SECONDS, "every job", poll=0.2)
        assert survivor.stop() == 0, survivor.log()

        _assert_every_run_once(stage, [survivor])
        with stage.catalog.session() as session:
            items = list(session.scalars(sa.select(WorkItem)))
            daemons = {row.pid: row for row in session.scalars(sa.select(Daemon))}
        assert sorted(item.kind for item in items) == ["replicate"] + ["verify"] * 3
        # the work was shared, and what the leader held when it died was resumed
        assert {item.claimed_by for item in items} >= {daemons[survivor.pid].id}
        assert any(item.attempts == 2 for item in items)
        assert daemons[survivor.pid].stopped_at is not None
        assert daemons[victim.pid].stopped_at is None and not daemons[victim.pid].leader
        _assert_every_object_everywhere(stage, stage.keys("a"))
        stage.catalog.dispose()
    finally:
        for serve in processes:
            if serve.process.poll() is None:
                serve.kill()
        drop()

