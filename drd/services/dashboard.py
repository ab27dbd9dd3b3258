"""What the dashboard at ``/`` shows, shaped for one caller: :func:`dashboard`.

It is built from the read API's views (:mod:`drd.services.views`), so that the page and
``/v1`` agree on what a token may see (:func:`~drd.services.views.visible_systems`), on
a store's state and on every figure:

- the counts are the read API's status counts, and the late systems (shown first, the
  oldest backup at the top) a list computed like them; both are kept by the app's read
  cache (:class:`~drd.services.views.SummaryCache`), so a page load does not judge every
  system nor sum the verification ledger (the page refreshes every minute);
- the systems table is a keyset page of :func:`~drd.services.views.list_systems` (by
  name, :data:`SYSTEMS_PER_PAGE` a page), the stores :func:`~drd.services.views.list_stores`
  (for operators and admins only: shared infrastructure, as in the API);
- the recent failures and latest drills are bounded queries of their own
  (:data:`RECENT_FAILURES`, :data:`LATEST_DRILLS`).

The decisions are pure and unit-tested: a system's RPO state (:func:`rpo_state`) and the
order that puts the most urgent late system first (:func:`attention_order`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from drd.catalog import Catalog
from drd.catalog.models import Alert, Department, Drill, Job, JobRun, System
from drd.catalog.models import Store as StoreRow
from drd.catalog.types import utcnow
from drd.secrets import mask
from drd.services import status as status_rules
from drd.services import views
from drd.services.paging import Page
from drd.services.status import PolicyRules
from drd.services.tokens import Principal

SYSTEMS_PER_PAGE = 50
LATE_SHOWN = 50
STORES_SHOWN = 200
RECENT_FAILURES = 20
LATEST_DRILLS = 10
FAILURE_MESSAGE_CHARACTERS = 300

RPO_STATES = ("late", "no policy", "pending", "ok")
"""In the order of urgency: what needs a person first."""


# --- pure decisions ----------------------------------------------------------------------


def rpo_state(system: views.SystemSummary) -> str:
    """``late``, ``no policy``, ``pending`` or ``ok`` for one system.

    Late wins over everything (only an enrolled system with an RPO can be late); a
    system that is not enrolled (yet) is ``pending``; an enrolled one whose policy sets
    no RPO cannot be judged (``no policy``).
    """
    if system.late:
        return "late"
    if system.status != "enrolled":
        return "pending"
    if system.policy is None or system.rpo_seconds is None:
        return "no policy"
    return "ok"


# --- views -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SystemLine:
    """A row of a systems table."""

    system: str
    department: str
    policy: str | None
    state: str
    last_backup_at: dt.datetime | None
    age_seconds: float | None
    rpo_seconds: float | None


def attention_order(lines: Iterable[SystemLine]) -> list[SystemLine]:
    """``lines`` by :data:`RPO_STATES` (late first); within late, the oldest backup
    first (none at all before any); then by name."""
    def key(line: SystemLine) -> tuple:
        age = line.age_seconds if line.age_seconds is not None else math.inf
        return (RPO_STATES.index(line.state), -age if line.state == "late" else 0,
                line.system)
    return sorted(lines, key=key)


def system_line(system: views.SystemSummary) -> SystemLine:
    return SystemLine(system=system.name, department=system.department, policy=system.policy,
                      state=rpo_state(system),
                      last_backup_at=(system.last_good_snapshot.time
                                      if system.last_good_snapshot else None),
                      age_seconds=system.age_seconds, rpo_seconds=system.rpo_seconds)


@dataclass(frozen=True)
class LateSystems:
    """The late systems a caller may see: the most urgent :data:`LATE_SHOWN` of them
    (:func:`attention_order`) and how many there are."""

    lines: list[SystemLine]
    total: int


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
    counts: views.StatusCounts
    counted_at: dt.datetime
    late: LateSystems
    systems: Page[SystemLine]
    stores: Page[views.StoreView] | None  # None: not for this caller
    failures: list[Failure]
    drills: list[DrillLine]


def late_systems(catalog: Catalog, principal: Principal, now: dt.datetime) -> LateSystems:
    """The late systems ``principal`` may see at ``now`` (judged as the read API's
    status counts judge them: :func:`drd.services.status.assess` on each enrolled
    system's newest good snapshot, one query per call)."""
    where = sa.and_(views.visible_systems(principal), System.status == "enrolled")
    with catalog.read_session() as session:
        rules = status_rules.policy_rules(session)
        newest = status_rules.newest_good_snapshots(session, rules, where)
        lines = []
        for row in session.execute(
                sa.select(System.id, System.name, Department.name.label("department"),
                          System.policy_id, System.enrolled_at)
                .join(Department, Department.id == System.department_id).where(where)):
            policy = rules.get(row.policy_id, PolicyRules())
            good = newest.get(row.id)
            standing = status_rules.assess(status="enrolled",
                                           last_backup_at=good[2] if good else None,
                                           enrolled_at=row.enrolled_at, rpo=policy.rpo,
                                           now=now)
            if standing.late:
                lines.append(SystemLine(
                    system=row.name, department=row.department, policy=policy.name,
                    state="late", last_backup_at=good[2] if good else None,
                    age_seconds=(standing.age.total_seconds()
                                 if standing.age is not None else None),
                    rpo_seconds=policy.rpo.total_seconds() if policy.rpo else None))
    return LateSystems(lines=attention_order(lines)[:LATE_SHOWN], total=len(lines))


def recent_failures(catalog: Catalog, principal: Principal,
                    limit: int = RECENT_FAILURES) -> list[Failure]:
    """The newest ``limit`` failed job runs and open alerts the caller may see, newest
    first. An owner sees no failure that names no system of its own."""
    visible = views.visible_systems(principal)
    with catalog.read_session() as session:
        runs = session.execute(
            sa.select(JobRun.finished_at, JobRun.started_at, Job.kind, JobRun.error,
                      System.name, StoreRow.name)
            .join(Job, Job.id == JobRun.job_id)
            .outerjoin(System, System.id == JobRun.system_id)
            .outerjoin(StoreRow, StoreRow.id == JobRun.store_id)
            .where(JobRun.outcome == "failed", visible)
            .order_by(JobRun.started_at.desc(), JobRun.id.desc()).limit(limit)).all()
        alerts = session.execute(
            sa.select(Alert.last_seen_at, Alert.kind, Alert.severity, Alert.message,
                      System.name, StoreRow.name)
            .outerjoin(System, System.id == Alert.system_id)
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
    """``text`` on one line, cut short, with URL passwords masked (restic's errors
    quote repository URLs)."""
    line = " ".join(mask(text).split())
    if len(line) > FAILURE_MESSAGE_CHARACTERS:
        return line[:FAILURE_MESSAGE_CHARACTERS - 1] + "…"
    return line


def latest_drills(catalog: Catalog, principal: Principal,
                  limit: int = LATEST_DRILLS) -> list[DrillLine]:
    """The newest ``limit`` restore drills the caller may see, newest first."""
    with catalog.read_session() as session:
        rows = session.execute(
            sa.select(Drill.id, System.name, StoreRow.name, Drill.passed, Drill.rto_seconds,
                      Drill.started_at, Drill.finished_at)
            .join(System, System.id == Drill.system_id)
            .join(StoreRow, StoreRow.id == Drill.store_id)
            .where(views.visible_systems(principal))
            .order_by(Drill.started_at.desc(), Drill.id.desc()).limit(limit)).all()
    return [DrillLine(id=drill_id, system=system, store=store,
                      verdict={True: "passed", False: "FAILED", None: "running"}[passed],
                      rto_seconds=rto, started_at=started, finished_at=finished)
            for drill_id, system, store, passed, rto, started, finished in rows]


def dashboard(catalog: Catalog, principal: Principal, *, cursor: str | None = None,
              now: dt.datetime | None = None, per_page: int = SYSTEMS_PER_PAGE,
              cache: views.SummaryCache | None = None) -> Dashboard:
    """The dashboard for ``principal`` at ``now``: the counts and late systems (kept by
    ``cache``, the app's read cache; computed in place without one), the page of its
    systems after ``cursor`` (by name), the stores (operators and admins), its recent
    failures and latest drills.

    Raises :class:`~drd.services.paging.InvalidCursor` for a cursor of another list.
    """
    now = now or utcnow()
    systems = views.list_systems(catalog, principal, limit=per_page, cursor=cursor, now=now)
    if cache is not None:
        counts, counted_at = cache.counts(catalog, principal, (), now)
        late, _ = cache.get(("dashboard-late", principal.reads_everything, principal.role,
                             principal.departments, principal.systems),
                            lambda moment: late_systems(catalog, principal, moment), now)
    else:
        counts, counted_at = views.status_counts(catalog, principal, now=now), now
        late = late_systems(catalog, principal, now)
    return Dashboard(
        caller=principal, refreshed_at=now, counts=counts, counted_at=counted_at, late=late,
        systems=Page[SystemLine](items=[system_line(item) for item in systems.items],
                                 next=systems.next),
        stores=(views.list_stores(catalog, principal, limit=STORES_SHOWN, now=now,
                                  cache=cache)
                if principal.reads_everything else None),
        failures=recent_failures(catalog, principal),
        drills=latest_drills(catalog, principal))
