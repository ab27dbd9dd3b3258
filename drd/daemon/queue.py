"""The work queue: queued runs of jobs, each claimed by one daemon at a time.

- :func:`enqueue` queues a run of a job, at most once: a second request for a job that
  already has a *queued* item is dropped (``WorkItem.pending_key``), and a scheduled slot
  (``scheduled_for``) is queued once however often the leader changes (a unique
  constraint). :func:`request` does the same for "replicate system S now".
- :func:`claim` hands the oldest due item to one daemon: ``SELECT ... FOR UPDATE SKIP
  LOCKED`` on PostgreSQL, so daemons claiming at once never get the same item; on SQLite
  the catalog's transactions begin ``IMMEDIATE``, which serialises claimers. An item whose
  claimer stopped renewing its lease (``lease_until`` passed: the daemon died) is claimed
  again and resumed under the **same** :class:`~drd.catalog.models.JobRun`, so a run
  killed mid-way and resumed is one run, never two.
- :func:`heartbeat` renews leases; :func:`complete` records the outcome in the item and
  its run, retrying a failed run a bounded number of times with backoff
  (:func:`retry_delay`) before it fails for good (and raises a ``job_failed`` alert,
  resolved by the job's next success); :func:`release` hands unfinished work back on a
  clean stop.

``WorkItem.attempts`` counts the claims that did not end in a clean release.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from drd.catalog import Catalog
from drd.catalog.models import Daemon, Job, JobRun, System, WorkItem
from drd.catalog.models import Store as StoreRow
from drd.catalog.types import utcnow
from drd.daemon.jobs import active_job, ensure_job
from drd.secrets import mask
from drd.services.alerts import raise_alert, resolve_alert

log = logging.getLogger(__name__)

OUTCOMES = ("succeeded", "failed", "partial")
MAX_ATTEMPTS = 4
"""Claims of one item before a run that keeps failing (or keeps killing its daemon) is
failed for good."""
RETRY_BASE = dt.timedelta(seconds=30)
RETRY_CAP = dt.timedelta(minutes=30)
MAX_ERROR_LENGTH = 1000
_LAPSED = dt.timedelta(seconds=1)


# -- pure decisions -----------------------------------------------------------------------


def pending_key(job_id: int) -> str:
    """The ``pending_key`` of a job's queued item: one queued item per job."""
    return f"job:{job_id}"


def retry_delay(attempts: int, base: dt.timedelta = RETRY_BASE,
                cap: dt.timedelta = RETRY_CAP) -> dt.timedelta:
    """How long to wait before the next try of a run that failed on claim ``attempts``:
    ``base`` doubled per attempt, at most ``cap``."""
    return min(base * (2 ** max(attempts - 1, 0)), cap)


def should_retry(outcome: str, attempts: int, max_attempts: int = MAX_ATTEMPTS) -> bool:
    """Whether a run that ended in ``outcome`` on claim number ``attempts`` is tried again."""
    return outcome != "succeeded" and attempts < max_attempts


def one_line_error(error: BaseException | str, secrets: Iterable[Any] = ()) -> str:
    """An error as one line for the catalog and the log: masked, at most 1,000 characters.

    An exception is shown as its message (its type name when it has none).
    """
    if isinstance(error, BaseException):
        text = str(error) or type(error).__name__
    else:
        text = error
    return mask(" ".join(text.split()), secrets)[:MAX_ERROR_LENGTH]


# -- queueing -----------------------------------------------------------------------------


_PENDING = sa.select(WorkItem.id).where(WorkItem.pending_key == sa.bindparam("key"))


def enqueue(session: Session, job: Job, reason: str, scheduled_for: dt.datetime | None = None,
            not_before: dt.datetime | None = None, params: dict[str, Any] | None = None,
            now: dt.datetime | None = None) -> WorkItem | None:
    """Queue a run of ``job`` in ``session``'s transaction; None when it is queued already.

    "Already" means: the job has a queued item (any reason), or ``scheduled_for`` names a
    slot queued before. The insert runs in a savepoint, so a duplicate leaves the
    caller's transaction usable.
    """
    now = now or utcnow()
    key = pending_key(job.id)
    if session.scalar(_PENDING, {"key": key}) is not None:
        return None
    item = WorkItem(job_id=job.id, kind=job.kind, system_id=job.system_id,
                    store_id=job.store_id, params=dict(params or {}), pending_key=key,
                    scheduled_for=scheduled_for, state="queued", reason=reason,
                    created_at=now, not_before=not_before or now, attempts=0)
    try:
        with session.begin_nested():
            session.add(item)
    except sa.exc.IntegrityError:
        # a concurrent enqueue of the same job, or a slot queued before
        return None
    log.info("queued %s (%s%s)", job.name, reason,
             f", slot {scheduled_for.isoformat()}" if scheduled_for else "")
    return item


def request(session: Session, kind: str, system_id: int, reason: str,
            store_id: int | None = None, now: dt.datetime | None = None) -> WorkItem | None:
    """Queue a run of the system's ``kind`` job now (e.g. replication after a snapshot).

    The job is made from the system's policy if the daemon has not yet. None when one is
    queued already or the policy implies no such job. Raises nothing for a race with a
    concurrent request: that one wins.
    """
    now = now or utcnow()
    # the job exists but for a system's first request: no savepoint for the common case
    job = active_job(session, kind, system_id, store_id)
    if job is None:
        try:
            with session.begin_nested():
                job = ensure_job(session, kind, system_id, now, store_id=store_id)
        except sa.exc.IntegrityError:
            job = ensure_job(session, kind, system_id, now, store_id=store_id)
    if job is None:
        return None
    return enqueue(session, job, reason, now=now)


# -- claiming -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A work item claimed by this daemon: what a worker needs to run it."""

    item_id: int
    run_id: int
    job_id: int
    job_name: str
    kind: str
    system_id: int | None
    system: str | None
    store_id: int | None
    store: str | None
    reason: str
    attempts: int
    resumed: bool
    params: dict[str, Any] = field(default_factory=dict)
    checkpoint: dict[str, Any] | None = None


def _due(now: dt.datetime):
    return sa.or_(
        sa.and_(WorkItem.state == "queued", WorkItem.not_before <= now),
        sa.and_(WorkItem.state == "running", WorkItem.lease_until < now),
    )


def claim(catalog: Catalog, daemon_id: str, lease: dt.timedelta,
          now: dt.datetime | None = None, max_attempts: int = MAX_ATTEMPTS) -> Claim | None:
    """Claim the oldest due item for ``daemon_id`` for ``lease``; None when none is due.

    Due: queued with ``not_before`` passed, or running with its lease lapsed; and no other
    item of the same job running under a live lease (one run of a job at a time: two
    replication passes of one system would copy everything twice). The claim
    sets the item running, creates its :class:`JobRun` on the first claim and resumes the
    same run on a later one. An item claimed ``max_attempts`` times already is failed
    for good instead (its run kept killing daemons, or they kept dying).
    """
    while True:
        when = now or utcnow()
        with catalog.session() as session:
            item = session.scalar(
                sa.select(WorkItem).where(_due(when), ~_job_running(when))
                .order_by(WorkItem.not_before, WorkItem.id)
                .limit(1).with_for_update(skip_locked=True))
            if item is None:
                return None
            job = session.get(Job, item.job_id)
            if item.attempts >= max_attempts:
                _finish(session, item, job, "failed", None,
                        f"abandoned after {item.attempts} claims whose daemons stopped "
                        "renewing their lease", when)
                continue
            resumed = item.run_id is not None
            item.state = "running"
            item.claimed_by = daemon_id
            item.lease_until = when + lease
            item.attempts += 1
            item.pending_key = None
            if item.run_id is None:
                run = JobRun(job_id=item.job_id, system_id=item.system_id,
                             store_id=item.store_id, started_at=when)
                session.add(run)
                session.flush()
                item.run_id = run.id
            system = (session.scalar(sa.select(System.name).where(System.id == item.system_id))
                      if item.system_id is not None else None)
            store = (session.scalar(sa.select(StoreRow.name).where(
                StoreRow.id == item.store_id)) if item.store_id is not None else None)
            return Claim(item_id=item.id, run_id=item.run_id, job_id=item.job_id,
                         job_name=job.name, kind=item.kind, system_id=item.system_id,
                         system=system, store_id=item.store_id, store=store,
                         reason=item.reason, attempts=item.attempts, resumed=resumed,
                         params=dict(item.params or {}),
                         checkpoint=dict(item.checkpoint) if item.checkpoint else None)


def _job_running(when: dt.datetime):
    """Another item of the same job runs under a live lease."""
    other = aliased(WorkItem)
    return sa.exists().where(other.job_id == WorkItem.job_id, other.id != WorkItem.id,
                             other.state == "running", other.lease_until >= when)


def heartbeat(catalog: Catalog, daemon_id: str, item_ids: Iterable[int],
              lease: dt.timedelta, now: dt.datetime | None = None) -> set[int]:
    """Renew ``daemon_id``'s leases on ``item_ids``; return the ids it still holds.

    An id missing from the answer was lost (its lease lapsed and another daemon claimed
    it, or it was finished elsewhere): its worker should stop.
    """
    ids = list(item_ids)
    if not ids:
        return set()
    now = now or utcnow()
    with catalog.session() as session:
        session.execute(sa.update(WorkItem).where(
            WorkItem.id.in_(ids), WorkItem.claimed_by == daemon_id,
            WorkItem.state == "running").values(lease_until=now + lease))
        return set(session.scalars(sa.select(WorkItem.id).where(
            WorkItem.id.in_(ids), WorkItem.claimed_by == daemon_id,
            WorkItem.state == "running")))


def save_checkpoint(catalog: Catalog, daemon_id: str, item_id: int,
                    checkpoint: dict[str, Any]) -> bool:
    """Record a job's own progress on its item; False if the item is no longer held."""
    with catalog.session() as session:
        changed = session.execute(sa.update(WorkItem).where(
            WorkItem.id == item_id, WorkItem.claimed_by == daemon_id,
            WorkItem.state == "running").values(checkpoint=checkpoint)).rowcount
    return bool(changed)


def _held(session: Session, item_id: int, daemon_id: str) -> WorkItem | None:
    item = session.scalar(sa.select(WorkItem).where(WorkItem.id == item_id)
                          .with_for_update())
    if item is None or item.state != "running" or item.claimed_by != daemon_id:
        return None
    return item


def _restore_pending_key(session: Session, item: WorkItem) -> None:
    key = pending_key(item.job_id)
    if session.scalar(sa.select(WorkItem.id).where(WorkItem.pending_key == key)) is None:
        item.pending_key = key


def _finish(session: Session, item: WorkItem, job: Job, outcome: str,
            bytes_processed: int | None, error: str | None, now: dt.datetime) -> None:
    item.state = "done" if outcome in ("succeeded", "partial") else "failed"
    item.finished_at = now
    item.lease_until = None
    item.pending_key = None
    run = session.get(JobRun, item.run_id) if item.run_id is not None else None
    if run is None:
        run = JobRun(job_id=item.job_id, system_id=item.system_id, store_id=item.store_id,
                     started_at=now)
        session.add(run)
        session.flush()
        item.run_id = run.id
    run.finished_at = now
    run.outcome = outcome
    run.bytes_processed = bytes_processed
    run.error = error
    if outcome == "succeeded":
        resolve_alert(session, "job_failed", system_id=item.system_id, store_id=item.store_id,
                      subject=job.name, now=now)
    else:
        raise_alert(session, "job_failed",
                    f"job {job.name} {outcome} after {item.attempts} attempt(s): "
                    f"{error or 'no reason given'}",
                    system_id=item.system_id, store_id=item.store_id, subject=job.name,
                    details={"job": job.name, "run_id": run.id, "outcome": outcome},
                    now=now)


def complete(catalog: Catalog, daemon_id: str, item_id: int, outcome: str,
             bytes_processed: int | None = None, error: str | None = None,
             now: dt.datetime | None = None, max_attempts: int = MAX_ATTEMPTS,
             retry: bool = True) -> str:
    """Record how a claimed item's run ended; return the item's new state.

    ``outcome`` is one of :data:`OUTCOMES`; ``error`` must already be masked (see
    :func:`one_line_error`). A run that did not succeed is queued again after
    :func:`retry_delay` while it has attempts left, unless ``retry`` is false (what it
    found will not change by trying again) (same run; the state returned is
    ``queued``); otherwise the item is ``done`` or ``failed`` and its run finished. Returns
    ``lost`` (and changes nothing) when ``daemon_id`` no longer holds the item. Raises
    ``ValueError`` for an unknown outcome.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
    now = now or utcnow()
    with catalog.session() as session:
        item = _held(session, item_id, daemon_id)
        if item is None:
            return "lost"
        job = session.get(Job, item.job_id)
        if retry and should_retry(outcome, item.attempts, max_attempts):
            delay = retry_delay(item.attempts)
            item.state = "queued"
            item.claimed_by = None
            item.lease_until = None
            item.not_before = now + delay
            _restore_pending_key(session, item)
            run = session.get(JobRun, item.run_id)
            if run is not None:
                run.error = error
                run.bytes_processed = bytes_processed
            log.warning("job %s %s (attempt %d of %d), retried in %ds: %s", job.name,
                        outcome, item.attempts, max_attempts, delay.total_seconds(),
                        error or "no reason given")
            return "queued"
        _finish(session, item, job, outcome, bytes_processed, error, now)
        return item.state


def release(catalog: Catalog, daemon_id: str, item_ids: Iterable[int],
            now: dt.datetime | None = None, not_before: dt.datetime | None = None) -> int:
    """Hand back items ``daemon_id`` holds but did not finish (a clean stop, or a system
    busy with a conflicting run): queued again (at once, or at ``not_before``), same run,
    and the claim not counted. Returns how many were released."""
    now = now or utcnow()
    released = 0
    with catalog.session() as session:
        for item_id in item_ids:
            item = _held(session, item_id, daemon_id)
            if item is None:
                continue
            item.state = "queued"
            item.claimed_by = None
            item.lease_until = None
            item.not_before = not_before or now
            item.attempts = max(item.attempts - 1, 0)
            _restore_pending_key(session, item)
            released += 1
    return released


def requeue_lapsed(session: Session, now: dt.datetime) -> int:
    """Queue again every running item whose lease lapsed (its daemon died); return how many.

    :func:`claim` takes such items directly too; this makes the queue show them as queued.
    Their run is kept, so the next claim resumes it.
    """
    items = list(session.scalars(sa.select(WorkItem).where(
        WorkItem.state == "running", WorkItem.lease_until < now)
        .with_for_update(skip_locked=True)))
    for item in items:
        log.warning("work item %d (%s): its daemon %s stopped renewing its lease; queued again",
                    item.id, item.kind, item.claimed_by)
        item.state = "queued"
        item.claimed_by = None
        item.lease_until = None
        item.not_before = now
    return len(items)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def expire_dead_local_claims(session: Session, hostname: str, now: dt.datetime,
                             alive: Callable[[int], bool] = pid_alive) -> int:
    """Let the leases of running items lapse now when their daemon ran on this host and
    its process is gone (``kill -9``, a crash); return how many.

    This only shortens the wait for the lease: another host's daemons are left to their
    leases, and a reused pid errs on the side of waiting.
    """
    rows = session.execute(
        sa.select(WorkItem.id, Daemon.pid)
        .join(Daemon, Daemon.id == WorkItem.claimed_by)
        .where(WorkItem.state == "running", WorkItem.lease_until > now,
               Daemon.hostname == hostname, Daemon.stopped_at.is_(None))).all()
    dead = [item_id for item_id, pid in rows if not alive(pid)]
    if dead:
        session.execute(sa.update(WorkItem).where(WorkItem.id.in_(dead))
                        .values(lease_until=now - _LAPSED))
        log.warning("%d work item(s) held by a daemon of this host that is gone: resumed "
                    "without waiting for their lease", len(dead))
    return len(dead)
