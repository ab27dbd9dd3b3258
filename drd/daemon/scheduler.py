"""The leader's scheduler: APScheduler 3 queues each job's slots in the work queue.

Only the leader schedules. When a daemon becomes leader, :meth:`Scheduler.start`:

1. syncs the jobs from the applied policies (:func:`drd.daemon.jobs.sync_jobs`);
2. catches up: a job whose ``next_run_at`` passed while no daemon scheduled it is queued
   once, for its latest missed slot, and its ``next_run_at`` moves to the next slot
   (:func:`drd.daemon.jobs.catch_up`);
3. gives APScheduler (a ``BackgroundScheduler`` in UTC) one job per catalog job, with its
   cron trigger. Each firing queues the slot (``scheduled_for`` = the fire time) and
   advances ``next_run_at``.

An interval job re-does 1-3 every ``sync_seconds`` (so ``drd policy apply`` takes effect
without a restart, and a firing APScheduler missed is caught up) and queues again the
items whose daemon died (lapsed leases, or at once for a daemon of this host whose
process is gone). A slot is queued once whatever happens
(``UniqueConstraint(job_id, scheduled_for)``): a leader that restarts, or a new leader
that repeats what the old one did just before dying, neither loses nor doubles a run.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
from collections.abc import Callable

import sqlalchemy as sa
from apscheduler.schedulers.background import BackgroundScheduler

from drd.catalog import Catalog
from drd.catalog.models import Job
from drd.catalog.types import utcnow
from drd.daemon.jobs import catch_up, last_fire, next_fire, sync_jobs
from drd.daemon.queue import (
    enqueue,
    expire_dead_local_claims,
    one_line_error,
    requeue_lapsed,
)
from drd.errors import DrdError
from policies.cron import cron_trigger

log = logging.getLogger(__name__)

SYNC_SECONDS = 30.0
SYNC_JOB_ID = "drd-sync"


def _aps_id(job_id: int) -> str:
    return f"job-{job_id}"


class Scheduler:
    """The leader's scheduling of the catalog's jobs; :meth:`start` on becoming leader,
    :meth:`stop` on losing leadership or stopping. ``clock`` is for tests."""

    def __init__(self, catalog: Catalog, sync_seconds: float = SYNC_SECONDS,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.catalog = catalog
        self.sync_seconds = sync_seconds
        self.clock = clock
        self._scheduler: BackgroundScheduler | None = None
        self._schedules: dict[int, str] = {}
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._scheduler is not None

    def start(self) -> None:
        """Sync, catch up and start scheduling. Database trouble during the first sync is
        logged; the interval job tries again."""
        with self._lock:
            if self._scheduler is not None:
                return
            scheduler = BackgroundScheduler(
                timezone=dt.UTC,
                job_defaults={"coalesce": True, "max_instances": 1,
                              "misfire_grace_time": None})
            self._scheduler = scheduler
            self._schedules = {}
            scheduler.add_job(self.sync, "interval", seconds=self.sync_seconds,
                              id=SYNC_JOB_ID, name="sync jobs from policies")
            scheduler.start()
        self.sync()

    def stop(self) -> None:
        """Stop scheduling (queued work stays queued)."""
        with self._lock:
            scheduler, self._scheduler = self._scheduler, None
            self._schedules = {}
        if scheduler is not None:
            scheduler.shutdown(wait=False)

    def sync(self) -> None:
        """Sync jobs from policies, catch up missed slots, requeue lapsed leases, and make
        APScheduler's jobs match the catalog's."""
        try:
            schedules = self.sync_once(self.clock())
        except DrdError as error:
            log.warning("cannot sync the jobs from the catalog: %s", one_line_error(error))
            return
        except sa.exc.SQLAlchemyError as error:
            # e.g. a job created concurrently by a snapshot report: the next sync is clean
            log.warning("jobs not synced this time: %s", one_line_error(error))
            return
        self._apply(schedules)

    def sync_once(self, now: dt.datetime) -> dict[int, str]:
        """One sync at ``now``; return the active jobs' schedules by job id."""
        schedules: dict[int, str] = {}
        with self.catalog.session() as session:
            sync_jobs(session, now)
            expire_dead_local_claims(session, socket.gethostname()[:200], now)
            requeue_lapsed(session, now)
            for job in session.scalars(sa.select(Job).where(Job.active.is_(True),
                                                            Job.schedule.is_not(None))
                                       .order_by(Job.id)):
                try:
                    decision = catch_up(job.schedule, job.next_run_at, now)
                except ValueError as error:
                    log.warning("job %s: schedule %r cannot be used: %s", job.name,
                                job.schedule, error)
                    continue
                if decision.slot is not None:
                    enqueue(session, job, "catch-up", scheduled_for=decision.slot, now=now)
                job.next_run_at = decision.next_run_at
                schedules[job.id] = job.schedule
        return schedules

    def _apply(self, schedules: dict[int, str]) -> None:
        with self._lock:
            scheduler = self._scheduler
            if scheduler is None:
                return
            for job_id, schedule in schedules.items():
                if self._schedules.get(job_id) == schedule:
                    continue
                scheduler.add_job(self.fire, cron_trigger(schedule), args=(job_id,),
                                  id=_aps_id(job_id), name=f"catalog job {job_id}",
                                  replace_existing=True)
                self._schedules[job_id] = schedule
            for job_id in set(self._schedules) - set(schedules):
                scheduler.remove_job(_aps_id(job_id))
                del self._schedules[job_id]

    def fire(self, job_id: int) -> None:
        """APScheduler's function for one catalog job: queue the slot that just came."""
        try:
            self.fire_at(job_id, self.clock())
        except (DrdError, sa.exc.SQLAlchemyError) as error:
            log.warning("cannot queue job %d: %s (the next sync catches it up)", job_id,
                        one_line_error(error))

    def fire_at(self, job_id: int, now: dt.datetime) -> bool:
        """Queue job ``job_id``'s latest slot at or before ``now``; True when queued."""
        with self.catalog.session() as session:
            job = session.get(Job, job_id)
            if job is None or not job.active or job.schedule is None:
                return False
            slot = last_fire(job.schedule, now, since=now - dt.timedelta(hours=1))
            if slot is None:
                return False
            item = enqueue(session, job, "scheduled", scheduled_for=slot, now=now)
            job.next_run_at = next_fire(job.schedule, now)
            return item is not None
