"""What the dashboard at ``/`` shows, shaped for one caller: :func:`dashboard`.

The decisions are pure and unit-tested: a system's RPO state (:func:`rpo_state`), the
order that puts what needs a person first (:func:`attention_order`), which page of a
long list to show (:func:`paginate`), and whether a store is up (:func:`store_state`).
The catalog is read by bounded queries: however many systems, failures or drills the
centre holds, one page of the dashboard lists at most :data:`SYSTEMS_PER_PAGE` systems,
:data:`RECENT_FAILURES` failures and :data:`LATEST_DRILLS` drills.

What a caller sees follows its token (:class:`~drd.services.tokens.Principal`): an owner
only its departments' and systems' rows, and no stores (shared infrastructure, as in the
API); operators and admins everything.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from drd.catalog import Catalog
from drd.catalog.models import Alert, Department, Drill, Job, JobRun, Replica, System
from drd.catalog.models import Store as StoreRow
from drd.catalog.types import utcnow
from drd.services.status import SystemStatus, store_coverage, system_statuses
from drd.services.tokens import Principal

SYSTEMS_PER_PAGE = 50
RECENT_FAILURES = 20
LATEST_DRILLS = 10
FAILURE_MESSAGE_CHARACTERS = 300

RPO_STATES = ("late", "no policy", "pending", "ok")
"""In the order the systems table shows them: what needs a person first."""


# --- pure decisions ----------------------------------------------------------------------


def rpo_state(status: SystemStatus) -> str:
    """``late``, ``no policy``, ``pending`` or ``ok`` for one system.

    Late wins over everything (only an enrolled system with an RPO can be late); a
    system that is not enrolled (yet) is ``pending``; an enrolled one whose policy sets
    no RPO cannot be judged (``no policy``).
    """
    if status.late:
        return "late"
    if status.status != "enrolled":
        return "pending"
    if status.policy is None or status.rpo is None:
        return "no policy"
    return "ok"


def attention_order(statuses: Iterable[SystemStatus]) -> list[SystemStatus]:
    """``statuses`` with late systems first, then those without a policy, pending ones,
    and those within their RPO; the oldest backup first within late, then by name."""
    def key(status: SystemStatus) -> tuple:
        age = status.age.total_seconds() if status.age is not None else math.inf
        return (RPO_STATES.index(rpo_state(status)),
                -age if rpo_state(status) == "late" else 0, status.system)
    return sorted(statuses, key=key)


@dataclass(frozen=True)
class Page:
    """One page of a list: ``number`` (from 1) of ``pages``, ``total`` items in all."""

    items: list[Any]
    number: int
    pages: int
    total: int

    @property
    def previous(self) -> int | None:
        return self.number - 1 if self.number > 1 else None

    @property
    def next(self) -> int | None:
        return self.number + 1 if self.number < self.pages else None


def paginate(items: Sequence[Any], page: int, size: int) -> Page:
    """Page ``page`` (from 1) of ``items``, ``size`` to a page; a page past the end is
    the last page, and there is always one page, empty or not."""
    pages = max(1, math.ceil(len(items) / size))
    number = min(max(page, 1), pages)
    start = (number - 1) * size
    return Page(items=list(items[start:start + size]), number=number, pages=pages,
                total=len(items))


def store_state(reachable: bool | None) -> str:
    """``up``, ``down``, or ``not probed yet`` (the probe has not looked at it)."""
    if reachable is None:
        return "not probed yet"
    return "up" if reachable else "down"


# --- views -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SystemLine:
    """A row of the systems table."""

    system: str
    department: str
    policy: str | None
    state: str
    last_backup_at: dt.datetime | None
    age_seconds: float | None
    rpo_seconds: float | None


@dataclass(frozen=True)
class StoreLine:
    """A row of the stores table; ``coverage`` is a ratio 0..1, None when untracked."""

    name: str
    kind: str
    state: str
    checked_at: dt.datetime | None
    check_error: str | None
    lag_objects: int | None
    lag_bytes: int | None
    coverage: float | None
    oldest_unverified_seconds: float | None


@dataclass(frozen=True)
class Failure:
    """A failed job run or an open alert."""

    at: dt.datetime
    source: str  # "job" or "alert"
    kind: str
    severity: str
    system: str | None
    store: str | None
    message: str


@dataclass(frozen=True)
class DrillLine:
    id: int
    system: str
    store: str
    verdict: str  # passed, FAILED, running
    rto_seconds: float | None
    started_at: dt.datetime
    finished_at: dt.datetime | None


@dataclass(frozen=True)
class Dashboard:
    """Everything the page shows, already scoped to the caller."""

    caller: Principal
    refreshed_at: dt.datetime
    counts: dict[str, int]
    systems: Page
    stores: list[StoreLine] | None  # None: not for this caller
    failures: list[Failure]
    drills: list[DrillLine]


def _visible(principal: Principal) -> sa.ColumnElement[bool]:
    """The SQL form of :meth:`Principal.may_read` over ``System`` joined to
    ``Department``."""
    if principal.reads_everything:
        return sa.true()
    clauses = []
    if principal.role == "owner" and principal.departments:
        clauses.append(Department.name.in_(list(principal.departments)))
    if principal.role in ("owner", "agent") and principal.systems:
        clauses.append(System.name.in_(list(principal.systems)))
    return sa.or_(*clauses) if clauses else sa.false()


def system_lines(statuses: Iterable[SystemStatus]) -> list[SystemLine]:
    return [SystemLine(system=s.system, department=s.department, policy=s.policy,
                       state=rpo_state(s), last_backup_at=s.last_backup_at,
                       age_seconds=s.age.total_seconds() if s.age is not None else None,
                       rpo_seconds=s.rpo.total_seconds() if s.rpo is not None else None)
            for s in statuses]


def store_lines(catalog: Catalog, now: dt.datetime) -> list[StoreLine]:
    """Every registered store, by name: its probe's verdict, replication lag (summed
    over its systems) and verification coverage."""
    coverage = {entry["store"]: entry for entry in store_coverage(catalog, now)}
    with catalog.session() as session:
        lag = {store_id: (objects, size) for store_id, objects, size in session.execute(
            sa.select(Replica.store_id, sa.func.sum(Replica.lag_objects),
                      sa.func.sum(Replica.lag_bytes)).group_by(Replica.store_id))}
        rows = session.execute(sa.select(StoreRow.id, StoreRow.name, StoreRow.kind,
                                         StoreRow.reachable, StoreRow.checked_at,
                                         StoreRow.check_error).order_by(StoreRow.name)).all()
    lines = []
    for store_id, name, kind, reachable, checked_at, check_error in rows:
        objects, size = lag.get(store_id, (None, None))
        covered = coverage.get(name, {})
        lines.append(StoreLine(
            name=name, kind=kind, state=store_state(reachable), checked_at=checked_at,
            check_error=check_error,
            lag_objects=int(objects) if objects is not None else None,
            lag_bytes=int(size) if size is not None else None,
            coverage=covered.get("coverage"),
            oldest_unverified_seconds=covered.get("oldest_unverified_seconds")))
    return lines


def recent_failures(catalog: Catalog, principal: Principal,
                    limit: int = RECENT_FAILURES) -> list[Failure]:
    """The newest ``limit`` failed job runs and open alerts the caller may see, newest
    first. An owner sees no failure that names no system of its own."""
    visible = _visible(principal)
    with catalog.session() as session:
        runs = session.execute(
            sa.select(JobRun.finished_at, JobRun.started_at, Job.kind, JobRun.error,
                      System.name, StoreRow.name)
            .join(Job, Job.id == JobRun.job_id)
            .outerjoin(System, System.id == JobRun.system_id)
            .outerjoin(Department, Department.id == System.department_id)
            .outerjoin(StoreRow, StoreRow.id == JobRun.store_id)
            .where(JobRun.outcome == "failed", visible)
            .order_by(JobRun.started_at.desc(), JobRun.id.desc()).limit(limit)).all()
        alerts = session.execute(
            sa.select(Alert.last_seen_at, Alert.kind, Alert.severity, Alert.message,
                      System.name, StoreRow.name)
            .outerjoin(System, System.id == Alert.system_id)
            .outerjoin(Department, Department.id == System.department_id)
            .outerjoin(StoreRow, StoreRow.id == Alert.store_id)
            .where(Alert.resolved_at.is_(None), visible)
            .order_by(Alert.last_seen_at.desc(), Alert.id.desc()).limit(limit)).all()
    failures = [Failure(at=finished or started, source="job", kind=kind, severity="critical",
                        system=system, store=store,
                        message=_one_line(error or f"the {kind} job failed"))
                for finished, started, kind, error, system, store in runs]
    failures += [Failure(at=seen, source="alert", kind=kind, severity=severity,
                         system=system, store=store, message=_one_line(message))
                 for seen, kind, severity, message, system, store in alerts]
    failures.sort(key=lambda failure: failure.at, reverse=True)
    return failures[:limit]


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    if len(line) > FAILURE_MESSAGE_CHARACTERS:
        return line[:FAILURE_MESSAGE_CHARACTERS - 1] + "…"
    return line


def latest_drills(catalog: Catalog, principal: Principal,
                  limit: int = LATEST_DRILLS) -> list[DrillLine]:
    """The newest ``limit`` restore drills the caller may see, newest first."""
    with catalog.session() as session:
        rows = session.execute(
            sa.select(Drill.id, System.name, StoreRow.name, Drill.passed, Drill.rto_seconds,
                      Drill.started_at, Drill.finished_at)
            .join(System, System.id == Drill.system_id)
            .join(Department, Department.id == System.department_id)
            .join(StoreRow, StoreRow.id == Drill.store_id)
            .where(_visible(principal))
            .order_by(Drill.started_at.desc(), Drill.id.desc()).limit(limit)).all()
    return [DrillLine(id=drill_id, system=system, store=store,
                      verdict={True: "passed", False: "FAILED", None: "running"}[passed],
                      rto_seconds=rto, started_at=started, finished_at=finished)
            for drill_id, system, store, passed, rto, started, finished in rows]


def dashboard(catalog: Catalog, principal: Principal, *, page: int = 1,
              now: dt.datetime | None = None,
              per_page: int = SYSTEMS_PER_PAGE) -> Dashboard:
    """The dashboard for ``principal`` at ``now``: page ``page`` of its systems (late
    ones first, :func:`attention_order`), the stores (operators and admins), its recent
    failures and latest drills, and counts by RPO state."""
    now = now or utcnow()
    statuses = [status for status in system_statuses(catalog, now)
                if principal.may_read(status.department, status.system)]
    ordered = attention_order(statuses)
    counts = dict.fromkeys(RPO_STATES, 0)
    for status in ordered:
        counts[rpo_state(status)] += 1
    counts["systems"] = len(ordered)
    return Dashboard(
        caller=principal, refreshed_at=now, counts=counts,
        systems=_system_page(ordered, page, per_page),
        stores=store_lines(catalog, now) if principal.reads_everything else None,
        failures=recent_failures(catalog, principal),
        drills=latest_drills(catalog, principal))


def _system_page(ordered: Sequence[SystemStatus], page: int, per_page: int) -> Page:
    chosen = paginate(ordered, page, per_page)
    return Page(items=system_lines(chosen.items), number=chosen.number, pages=chosen.pages,
                total=chosen.total)
