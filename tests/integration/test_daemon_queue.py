"""The daemon's queue and scheduler on a real catalog, SQLite and PostgreSQL.

Jobs are synced from a real applied policy (two file stores), items are queued,
claimed by threads racing each other, resumed after a lapsed lease, retried, and
caught up after a "down" period -- through the same functions ``drd serve`` uses.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from drd.catalog.models import Alert, Job, JobRun, System, WorkItem
from drd.catalog.types import utcnow
from drd.daemon import queue
from drd.daemon.jobs import last_fire, sync_jobs
from drd.daemon.scheduler import Scheduler
from tests.integration.staging import StoreSetup, make_stage

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LEASE = dt.timedelta(seconds=30)


@pytest.fixture
def stage(tmp_path: Path, database_url: str):
    stage = make_stage(tmp_path, database_url=database_url, stores=[
        StoreSetup("dc-a", "region-a", directory=tmp_path / "a"),
        StoreSetup("dc-b", "region-b", directory=tmp_path / "b")])
    yield stage
    stage.catalog.dispose()


def _jobs(stage) -> dict[str, Job]:
    with stage.catalog.session() as session:
        return {job.name: job for job in session.scalars(sa.select(Job))}


def _items(stage) -> list[WorkItem]:
    with stage.catalog.session() as session:
        return list(session.scalars(sa.select(WorkItem).order_by(WorkItem.id)))


def test_jobs_sync_from_policies_idempotently(stage) -> None:
    now = utcnow()
    with stage.catalog.session() as session:
        first = sync_jobs(session, now)
    assert sorted(first.created) == ["check:fs1:dc-a", "check:fs1:dc-b", "replicate:fs1",
                                     "retention:fs1", "verify:fs1:dc-a", "verify:fs1:dc-b"]
    jobs = _jobs(stage)
    assert all(job.active and job.next_run_at > now for job in jobs.values())
    with stage.catalog.session() as session:
        again = sync_jobs(session, now + dt.timedelta(minutes=5))
    assert not again.changed
    assert {name: job.next_run_at for name, job in _jobs(stage).items()} == \
        {name: job.next_run_at for name, job in jobs.items()}
    # a retired system's jobs are deactivated, not deleted (their runs stay history)
    with stage.catalog.session() as session:
        session.execute(sa.update(System).values(status="retired"))
        gone = sync_jobs(session, now)
    assert sorted(gone.deactivated) == sorted(jobs)
    assert not any(job.active for job in _jobs(stage).values())


def test_enqueue_is_deduplicated_per_job_and_per_slot(stage) -> None:
    now = utcnow()
    slot = now.replace(second=0, microsecond=0)
    with stage.catalog.session() as session:
        sync_jobs(session, now)
        job = session.scalar(sa.select(Job).where(Job.name == "verify:fs1:dc-a"))
        assert queue.enqueue(session, job, "scheduled", scheduled_for=slot) is not None
        # one queued item per job, whatever the reason
        assert queue.enqueue(session, job, "manual") is None
        assert queue.enqueue(session, job, "scheduled", scheduled_for=slot) is None
    claimed = queue.claim(stage.catalog, "daemon-a", LEASE)
    assert claimed.job_name == "verify:fs1:dc-a" and claimed.store == "dc-a"
    with stage.catalog.session() as session:
        job = session.get(Job, claimed.job_id)
        # claimed: the job may be queued again, but the same slot never
        assert queue.enqueue(session, job, "scheduled", scheduled_for=slot) is None
        assert queue.enqueue(session, job, "manual") is not None
        # replication after a snapshot: a queued request absorbs the next one
        system_id = session.scalar(sa.select(System.id))
        assert queue.request(session, "replicate", system_id, "snapshot") is not None
        assert queue.request(session, "replicate", system_id, "snapshot") is None
    assert [(i.kind, i.reason, i.state) for i in _items(stage)] == [
        ("verify", "scheduled", "running"), ("verify", "manual", "queued"),
        ("replicate", "snapshot", "queued")]


def test_racing_claimers_never_share_an_item(stage) -> None:
    now = utcnow()
    with stage.catalog.session() as session:
        sync_jobs(session, now)
        for job in session.scalars(sa.select(Job)):
            for minute in range(3):
                queue.enqueue(session, job, "scheduled",
                              scheduled_for=now - dt.timedelta(minutes=minute))
                session.execute(sa.update(WorkItem).values(pending_key=None))
    total = len(_items(stage))
    assert total == 18
    claims: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def claimer(name: str) -> None:
        try:
            barrier.wait()
            while (claimed := queue.claim(stage.catalog, name, LEASE)) is not None:
                claims.setdefault(name, []).append(claimed.item_id)
                # one run of a job at a time: its next slot waits for this one
                queue.complete(stage.catalog, name, claimed.item_id, "succeeded")
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=claimer, args=(f"daemon-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    claimed_ids = [item for items in claims.values() for item in items]
    assert sorted(claimed_ids) == sorted(i.id for i in _items(stage))
    assert len(set(claimed_ids)) == total
    with stage.catalog.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(JobRun)) == total
    assert all(item.state == "done" and item.run_id for item in _items(stage))


def test_a_lapsed_lease_resumes_the_same_run(stage) -> None:
    now = utcnow()
    with stage.catalog.session() as session:
        sync_jobs(session, now)
        system_id = session.scalar(sa.select(System.id))
        queue.request(session, "replicate", system_id, "snapshot", now=now)
    first = queue.claim(stage.catalog, "daemon-a", dt.timedelta(seconds=5), now=now)
    assert first.attempts == 1 and not first.resumed
    # within the lease nobody else gets it, and the heartbeat keeps it
    assert queue.claim(stage.catalog, "daemon-b", LEASE, now=now) is None
    assert queue.heartbeat(stage.catalog, "daemon-a", [first.item_id],
                           dt.timedelta(seconds=5), now=now) == {first.item_id}
    # daemon-a dies: its lease lapses and daemon-b resumes the same run
    later = now + dt.timedelta(seconds=10)
    second = queue.claim(stage.catalog, "daemon-b", LEASE, now=later)
    assert (second.item_id, second.run_id, second.attempts, second.resumed) == \
        (first.item_id, first.run_id, 2, True)
    assert queue.heartbeat(stage.catalog, "daemon-a", [first.item_id], LEASE) == set()
    assert queue.complete(stage.catalog, "daemon-a", first.item_id, "succeeded", 1) == "lost"
    assert queue.complete(stage.catalog, "daemon-b", second.item_id, "succeeded", 42,
                          now=later) == "done"
    with stage.catalog.session() as session:
        (run,) = session.scalars(sa.select(JobRun))
        assert (run.outcome, run.bytes_processed, run.started_at, run.finished_at) == \
            ("succeeded", 42, now, later)
    (item,) = _items(stage)
    assert (item.state, item.attempts, item.claimed_by) == ("done", 2, "daemon-b")


def test_failures_are_retried_with_backoff_then_alerted_and_resolved(stage) -> None:
    now = utcnow()
    with stage.catalog.session() as session:
        sync_jobs(session, now)
        system_id = session.scalar(sa.select(System.id))
        queue.request(session, "replicate", system_id, "snapshot", now=now)
    claimed = queue.claim(stage.catalog, "d", LEASE, now=now)
    assert queue.complete(stage.catalog, "d", claimed.item_id, "failed",
                          error="store dc-b unavailable", now=now,
                          max_attempts=2) == "queued"
    (item,) = _items(stage)
    assert item.not_before == now + queue.retry_delay(1) and item.pending_key
    assert queue.claim(stage.catalog, "d", LEASE, now=now) is None  # backing off
    retry = queue.claim(stage.catalog, "d", LEASE, now=item.not_before)
    assert (retry.run_id, retry.attempts) == (claimed.run_id, 2)
    assert queue.complete(stage.catalog, "d", retry.item_id, "failed",
                          error="store dc-b unavailable", max_attempts=2) == "failed"
    with stage.catalog.session() as session:
        (run,) = session.scalars(sa.select(JobRun))
        assert (run.outcome, run.error) == ("failed", "store dc-b unavailable")
        (alert,) = session.scalars(sa.select(Alert))
        assert alert.kind == "job_failed" and "replicate:fs1" in alert.message
        assert alert.resolved_at is None
        queue.request(session, "replicate", system_id, "manual")
    fixed = queue.claim(stage.catalog, "d", LEASE)
    assert fixed.run_id != claimed.run_id
    assert queue.complete(stage.catalog, "d", fixed.item_id, "succeeded", 0) == "done"
    with stage.catalog.session() as session:
        (alert,) = session.scalars(sa.select(Alert))
        assert alert.resolved_at is not None


def test_catch_up_after_a_down_period_queues_each_job_once(stage) -> None:
    now = utcnow()
    with stage.catalog.session() as session:
        sync_jobs(session, now - dt.timedelta(days=3))  # the daemon last ran 3 days ago
    scheduler = Scheduler(stage.catalog)
    scheduler.sync_once(now)
    items = _items(stage)
    jobs = _jobs(stage)
    # verify/replicate/retention ran daily or hourly: each missed; check is weekly
    due = {name for name, job in jobs.items()
           if last_fire(job.schedule, now, since=now - dt.timedelta(days=3)) is not None}
    assert {jobs_by_id(jobs)[i.job_id] for i in items} == due
    assert len(items) == len(due) and all(i.reason == "catch-up" for i in items)
    for item in items:
        schedule = jobs_by_id_schedule(jobs)[item.job_id]
        assert item.scheduled_for == last_fire(schedule, now)
    assert all(job.next_run_at > now for job in _jobs(stage).values())
    # a second sync, a restart (a new scheduler) and the slot's own firing add nothing
    scheduler.sync_once(now + dt.timedelta(seconds=1))
    Scheduler(stage.catalog).sync_once(now + dt.timedelta(seconds=2))
    for item in items:
        queue_cleared(stage, item.id)
        assert not Scheduler(stage.catalog).fire_at(item.job_id, now)
    assert len(_items(stage)) == len(items)


def jobs_by_id(jobs: dict[str, Job]) -> dict[int, str]:
    return {job.id: name for name, job in jobs.items()}


def jobs_by_id_schedule(jobs: dict[str, Job]) -> dict[int, str]:
    return {job.id: job.schedule for job in jobs.values()}


def queue_cleared(stage, item_id: int) -> None:
    """Claim the item away, so only the slot's uniqueness can stop a second queueing."""
    with stage.catalog.session() as session:
        session.execute(sa.update(WorkItem).where(WorkItem.id == item_id)
                        .values(pending_key=None, state="done"))


def test_a_daemon_runs_queued_work_and_hands_back_what_a_stop_interrupts(stage) -> None:
    from drd.daemon.service import Daemon
    from drd.daemon.workers import JobResult

    started = threading.Event()
    runs: list[tuple[str, bool]] = []

    def replicate(context) -> JobResult:
        runs.append((context.claim.job_name, context.claim.resumed))
        return JobResult("succeeded", 7)

    def verify(context) -> JobResult:
        # a long job that stops at its next checkpoint when asked
        started.set()
        while not context.should_stop():
            time.sleep(0.05)
        return JobResult("partial", 1, "stopped")

    now = utcnow()
    with stage.catalog.session() as session:
        sync_jobs(session, now)
        system_id = session.scalar(sa.select(System.id))
        queue.request(session, "replicate", system_id, "snapshot")
        verify_job = session.scalar(sa.select(Job).where(Job.name == "verify:fs1:dc-a"))
        queue.enqueue(session, verify_job, "manual")
    daemon = Daemon(stage.config, stage.catalog, stage.master_key, stage.keystore,
                    workers=2, handlers={"replicate": replicate, "verify": verify})
    daemon.start()
    try:
        assert started.wait(20)
        deadline = time.monotonic() + 20
        while not (daemon.is_leader and runs):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        daemon.stop(timeout=5)
    assert runs == [("replicate:fs1", False)]
    items = {item.kind: item for item in _items(stage)}
    assert items["replicate"].state == "done"
    interrupted = items["verify"]
    assert (interrupted.state, interrupted.attempts, interrupted.claimed_by) == \
        ("queued", 0, None)
    assert interrupted.pending_key and interrupted.run_id
    with stage.catalog.session() as session:
        from drd.catalog.models import Daemon as DaemonRow
        (row,) = session.scalars(sa.select(DaemonRow))
        assert row.stopped_at is not None and not row.leader
        run = session.get(JobRun, interrupted.run_id)
        assert run.outcome is None and run.finished_at is None
    # the next claim resumes the same run
    resumed = queue.claim(stage.catalog, "next", LEASE)
    assert (resumed.item_id, resumed.run_id, resumed.resumed) == \
        (interrupted.id, interrupted.run_id, True)


def test_a_dead_daemon_of_this_host_is_resumed_without_waiting_for_its_lease(stage) -> None:
    import socket

    from drd.daemon.leader import register

    now = utcnow()
    register(stage.catalog, "gone", now=now)
    with stage.catalog.session() as session:
        sync_jobs(session, now)
        system_id = session.scalar(sa.select(System.id))
        queue.request(session, "replicate", system_id, "snapshot", now=now)
    first = queue.claim(stage.catalog, "gone", LEASE, now=now)
    host = socket.gethostname()[:200]
    with stage.catalog.session() as session:
        assert queue.expire_dead_local_claims(session, host, now, alive=lambda pid: True) == 0
        assert queue.expire_dead_local_claims(session, "elsewhere", now,
                                              alive=lambda pid: False) == 0
    assert queue.claim(stage.catalog, "next", LEASE, now=now + dt.timedelta(seconds=1)) \
        is None
    with stage.catalog.session() as session:
        assert queue.expire_dead_local_claims(session, host, now,
                                              alive=lambda pid: False) == 1
    resumed = queue.claim(stage.catalog, "next", LEASE, now=now + dt.timedelta(seconds=1))
    assert (resumed.item_id, resumed.run_id, resumed.attempts) == \
        (first.item_id, first.run_id, 2)


def test_one_run_of_a_job_at_a_time(stage) -> None:
    now = utcnow()
    with stage.catalog.session() as session:
        sync_jobs(session, now)
        system_id = session.scalar(sa.select(System.id))
        queue.request(session, "replicate", system_id, "snapshot")
    first = queue.claim(stage.catalog, "daemon-a", LEASE)
    with stage.catalog.session() as session:  # a new snapshot while the first pass runs
        queue.request(session, "replicate", system_id, "snapshot")
    assert queue.claim(stage.catalog, "daemon-b", LEASE) is None
    queue.complete(stage.catalog, "daemon-a", first.item_id, "succeeded", 0, None)
    second = queue.claim(stage.catalog, "daemon-b", LEASE)
    assert second is not None and second.item_id != first.item_id


def test_a_run_not_worth_retrying_ends_at_once(stage) -> None:
    with stage.catalog.session() as session:
        sync_jobs(session, utcnow())
        system_id = session.scalar(sa.select(System.id))
        queue.request(session, "replicate", system_id, "manual")
    claimed = queue.claim(stage.catalog, "d", LEASE)
    state = queue.complete(stage.catalog, "d", claimed.item_id, "partial", 5, "lost",
                           retry=False)
    (item,) = _items(stage)
    assert state == item.state != "queued" and item.finished_at is not None
    with stage.catalog.session() as session:
        run = session.get(JobRun, item.run_id)
        assert (run.outcome, run.error) == ("partial", "lost")
