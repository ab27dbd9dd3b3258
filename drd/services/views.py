"""Read views of the catalog for operators and owners: systems, snapshots, stores, status.

What the read API (``/v1``) and the dashboard show, shaped as pydantic models and already
scoped to the caller (a :class:`~drd.services.tokens.Principal`):

- admins and operators see everything; owners the systems of their departments and
  their named systems; an agent's token its own system;
- lists of systems (and of what belongs to systems) are filtered in SQL; a single system
  the caller may not see raises :class:`~drd.services.refusals.NotAllowed`. For a caller
  that reads everything an unknown name raises
  :class:`~drd.services.refusals.NotFound`; for anyone else an unknown name is refused
  exactly like a foreign one (403), so that names of other departments' systems do not
  leak;
- stores are shared infrastructure: only callers that read everything see them.

Lists are pages (:mod:`drd.services.paging`). Nothing here loads every snapshot: the
per-system figures come from :mod:`drd.services.status`'s SQL summaries, computed for
the systems of one page at a time. The overall counts of ``/v1/status`` cover every
visible system and cost a query per policy over all of them, so :class:`SummaryCache`
keeps them for a few seconds.

Entry points (each takes the catalog and the principal): :func:`list_systems`,
:func:`system_overviews`, :func:`system_overview`, :func:`list_snapshots`,
:func:`list_stores`, :func:`status_summary`, :func:`request_backup_now`.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from drd.catalog import Catalog
from drd.catalog.models import (
    Alert,
    Department,
    Drill,
    Replica,
    Snapshot,
    SnapshotCopy,
    System,
)
from drd.catalog.models import Store as StoreRow
from drd.secrets import mask
from drd.services import status as status_rules
from drd.services.agents import request_backup
from drd.services.paging import DEFAULT_LIMIT, Page, decode_cursor, page_of
from drd.services.refusals import Conflict, NotAllowed, NotFound
from drd.services.scope import Scope, statement
from drd.services.status import PolicyRules
from drd.services.tokens import Principal
from drd.verification.select import Coverage, coverage_from_counts

COPY_STATES = ("present", "pending", "missing", "damaged")
STORE_STATES = ("up", "down", "unknown")


# -- models ---------------------------------------------------------------------------------


class SnapshotRef(BaseModel):
    id: str = Field(description="restic's snapshot id")
    time: dt.datetime


class SystemSummary(BaseModel):
    """A system and its standing against its RPO."""

    name: str
    department: str
    policy: str | None
    status: str = Field(description="pending (not enrolled yet), enrolled or retired")
    hostname: str | None
    enrolled_at: dt.datetime | None
    last_seen_at: dt.datetime | None
    backup_requested: bool = Field(description="a backup-now waits for the agent")
    last_good_snapshot: SnapshotRef | None = Field(
        description="the newest snapshot that is complete, kept and present in at least "
                    "min_copies stores")
    age_seconds: float | None = Field(description="age of last_good_snapshot")
    rpo_seconds: float | None
    late: bool = Field(description="enrolled, and the newest good backup is older than the "
                                   "RPO (or none, one RPO after enrolling)")


class CopyCounts(BaseModel):
    """A system's kept snapshots' copies on one store, by state."""

    present: int = 0
    pending: int = 0
    missing: int = 0
    damaged: int = 0


class StoreCopies(BaseModel):
    """One store of a system: the state of the newest snapshot's copy there (and, on a
    system's own page, every kept snapshot's copies by state), replication's watermark
    and lag, and verification's coverage."""

    store: str
    newest: str | None = Field(None, description="the state of the newest kept snapshot's "
                                                 "copy: present, pending, missing, damaged")
    copies: CopyCounts | None = Field(None, description="every kept snapshot's copies by "
                                                        "state (on a system's page; null in "
                                                        "lists)")
    watermark_at: dt.datetime | None = None
    lag_objects: int | None = None
    lag_bytes: int | None = None
    coverage: float | None = Field(None, description="share of bytes verified within the "
                                                     "policy's verification period")
    oldest_unverified_seconds: int | None = None


class DrillSummary(BaseModel):
    """A drill's verdict and its measured RTO and RPO against the policy's targets."""

    id: int
    system: str
    department: str
    store: str
    snapshot: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    passed: bool | None = Field(description="null while the drill runs")
    rto_seconds: float | None
    rpo_seconds: float | None
    rto_target_seconds: float | None
    rpo_target_seconds: float | None


class SystemOverview(SystemSummary):
    """A system with everything the status shows of it."""

    snapshots: int = Field(description="snapshots kept (confirmed, not forgotten)")
    stores: list[StoreCopies]
    last_drill: DrillSummary | None = Field(description="the newest finished drill")
    open_alerts: int


class SnapshotView(BaseModel):
    id: str = Field(description="restic's snapshot id")
    time: dt.datetime
    hostname: str
    paths: list[str]
    tags: list[str]
    size_bytes: int | None
    file_count: int | None
    partial: bool
    status: str = Field(description="unconfirmed (reported; the centre has not yet seen it "
                                    "in min_copies stores), active, rejected (the stores do "
                                    "not hold it: never a restore point) or forgotten (by "
                                    "retention)")
    good: bool = Field(description="counts as a backup: confirmed, complete, kept, durable")
    copies: dict[str, str] = Field(description="state per store name")


class StoreView(BaseModel):
    name: str
    kind: str
    region: str | None
    object_lock: bool
    state: str = Field(description="up, down (the last probe failed) or unknown (never "
                                   "probed)")
    checked_at: dt.datetime | None
    check_error: str | None
    systems: int = Field(description="systems replicated to it")
    lag_objects: int = Field(description="objects it lacked after the last replication "
                                         "passes, all systems together")
    lag_bytes: int
    oldest_watermark_at: dt.datetime | None = Field(
        description="the oldest replication watermark among its systems")
    coverage: float | None
    oldest_unverified_seconds: int | None
    bytes_tracked: int


class StatusCounts(BaseModel):
    systems: int
    enrolled: int
    pending: int
    late: int
    alerts: dict[str, int] = Field(description="open alerts by severity")
    stores: dict[str, int] = Field(description="stores by state: up, down, unknown")


class StatusPage(Page[SystemOverview]):
    """``/v1/status``: the verdict and counts over every visible system, then one page of
    systems."""

    verdict: str = Field(description="critical (a late system, an open critical alert or a "
                                     "store down), warning (another open alert) or ok")
    counts: StatusCounts
    computed_at: dt.datetime = Field(description="when the counts were computed (they are "
                                                 "kept for a few seconds)")
    page_read_at: dt.datetime = Field(description="when this page of systems was read (a "
                                                  "page is kept for a few seconds)")


class BackupRequested(BaseModel):
    system: str
    requested_at: dt.datetime


# -- scope ----------------------------------------------------------------------------------


def _department_ids(names: Sequence[str]):
    return sa.select(Department.id).where(Department.name.in_(list(names))).scalar_subquery()


def visible_systems(principal: Principal, departments: Sequence[str] = ()) -> Any:
    """A condition on ``System``: the systems ``principal`` may see, in ``departments``
    when given (any of them)."""
    conditions = []
    if not principal.reads_everything:
        if principal.role == "owner":
            conditions.append(sa.or_(System.department_id.in_(
                _department_ids(principal.departments)),
                System.name.in_(list(principal.systems))))
        elif principal.role == "agent":
            conditions.append(System.name.in_(list(principal.systems)))
        else:
            conditions.append(sa.false())
    if departments:
        conditions.append(System.department_id.in_(_department_ids(departments)))
    return sa.and_(sa.true(), *conditions)


def refuse_unless_reads_everything(principal: Principal, what: str) -> None:
    """Raise :class:`NotAllowed` unless ``principal`` is an admin or operator."""
    if not principal.reads_everything:
        raise NotAllowed(f"{what} are for operators and administrators: this token is "
                         f"{principal.role}")


_SYSTEM_BY_NAME = (sa.select(System, Department.name)
                   .join(Department, Department.id == System.department_id)
                   .where(System.name == sa.bindparam("name", type_=sa.String())))


def find_system(session: Session, principal: Principal, name: str) -> tuple[System, str]:
    """The system named ``name`` and its department's name, if ``principal`` may see it.

    Raises :class:`NotFound` (for callers that read everything) or :class:`NotAllowed`.
    """
    row = session.execute(_SYSTEM_BY_NAME, {"name": name}).first()
    if row is None and principal.reads_everything:
        raise NotFound(f"no system named {name!r} (GET /v1/systems lists them)")
    if row is None or not principal.may_read(row[1], name):
        raise NotAllowed(f"this token may not see a system named {name!r}")
    return row[0], row[1]


# -- systems --------------------------------------------------------------------------------


def page_scope(rows: Sequence, *, every_system: bool) -> Scope:
    """The :class:`Scope` of the systems of a page (rows by name).

    For a list of ``every_system`` (no scope, no department filter) the page is a range
    of names, cheaper to send and to plan than a list of ids (a system created since in
    that range matches too, and is left out where figures are matched to the page's
    rows). A filtered list's page may be spread over the whole range: its ids, then.
    """
    if not rows:
        return Scope.ids([])
    if every_system:
        return Scope.names_between(rows[0].name, rows[-1].name)
    return Scope.ids([row.id for row in rows])


def _summaries(session: Session, rules: dict[int | None, PolicyRules], systems: Sequence,
               now: dt.datetime, page: Scope) -> list[SystemSummary]:
    """:class:`SystemSummary` of ``systems`` (rows of :func:`_system_rows`; ``page`` is
    their :func:`page_scope`)."""
    newest = status_rules.newest_good_snapshots(session, rules, page) if systems else {}
    result = []
    for row in systems:
        policy = rules.get(row.policy_id, PolicyRules())
        good = newest.get(row.id)
        standing = status_rules.assess(status=row.status,
                                       last_backup_at=good[2] if good else None,
                                       enrolled_at=row.enrolled_at, rpo=policy.rpo, now=now)
        result.append(SystemSummary(
            name=row.name, department=row.department, policy=policy.name, status=row.status,
            hostname=row.hostname, enrolled_at=row.enrolled_at, last_seen_at=row.last_seen_at,
            backup_requested=row.backup_requested_at is not None,
            last_good_snapshot=SnapshotRef(id=good[1], time=good[2]) if good else None,
            age_seconds=standing.age.total_seconds() if standing.age is not None else None,
            rpo_seconds=policy.rpo.total_seconds() if policy.rpo is not None else None,
            late=standing.late))
    return result


_SYSTEM_COLUMNS = (System.id, System.name, Department.name.label("department"),
                   System.policy_id, System.status, System.hostname, System.enrolled_at,
                   System.last_seen_at, System.backup_requested_at)


def _system_rows(session: Session, where: Any, limit: int, cursor: str | None):
    query = (sa.select(*_SYSTEM_COLUMNS)
             .join(Department, Department.id == System.department_id)
             .where(where).order_by(System.name).limit(limit + 1))
    if cursor is not None:
        (after,) = decode_cursor(cursor, (str,))
        query = query.where(System.name > after)
    return page_of(session.execute(query).all(), limit, lambda row: (row.name,))


_ONE_SYSTEM_ROW = (sa.select(*_SYSTEM_COLUMNS)
                   .join(Department, Department.id == System.department_id)
                   .where(System.id == sa.bindparam("system_id", type_=sa.Integer())))


def list_systems(catalog: Catalog, principal: Principal, *, departments: Sequence[str] = (),
                 limit: int = DEFAULT_LIMIT, cursor: str | None = None,
                 now: dt.datetime) -> Page[SystemSummary]:
    """The systems ``principal`` may see (in ``departments``), by name, one page.

    Raises :class:`~drd.services.paging.InvalidCursor` for a cursor of another list.
    """
    where = visible_systems(principal, departments)
    with catalog.read_session() as session:
        rows, following = _system_rows(session, where, limit, cursor)
        items = _summaries(session, status_rules.policy_rules(session), rows, now,
                           page_scope(rows, every_system=principal.reads_everything
                                      and not departments))
    return Page[SystemSummary](items=items, next=following)


def _newest_copies(session: Session, page: Scope) -> dict[int, dict[int, str]]:
    """Per system of ``page`` and store: the state of its newest kept snapshot's copy (an
    index walk per system to its newest snapshot, then that snapshot's copies)."""
    def build(condition: Any) -> Any:
        newest = (sa.select(Snapshot.id).where(Snapshot.system_id == System.id,
                                               Snapshot.status == "active")
                  .order_by(Snapshot.time.desc()).limit(1).correlate(System)
                  .scalar_subquery())
        return (sa.select(System.id, SnapshotCopy.store_id, SnapshotCopy.state)
                .join(SnapshotCopy, SnapshotCopy.snapshot_id == newest).where(condition))

    states: dict[int, dict[int, str]] = {}
    for system_id, store_id, state in session.execute(
            statement("newest_copies", page, build), dict(page.params)):
        states.setdefault(system_id, {})[store_id] = state
    return states


_COPY_COUNTS = (
    sa.select(Snapshot.system_id, SnapshotCopy.store_id, SnapshotCopy.state, sa.func.count())
    .join(Snapshot, Snapshot.id == SnapshotCopy.snapshot_id)
    .where(Snapshot.system_id.in_(sa.bindparam("ids", expanding=True, type_=sa.Integer())),
           SnapshotCopy.state.in_(COPY_STATES))
    .group_by(Snapshot.system_id, SnapshotCopy.store_id, SnapshotCopy.state))


def _copies(session: Session, ids: list[int]) -> dict[int, dict[int, dict[str, int]]]:
    """Per system and store: its copies by state. Retention marks the copies of a snapshot
    it forgets ``forgotten``, a state not counted, so the snapshots' own status need not be
    read (the ``(system_id, time)`` index alone leads to the copies)."""
    counts: dict[int, dict[int, dict[str, int]]] = {}
    for system_id, store_id, state, count in session.execute(_COPY_COUNTS, {"ids": ids}):
        counts.setdefault(system_id, {}).setdefault(store_id, {})[state] = count
    return counts


def _drills(where: Any) -> Any:
    return (sa.select(Drill, System.name, System.policy_id, Department.name, StoreRow.name)
            .join(System, System.id == Drill.system_id)
            .join(Department, Department.id == System.department_id)
            .join(StoreRow, StoreRow.id == Drill.store_id)
            .where(where).order_by(Drill.id.desc()))


def _last_drills(session: Session, page: Scope, rules: dict[int | None, PolicyRules]
                 ) -> dict[int, DrillSummary]:
    """Per system of ``page``: its newest finished drill."""
    def build(condition: Any) -> Any:
        newest = (sa.select(Drill.id).where(Drill.system_id == System.id,
                                            Drill.passed.is_not(None))
                  .order_by(Drill.started_at.desc()).limit(1)
                  .correlate(System).scalar_subquery())
        return _drills(Drill.id.in_(sa.select(newest).where(condition)))

    rows = session.execute(statement("last_drills", page, build), dict(page.params)).all()
    return {system_id: drill for system_id, drill in _drill_summaries(rows, rules)}


def drill_summaries(session: Session, where: Any, rules: dict[int | None, PolicyRules],
                    limit: int | None = None) -> list[tuple[int, DrillSummary]]:
    """The drills matching ``where`` (a condition on ``Drill``), newest (highest id) first,
    each with its system's id."""
    query = _drills(where)
    rows = session.execute(query if limit is None else query.limit(limit)).all()
    return _drill_summaries(rows, rules)


def _drill_summaries(rows: Sequence, rules: dict[int | None, PolicyRules]
                     ) -> list[tuple[int, DrillSummary]]:
    result = []
    for drill, system, policy_id, department, store in rows:
        policy = rules.get(policy_id, PolicyRules())
        summary = DrillSummary(
            id=drill.id, system=system, department=department, store=store,
            snapshot=drill.snapshot_restic_id, started_at=drill.started_at,
            finished_at=drill.finished_at, passed=drill.passed, rto_seconds=drill.rto_seconds,
            rpo_seconds=drill.rpo_seconds,
            rto_target_seconds=policy.rto.total_seconds() if policy.rto else None,
            rpo_target_seconds=policy.drill_rpo.total_seconds() if policy.drill_rpo else None)
        result.append((drill.system_id, summary))
    return result


def _overviews(session: Session, rows: Sequence, now: dt.datetime, page: Scope, *,
               count_copies: bool = False) -> list[SystemOverview]:
    """:class:`SystemOverview` of ``rows`` (of :func:`_system_rows`; ``page`` is their
    :func:`page_scope`). ``count_copies`` counts every kept snapshot's copies per
    store and state: a walk over all of the systems' snapshots, for one system's page
    rather than for lists."""
    if not rows:
        return []
    rules = status_rules.policy_rules(session)
    summaries = _summaries(session, rules, rows, now, page)
    params = dict(page.params)
    stores = dict(session.execute(_STORE_NAMES).all())
    newest = _newest_copies(session, page)
    copies = _copies(session, [row.id for row in rows]) if count_copies else {}
    replicas: dict[int, dict[int, Any]] = {}
    for replica in session.execute(statement("replicas", page, _replicas), params):
        replicas.setdefault(replica.system_id, {})[replica.store_id] = replica
    coverage = status_rules.ledger_coverage(session, rules, now, page)
    drills = _last_drills(session, page, rules)
    alerts = dict(session.execute(statement("open_alerts", page, _open_alerts), params).all())
    kept = dict(session.execute(statement("kept", page, _kept_snapshots), params).all())
    result = []
    for row, summary in zip(rows, summaries, strict=True):
        store_ids = (set(copies.get(row.id, {})) | set(newest.get(row.id, {}))
                     | set(replicas.get(row.id, {}))
                     | {store_id for system_id, store_id in coverage if system_id == row.id})
        per_store = []
        for store_id in sorted(store_ids, key=lambda store_id: stores.get(store_id, "")):
            states = copies.get(row.id, {}).get(store_id) or {}
            replica = replicas.get(row.id, {}).get(store_id)
            counted = coverage.get((row.id, store_id))
            covered = coverage_from_counts([counted], now) if counted else None
            per_store.append(StoreCopies(
                store=stores.get(store_id, str(store_id)),
                newest=newest.get(row.id, {}).get(store_id),
                copies=(CopyCounts(**{state: states.get(state, 0) for state in COPY_STATES})
                        if count_copies else None),
                watermark_at=replica.watermark_at if replica else None,
                lag_objects=replica.lag_objects if replica else None,
                lag_bytes=replica.lag_bytes if replica else None,
                coverage=covered.as_dict()["coverage"] if covered else None,
                oldest_unverified_seconds=(covered.as_dict()["oldest_unverified_seconds"]
                                           if covered else None)))
        result.append(SystemOverview(
            **summary.model_dump(), snapshots=kept.get(row.id, 0), stores=per_store,
            last_drill=drills.get(row.id), open_alerts=alerts.get(row.id, 0)))
    return result


_STORE_NAMES = sa.select(StoreRow.id, StoreRow.name)


def _replicas(condition: Any) -> Any:
    return (sa.select(Replica.system_id, Replica.store_id, Replica.watermark_at,
                      Replica.lag_objects, Replica.lag_bytes)
            .where(Replica.system_id.in_(sa.select(System.id).where(condition))))


def _open_alerts(condition: Any) -> Any:
    return (sa.select(Alert.system_id, sa.func.count())
            .where(Alert.system_id.in_(sa.select(System.id).where(condition)),
                   Alert.resolved_at.is_(None))
            .group_by(Alert.system_id))


def _kept_snapshots(condition: Any) -> Any:
    # a count per system, correlated, so that both databases walk the (system_id, time)
    # index system by system rather than join every snapshot
    return sa.select(System.id, sa.select(sa.func.count())
                     .where(Snapshot.system_id == System.id, Snapshot.status == "active")
                     .correlate(System).scalar_subquery()).where(condition)


def system_overviews(catalog: Catalog, principal: Principal, *,
                     departments: Sequence[str] = (), limit: int = DEFAULT_LIMIT,
                     cursor: str | None = None, now: dt.datetime) -> Page[SystemOverview]:
    """One page (by name) of the visible systems with everything the status shows.

    Raises :class:`~drd.services.paging.InvalidCursor` for a cursor of another list.
    """
    where = visible_systems(principal, departments)
    with catalog.read_session() as session:
        rows, following = _system_rows(session, where, limit, cursor)
        items = _overviews(session, rows, now, page_scope(
            rows, every_system=principal.reads_everything and not departments))
    return Page[SystemOverview](items=items, next=following)


def system_overview(catalog: Catalog, principal: Principal, name: str, *,
                    now: dt.datetime) -> SystemOverview:
    """Everything the status shows of the system ``name``.

    Raises :class:`NotFound` or :class:`NotAllowed` (:func:`find_system`).
    """
    with catalog.read_session() as session:
        system, _ = find_system(session, principal, name)
        rows = session.execute(_ONE_SYSTEM_ROW, {"system_id": system.id}).all()
        (overview,) = _overviews(session, rows, now, Scope.one(system.id), count_copies=True)
    return overview


def list_snapshots(catalog: Catalog, principal: Principal, name: str, *,
                   limit: int = DEFAULT_LIMIT, cursor: str | None = None
                   ) -> Page[SnapshotView]:
    """The snapshots of system ``name`` (forgotten ones too), newest first, one page.

    Raises :class:`NotFound` or :class:`NotAllowed` (:func:`find_system`),
    :class:`~drd.services.paging.InvalidCursor`.
    """
    with catalog.read_session() as session:
        system, _ = find_system(session, principal, name)
        policy = status_rules.policy_rules(session).get(system.policy_id, PolicyRules())
        query = (sa.select(Snapshot).where(Snapshot.system_id == system.id)
                 .order_by(Snapshot.time.desc(), Snapshot.id.desc()).limit(limit + 1))
        if cursor is not None:
            time_after, id_after = decode_cursor(cursor, (dt.datetime, int))
            query = query.where(sa.or_(
                Snapshot.time < time_after,
                sa.and_(Snapshot.time == time_after, Snapshot.id < id_after)))
        rows, following = page_of(session.scalars(query).all(), limit,
                                  lambda row: (row.time, row.id))
        copies: dict[int, dict[str, str]] = {}
        if rows:
            for snapshot_id, store, state in session.execute(
                    sa.select(SnapshotCopy.snapshot_id, StoreRow.name, SnapshotCopy.state)
                    .join(StoreRow, StoreRow.id == SnapshotCopy.store_id)
                    .where(SnapshotCopy.snapshot_id.in_([row.id for row in rows]))):
                copies.setdefault(snapshot_id, {})[store] = state
        items = []
        for row in rows:
            states = copies.get(row.id, {})
            facts = status_rules.BackupFacts(
                time=row.time, partial=row.partial, status=row.status,
                present_copies=sum(state == "present" for state in states.values()))
            items.append(SnapshotView(
                id=row.restic_id, time=row.time, hostname=row.hostname,
                paths=list(row.paths or []), tags=list(row.tags or []),
                size_bytes=row.size_bytes, file_count=row.file_count, partial=row.partial,
                status=row.status, good=status_rules.is_good_backup(facts, policy.min_copies),
                copies=dict(sorted(states.items()))))
    return Page[SnapshotView](items=items, next=following)


# -- stores ---------------------------------------------------------------------------------


def store_state(reachable: bool | None) -> str:
    """``up``, ``down`` or ``unknown`` from the last probe's verdict (pure)."""
    return "unknown" if reachable is None else ("up" if reachable else "down")


def list_stores(catalog: Catalog, principal: Principal, *, limit: int = DEFAULT_LIMIT,
                cursor: str | None = None, now: dt.datetime,
                cache: SummaryCache | None = None) -> Page[StoreView]:
    """The stores by name: state, replication lag, verification coverage (from ``cache``
    when given: it sums up the whole ledger).

    Raises :class:`NotAllowed` for owners and agents (stores are shared infrastructure),
    :class:`~drd.services.paging.InvalidCursor`.
    """
    refuse_unless_reads_everything(principal, "stores")
    coverage: dict[int, Coverage] = {}
    with catalog.read_session() as session:
        query = sa.select(StoreRow).order_by(StoreRow.name).limit(limit + 1)
        if cursor is not None:
            (after,) = decode_cursor(cursor, (str,))
            query = query.where(StoreRow.name > after)
        rows, following = page_of(session.scalars(query).all(), limit,
                                  lambda row: (row.name,))
        ids = [row.id for row in rows]
        lag = {row[0]: row[1:] for row in session.execute(
            sa.select(Replica.store_id, sa.func.count(),
                      sa.func.coalesce(sa.func.sum(Replica.lag_objects), 0),
                      sa.func.coalesce(sa.func.sum(Replica.lag_bytes), 0),
                      sa.func.min(Replica.watermark_at, type_=Replica.watermark_at.type))
            .where(Replica.store_id.in_(ids)).group_by(Replica.store_id))} if ids else {}
        if ids and cache is None:
            coverage = status_rules.coverage_per_store(session, now)
    if ids and cache is not None:
        # outside the session above: SQLite gives one session at a time the catalog
        coverage = cache.coverage(catalog, now)[0]
    items = []
    for row in rows:
        systems, lag_objects, lag_bytes, oldest = lag.get(row.id, (0, 0, 0, None))
        covered = coverage.get(row.id)
        shown = covered.as_dict() if covered is not None else {}
        items.append(StoreView(
            name=row.name, kind=row.kind, region=row.region, object_lock=row.object_lock,
            state=store_state(row.reachable), checked_at=row.checked_at,
            check_error=mask(row.check_error) if row.check_error else None,
            systems=systems, lag_objects=int(lag_objects), lag_bytes=int(lag_bytes),
            oldest_watermark_at=oldest, coverage=shown.get("coverage"),
            oldest_unverified_seconds=shown.get("oldest_unverified_seconds"),
            bytes_tracked=shown.get("bytes_tracked", 0)))
    return Page[StoreView](items=items, next=following)


# -- status ---------------------------------------------------------------------------------


def status_counts(catalog: Catalog, principal: Principal, *, departments: Sequence[str] = (),
                  now: dt.datetime) -> StatusCounts:
    """Counts over every system ``principal`` may see (in ``departments``): systems by
    state, late ones, open alerts by severity (of those systems; all alerts for callers
    that read everything and filter no department), stores by state."""
    where = visible_systems(principal, departments)
    with catalog.read_session() as session:
        rules = status_rules.policy_rules(session)
        by_state = dict(session.execute(sa.select(System.status, sa.func.count())
                                        .where(where).group_by(System.status)).all())
        newest = status_rules.newest_good_snapshots(session, rules, where)
        late = 0
        for row in session.execute(
                sa.select(System.id, System.policy_id, System.enrolled_at)
                .where(where, System.status == "enrolled")):
            good = newest.get(row.id)
            late += status_rules.assess(
                status="enrolled", last_backup_at=good[2] if good else None,
                enrolled_at=row.enrolled_at, rpo=rules.get(row.policy_id, PolicyRules()).rpo,
                now=now).late
        alert_query = (sa.select(Alert.severity, sa.func.count())
                       .where(Alert.resolved_at.is_(None)).group_by(Alert.severity))
        if not principal.reads_everything or departments:
            alert_query = alert_query.where(Alert.system_id.in_(
                sa.select(System.id).where(where)))
        alerts = dict(session.execute(alert_query).all())
        stores = dict.fromkeys(STORE_STATES, 0)
        for reachable, count in session.execute(
                sa.select(StoreRow.reachable, sa.func.count()).group_by(StoreRow.reachable)):
            stores[store_state(reachable)] += count
    return StatusCounts(systems=sum(by_state.values()), enrolled=by_state.get("enrolled", 0),
                        pending=by_state.get("pending", 0), late=late,
                        alerts={"critical": 0, "warning": 0} | alerts,
                        stores=stores if principal.reads_everything else {})


class SummaryCache:
    """Sums over every system, kept ``ttl`` seconds per key, then refreshed: the counts
    of :func:`status_counts` per scope (:meth:`counts`), the stores' verification
    coverage (:meth:`coverage`), and the pages of ``/v1/status`` (:meth:`status_page`,
    kept ``page_ttl`` seconds: the page operators' tools poll).

    A fresh entry is served at once. A stale one (at most ``max_stale`` seconds old) is
    served too, while one background thread computes the new value; an older one, or a
    key asked for the first time, is computed in the request. ``now`` is the API's
    clock: a value computed for a time more than ``ttl`` away from it is not reused (a
    test moving its clock gets fresh values).
    """

    def __init__(self, ttl: float = 15.0, max_stale: float = 300.0, size: int = 256,
                 page_ttl: float = 5.0) -> None:
        self.ttl, self.max_stale, self.size = ttl, max_stale, size
        self.page_ttl = page_ttl
        self._entries: dict[tuple, tuple[float, Any, dt.datetime]] = {}
        self._refreshing: set[tuple] = set()
        self._lock = threading.Lock()

    def counts(self, catalog: Catalog, principal: Principal, departments: Sequence[str],
               now: dt.datetime) -> tuple[StatusCounts, dt.datetime]:
        """The counts for this scope and when they were computed (API clock)."""
        key = ("counts", principal.reads_everything, principal.role, principal.departments,
               principal.systems, tuple(sorted(set(departments))))
        return self.get(key, lambda moment: status_counts(
            catalog, principal, departments=departments, now=moment), now)

    def coverage(self, catalog: Catalog, now: dt.datetime
                 ) -> tuple[dict[int, Coverage], dt.datetime]:
        """Per store id, the verification coverage over every system
        (:func:`drd.services.status.coverage_per_store`), and when it was computed."""
        def compute(moment: dt.datetime) -> dict[int, Coverage]:
            with catalog.read_session() as session:
                return status_rules.coverage_per_store(session, moment)

        return self.get(("coverage",), compute, now)

    def status_page(self, catalog: Catalog, principal: Principal, departments: Sequence[str],
                    limit: int, cursor: str | None, now: dt.datetime
                    ) -> tuple[Page[SystemOverview], dt.datetime]:
        """One page of :func:`system_overviews` for this scope, and when it was read."""
        key = ("status-page", principal.reads_everything, principal.role,
               principal.departments, principal.systems, tuple(sorted(set(departments))),
               limit, cursor)
        return self.get(key, lambda moment: system_overviews(
            catalog, principal, departments=departments, limit=limit, cursor=cursor,
            now=moment), now, ttl=self.page_ttl, max_stale=3 * self.page_ttl)

    def get(self, key: tuple, compute: Callable[[dt.datetime], Any], now: dt.datetime,
            ttl: float | None = None, max_stale: float | None = None
            ) -> tuple[Any, dt.datetime]:
        """The value kept for ``key`` (``compute(now)`` when there is none to serve) and
        the time it was computed for; fresh for ``ttl`` seconds, served while refreshed
        up to ``max_stale`` (defaults: :attr:`ttl`, :attr:`max_stale`)."""
        ttl = self.ttl if ttl is None else ttl
        max_stale = self.max_stale if max_stale is None else max_stale
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None:
            made, value, computed_at = entry
            age = max(time.monotonic() - made, abs((now - computed_at).total_seconds()))
            if age <= ttl:
                return value, computed_at
            if age <= max_stale:
                self._refresh_later(key, compute, now)
                return value, computed_at
        return self._compute(key, compute, now), now

    def _compute(self, key: tuple, compute: Callable[[dt.datetime], Any],
                 now: dt.datetime) -> Any:
        value = compute(now)
        with self._lock:
            if key not in self._entries and len(self._entries) >= self.size:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = (time.monotonic(), value, now)
        return value

    def _refresh_later(self, key: tuple, compute: Callable[[dt.datetime], Any],
                       now: dt.datetime) -> None:
        with self._lock:
            if key in self._refreshing:
                return
            self._refreshing.add(key)

        def refresh() -> None:
            try:
                self._compute(key, compute, now)
            except Exception:  # noqa: BLE001 -- the next request computes it in place
                with self._lock:
                    self._entries.pop(key, None)
            finally:
                with self._lock:
                    self._refreshing.discard(key)

        threading.Thread(target=refresh, name="drd-read-cache", daemon=True).start()


def status_summary(catalog: Catalog, principal: Principal, *,
                   departments: Sequence[str] = (), limit: int = DEFAULT_LIMIT,
                   cursor: str | None = None, now: dt.datetime,
                   cache: SummaryCache | None = None) -> StatusPage:
    """``/v1/status``: the verdict and counts (from ``cache`` when given), then one page
    of :func:`system_overviews`."""
    if cache is not None:
        counts, computed_at = cache.counts(catalog, principal, departments, now)
        page, page_read_at = cache.status_page(catalog, principal, departments, limit,
                                               cursor, now)
    else:
        counts, computed_at = status_counts(catalog, principal, departments=departments,
                                            now=now), now
        page, page_read_at = system_overviews(catalog, principal, departments=departments,
                                              limit=limit, cursor=cursor, now=now), now
    verdict = status_rules.overall_verdict(late=counts.late, alerts=counts.alerts,
                                           stores_down=counts.stores.get("down", 0))
    return StatusPage(items=page.items, next=page.next, verdict=verdict, counts=counts,
                      computed_at=computed_at, page_read_at=page_read_at)


# -- requests -------------------------------------------------------------------------------


def request_backup_now(catalog: Catalog, principal: Principal, name: str, *,
                       now: dt.datetime) -> BackupRequested:
    """Ask the agent of system ``name`` to back up at its next heartbeat; audited with the
    token's name.

    Raises :class:`NotFound`/:class:`NotAllowed` as :func:`find_system` does, and
    :class:`NotAllowed` for a caller that may not request backups of it (operators read
    only), :class:`Conflict` for a system that is not enrolled.
    """
    with catalog.session() as session:
        system, department = find_system(session, principal, name)
        if not principal.may_request(department, name):
            raise NotAllowed(f"this token ({principal.role}) may not ask for backups of "
                             f"{name!r}: owners of the system and administrators may")
        if system.status != "enrolled":
            raise Conflict(f"system {name!r} is {system.status}, not enrolled: its agent "
                           "must enroll first (drd-agent enroll)")
    requested = request_backup(catalog, name, actor=principal.actor, now=now)
    return BackupRequested(system=name, requested_at=requested)
