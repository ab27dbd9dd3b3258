"""What ``GET /metrics`` reports, read from the catalog at scrape time.

Several daemons share one catalog, so the catalog is the truth: every daemon reports the
same figures, and none is lost when one restarts. Each reader below is one grouped query
(systems' standing comes from :func:`drd.services.status.system_statuses`), so a scrape
stays cheap however many systems and snapshots the catalog holds. Two families read
tables that only grow, so a process keeps what it summed up of them
(:class:`ScrapeState`): finished job runs are counted once each, by id
(:class:`RunTally`), and the verification ledger is summed up at most every few minutes.
:func:`read_metrics` gathers it all into one :class:`MetricsReadout`; turning it into
Prometheus families is the API's job (:mod:`drd.api.routes.metrics`).
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drd.catalog import Catalog
from drd.catalog.models import Alert, Drill, Job, JobRun, Replica, Store, System
from drd.catalog.types import UTCDateTime, utcnow
from drd.services.status import (
    SystemStatus,
    ledger_coverage,
    policy_rules,
    system_statuses,
)
from drd.verification.select import Coverage, CoverageCounts, coverage_from_counts

JOB_DURATION_BUCKETS: tuple[float, ...] = (
    1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400)
"""Upper bounds (seconds) of ``drd_job_duration_seconds``'s buckets: from a check that
finds nothing to do to a day-long first replication."""


@dataclass(frozen=True)
class StoreReadout:
    """One store: its latest probe, its replicas' lag and its verification coverage.

    ``reachable`` and ``checked_at`` are None until the daemon first probes the store;
    ``coverage`` is None when the ledger tracks nothing on it.
    """

    name: str
    reachable: bool | None
    checked_at: dt.datetime | None
    lag_objects: int
    lag_bytes: int
    replicas_failing: int
    coverage: Coverage | None


@dataclass(frozen=True)
class DrillReadout:
    """The drills of one system from one store: the newest success, the newest verdict."""

    system: str
    store: str
    last_success_at: dt.datetime | None
    last_finished_at: dt.datetime | None
    last_passed: bool | None
    last_rto_seconds: float | None


@dataclass(frozen=True)
class JobDurations:
    """Finished runs of one job kind: how many, their total duration, and per bucket of
    :data:`JOB_DURATION_BUCKETS` how many took at most that long (cumulative)."""

    job: str
    count: int
    sum_seconds: float
    buckets: tuple[int, ...]


@dataclass(frozen=True)
class MetricsReadout:
    """Everything one scrape reports, read at ``now``."""

    now: dt.datetime
    systems: list[SystemStatus]
    stores: list[StoreReadout]
    drills: list[DrillReadout]
    job_runs: dict[tuple[str, str], int]
    job_durations: list[JobDurations]
    open_alerts: dict[tuple[str, str], int]


def read_metrics(catalog: Catalog, now: dt.datetime | None = None) -> MetricsReadout:
    """Read every metric from ``catalog`` at ``now``.

    Retired systems are left out. Raises :class:`~drd.errors.OperationError` when the
    catalog cannot be reached.
    """
    now = now or utcnow()
    systems = [status for status in system_statuses(catalog, now)
               if status.status != "retired"]
    with catalog.read_session() as session:
        state = scrape_state(catalog)
        coverage = {store_id: coverage_from_counts(parts, now)
                    for store_id, parts in state.ledger(session, now).items()}
        lag = replication_lag(session)
        stores = [StoreReadout(name=name, reachable=reachable, checked_at=checked_at,
                               lag_objects=lag.get(store_id, (0, 0, 0))[0],
                               lag_bytes=lag.get(store_id, (0, 0, 0))[1],
                               replicas_failing=lag.get(store_id, (0, 0, 0))[2],
                               coverage=coverage.get(store_id))
                  for store_id, name, reachable, checked_at in session.execute(
                      sa.select(Store.id, Store.name, Store.reachable, Store.checked_at)
                      .order_by(Store.name))]
        runs = state.runs.read(session, now)
        return MetricsReadout(now=now, systems=systems, stores=stores,
                              drills=drill_results(session), job_runs=dict(runs.runs),
                              job_durations=runs.durations(),
                              open_alerts=open_alert_counts(session))


class ScrapeState:
    """What one process keeps between scrapes of one catalog (:func:`scrape_state`): the
    tally of finished job runs, and the verification ledger summed up per store, which
    is read again once ``LEDGER_MAX_AGE`` old (it is the one family whose cost grows with
    every object stored, and verification moves it by the day, not by the minute)."""

    LEDGER_MAX_AGE = dt.timedelta(minutes=5)

    def __init__(self) -> None:
        self.runs = RunTally()
        self._ledger: dict[int, list[CoverageCounts]] = {}
        self._ledger_at: dt.datetime | None = None
        self._lock = threading.Lock()

    def ledger(self, session: Session, now: dt.datetime) -> dict[int, list[CoverageCounts]]:
        """:func:`ledger_counts`, read at most ``LEDGER_MAX_AGE`` before ``now``."""
        with self._lock:
            if (self._ledger_at is None or now < self._ledger_at
                    or now - self._ledger_at >= self.LEDGER_MAX_AGE):
                self._ledger, self._ledger_at = ledger_counts(session, now), now
            return self._ledger


_states: weakref.WeakKeyDictionary[Catalog, ScrapeState] = weakref.WeakKeyDictionary()
_states_lock = threading.Lock()


def scrape_state(catalog: Catalog) -> ScrapeState:
    """This process's :class:`ScrapeState` of ``catalog``."""
    with _states_lock:
        state = _states.get(catalog)
        if state is None:
            state = _states[catalog] = ScrapeState()
        return state


def replication_lag(session: Session) -> dict[int, tuple[int, int, int]]:
    """Per store id: the objects and bytes its replicas lacked after their last pass
    (summed over systems; a replica never measured counts 0), and how many replicas'
    last pass ended with an error."""
    rows = session.execute(
        sa.select(Replica.store_id,
                  sa.func.coalesce(sa.func.sum(Replica.lag_objects), 0),
                  sa.func.coalesce(sa.func.sum(Replica.lag_bytes), 0),
                  sa.func.count(Replica.last_error))
        .group_by(Replica.store_id))
    return {store_id: (int(objects), int(size), int(failing))
            for store_id, objects, size, failing in rows}


def ledger_counts(session: Session, now: dt.datetime) -> dict[int, list[CoverageCounts]]:
    """Per store id: the verification ledger summed up per system by the database
    (:func:`drd.services.status.ledger_coverage`), for
    :func:`drd.verification.select.coverage_from_counts` to turn into the store's
    coverage. Stores the ledger knows nothing of are absent."""
    parts: dict[int, list[CoverageCounts]] = {}
    for (_, store_id), counts in ledger_coverage(session, policy_rules(session), now).items():
        parts.setdefault(store_id, []).append(counts)
    return parts


def drill_results(session: Session) -> list[DrillReadout]:
    """Per (system, store) drilled: the newest passing drill's end, and the newest
    finished drill's verdict and RTO; by system, then store. Drills still running are
    left out."""
    pair = (Drill.system_id, Drill.store_id)
    ranked = (sa.select(
        Drill.system_id, Drill.store_id, Drill.finished_at, Drill.passed, Drill.rto_seconds,
        sa.func.max(sa.case((Drill.passed.is_(True), Drill.finished_at)), type_=UTCDateTime())
        .over(partition_by=pair).label("last_success_at"),
        sa.func.row_number().over(partition_by=pair,
                                  order_by=(Drill.finished_at.desc(), Drill.id.desc()))
        .label("rank"))
        .where(Drill.finished_at.is_not(None)).subquery())
    rows = session.execute(
        sa.select(System.name, Store.name, ranked.c.last_success_at, ranked.c.finished_at,
                  ranked.c.passed, ranked.c.rto_seconds)
        .join(System, System.id == ranked.c.system_id)
        .join(Store, Store.id == ranked.c.store_id)
        .where(ranked.c.rank == 1)
        .order_by(System.name, Store.name))
    return [DrillReadout(system=system, store=store, last_success_at=success,
                         last_finished_at=finished_at, last_passed=passed,
                         last_rto_seconds=rto)
            for system, store, success, finished_at, passed, rto in rows]


def seconds_between(start, end, dialect: str):
    """A SQL expression: seconds from ``start`` to ``end`` (timestamps), for ``dialect``."""
    if dialect == "sqlite":
        return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0
    return sa.extract("epoch", end - start)


@dataclass
class RunCounts:
    """Finished runs summed up: per (job kind, outcome) how many; per kind, how many fell
    in each bucket of :data:`JOB_DURATION_BUCKETS` (not cumulative; the last one past
    them all) and their total duration."""

    runs: dict[tuple[str, str], int] = field(default_factory=dict)
    per_bucket: dict[str, list[int]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, rows: Iterable[tuple[str, str, int, int, float]]) -> RunCounts:
        """Add ``(kind, outcome, bucket index, runs, seconds)`` rows; return self."""
        for kind, outcome, bucket, runs, seconds in rows:
            self.runs[(kind, outcome)] = self.runs.get((kind, outcome), 0) + int(runs)
            counts = self.per_bucket.setdefault(kind, [0] * (len(JOB_DURATION_BUCKETS) + 1))
            counts[int(bucket)] += int(runs)
            self.seconds[kind] = self.seconds.get(kind, 0.0) + float(seconds or 0)
        return self

    def merge(self, other: RunCounts) -> RunCounts:
        """Add ``other``'s counts to these; return self."""
        for key, runs in other.runs.items():
            self.runs[key] = self.runs.get(key, 0) + runs
        for kind, counts in other.per_bucket.items():
            mine = self.per_bucket.setdefault(kind, [0] * len(counts))
            self.per_bucket[kind] = [a + b for a, b in zip(mine, counts, strict=True)]
        for kind, seconds in other.seconds.items():
            self.seconds[kind] = self.seconds.get(kind, 0.0) + seconds
        return self

    def durations(self) -> list[JobDurations]:
        """Per job kind: the histogram with cumulative buckets."""
        result = []
        for kind in sorted(self.per_bucket):
            counts = self.per_bucket[kind]
            result.append(JobDurations(job=kind, count=sum(counts),
                                       sum_seconds=self.seconds.get(kind, 0.0),
                                       buckets=tuple(itertools.accumulate(counts[:-1]))))
        return result


def count_runs(session: Session, where: Any,
               bounds: Sequence[float] = JOB_DURATION_BUCKETS) -> RunCounts:
    """Finished runs matching ``where`` (a condition on ``JobRun``) summed up by the
    database: grouped by kind, outcome and duration bucket (a negative duration, from a
    skewed clock, counts as zero)."""
    elapsed = seconds_between(JobRun.started_at, JobRun.finished_at,
                              session.get_bind().dialect.name)
    seconds = sa.case((elapsed < 0, 0.0), else_=elapsed)
    bucket = sa.case(*((seconds <= bound, index) for index, bound in enumerate(bounds)),
                     else_=len(bounds))
    runs = (sa.select(Job.kind.label("kind"), JobRun.outcome.label("outcome"),
                      bucket.label("bucket"), seconds.label("seconds"))
            .join(Job, Job.id == JobRun.job_id)
            .where(JobRun.finished_at.is_not(None), JobRun.outcome.is_not(None), where)
            .subquery())
    return RunCounts().add(session.execute(
        sa.select(runs.c.kind, runs.c.outcome, runs.c.bucket, sa.func.count(),
                  sa.func.sum(runs.c.seconds))
        .group_by(runs.c.kind, runs.c.outcome, runs.c.bucket)))


class RunTally:
    """Finished job runs, counted once each: ``job_runs`` only grows, so each scrape
    sums up only the runs it has not seen, not the whole table.

    Runs are taken in id order up to the newest one that started ``SETTLE_AFTER`` ago
    (a row inserted by a transaction still open may take a lower id than one already
    visible, but not that much lower). A run still going when its id was taken is kept
    and looked at again on each scrape until it finishes, or is dropped once it started
    ``ABANDONED_AFTER`` ago (a daemon died with it; if it ever finishes it is not
    counted). Runs above the settled id are summed up on each scrape and not kept.

    One per catalog and process (:class:`ScrapeState`); safe across threads.
    """

    SETTLE_AFTER = dt.timedelta(minutes=10)
    ABANDONED_AFTER = dt.timedelta(days=7)

    def __init__(self) -> None:
        self.settled_id = 0
        self.open_ids: set[int] = set()
        self.counts = RunCounts()
        self._lock = threading.Lock()

    def read(self, session: Session, now: dt.datetime) -> RunCounts:
        """Every finished run so far, at ``now``."""
        with self._lock:
            self._settle(session, now)
            return RunCounts().merge(self.counts).merge(
                count_runs(session, JobRun.id > self.settled_id))

    def _settle(self, session: Session, now: dt.datetime) -> None:
        if self.open_ids:
            finished = sorted(session.scalars(sa.select(JobRun.id).where(
                JobRun.id.in_(sorted(self.open_ids)), JobRun.finished_at.is_not(None),
                JobRun.outcome.is_not(None))))
            if finished:
                self.counts.merge(count_runs(session, JobRun.id.in_(finished)))
            abandoned = set(session.scalars(sa.select(JobRun.id).where(
                JobRun.id.in_(sorted(self.open_ids)),
                JobRun.started_at < now - self.ABANDONED_AFTER)))
            self.open_ids -= set(finished) | abandoned
        settle_to = session.scalar(
            sa.select(JobRun.id).where(JobRun.id > self.settled_id,
                                       JobRun.started_at < now - self.SETTLE_AFTER)
            .order_by(JobRun.id.desc()).limit(1))
        if settle_to is None:
            return
        span = sa.and_(JobRun.id > self.settled_id, JobRun.id <= settle_to)
        self.counts.merge(count_runs(session, span))
        self.open_ids |= set(session.scalars(sa.select(JobRun.id).where(
            span, sa.or_(JobRun.finished_at.is_(None), JobRun.outcome.is_(None)),
            JobRun.started_at >= now - self.ABANDONED_AFTER)))
        self.settled_id = settle_to


def open_alert_counts(session: Session) -> dict[tuple[str, str], int]:
    """Open (unresolved) alerts per (kind, severity)."""
    rows = session.execute(
        sa.select(Alert.kind, Alert.severity, sa.func.count())
        .where(Alert.resolved_at.is_(None))
        .group_by(Alert.kind, Alert.severity))
    return {(kind, severity): int(count) for kind, severity, count in rows}
