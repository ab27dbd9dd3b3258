"""What happened: recent job runs, alerts and the audit log, as the read API lists them.

Scoped like :mod:`drd.services.views`: owners see the runs and alerts of their systems
(not those of stores alone, which are shared infrastructure); the audit log is for
admins and operators. Each list is newest first (highest id first) and paged by id.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, Field

from drd.catalog import Catalog
from drd.catalog.models import Alert, AuditEntry, Job, JobRun, System
from drd.catalog.models import Store as StoreRow
from drd.secrets import mask
from drd.services.paging import DEFAULT_LIMIT, Page, decode_cursor, page_of
from drd.services.tokens import Principal
from drd.services.views import refuse_unless_reads_everything, visible_systems

RUNNING = "running"
"""The ``outcome`` filter for runs that have not ended (their outcome is null)."""
ALERT_STATES = ("open", "all")


class JobRunView(BaseModel):
    id: int
    job: str
    kind: str
    system: str | None
    store: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    outcome: str | None = Field(description="succeeded, failed, partial...; null while it "
                                            "runs")
    bytes_processed: int | None
    error: str | None


class AlertItem(BaseModel):
    id: int
    kind: str
    severity: str
    system: str | None
    store: str | None
    message: str
    opened_at: dt.datetime
    last_seen_at: dt.datetime
    count: int
    resolved_at: dt.datetime | None
    details: dict[str, Any]


class AuditItem(BaseModel):
    id: int
    at: dt.datetime
    actor: str
    action: str
    target: str | None
    details: dict[str, Any]


def _scoped(column, principal: Principal, departments: Sequence[str]):
    """A condition on a ``system_id`` column: all rows for callers that read everything
    without a department filter, else only rows of visible systems."""
    if principal.reads_everything and not departments:
        return sa.true()
    return column.in_(sa.select(System.id).where(visible_systems(principal, departments)))


def _after(column, cursor: str | None):
    if cursor is None:
        return sa.true()
    (after,) = decode_cursor(cursor, (int,))
    return column < after


def list_job_runs(catalog: Catalog, principal: Principal, *, departments: Sequence[str] = (),
                  outcome: str | None = None, kind: str | None = None,
                  limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> Page[JobRunView]:
    """Recent job runs, newest first; ``outcome`` (``running`` for unfinished runs) and
    ``kind`` filter them. Raises :class:`~drd.services.paging.InvalidCursor`."""
    query = (sa.select(JobRun, Job.name, Job.kind, System.name, StoreRow.name)
             .join(Job, Job.id == JobRun.job_id)
             .outerjoin(System, System.id == JobRun.system_id)
             .outerjoin(StoreRow, StoreRow.id == JobRun.store_id)
             .where(_scoped(JobRun.system_id, principal, departments),
                    _after(JobRun.id, cursor))
             .order_by(JobRun.id.desc()).limit(limit + 1))
    if outcome == RUNNING:
        query = query.where(JobRun.outcome.is_(None))
    elif outcome is not None:
        query = query.where(JobRun.outcome == outcome)
    if kind is not None:
        query = query.where(Job.kind == kind)
    with catalog.read_session() as session:
        rows, following = page_of(session.execute(query).all(), limit,
                                  lambda row: (row[0].id,))
    items = [JobRunView(id=run.id, job=job, kind=job_kind, system=system, store=store,
                        started_at=run.started_at, finished_at=run.finished_at,
                        outcome=run.outcome, bytes_processed=run.bytes_processed,
                        error=mask(run.error) if run.error else None)
             for run, job, job_kind, system, store in rows]
    return Page[JobRunView](items=items, next=following)


def list_alerts(catalog: Catalog, principal: Principal, *, state: str = "open",
                departments: Sequence[str] = (), limit: int = DEFAULT_LIMIT,
                cursor: str | None = None) -> Page[AlertItem]:
    """Alerts, newest first: open ones (``state="open"``) or all. Owners see those of
    their systems. Raises :class:`~drd.services.paging.InvalidCursor`."""
    query = (sa.select(Alert, System.name, StoreRow.name)
             .outerjoin(System, System.id == Alert.system_id)
             .outerjoin(StoreRow, StoreRow.id == Alert.store_id)
             .where(_scoped(Alert.system_id, principal, departments), _after(Alert.id, cursor))
             .order_by(Alert.id.desc()).limit(limit + 1))
    if state == "open":
        query = query.where(Alert.resolved_at.is_(None))
    with catalog.read_session() as session:
        rows, following = page_of(session.execute(query).all(), limit,
                                  lambda row: (row[0].id,))
    items = [AlertItem(id=alert.id, kind=alert.kind, severity=alert.severity, system=system,
                       store=store, message=alert.message, opened_at=alert.opened_at,
                       last_seen_at=alert.last_seen_at, count=alert.count,
                       resolved_at=alert.resolved_at, details=dict(alert.details or {}))
             for alert, system, store in rows]
    return Page[AlertItem](items=items, next=following)


def list_audit(catalog: Catalog, principal: Principal, *, action: str | None = None,
               limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> Page[AuditItem]:
    """The audit log, newest first (``action`` filters by a dotted verb or its prefix
    ending in ``.``, e.g. ``token.``).

    Raises :class:`~drd.services.refusals.NotAllowed` for owners and agents,
    :class:`~drd.services.paging.InvalidCursor`.
    """
    refuse_unless_reads_everything(principal, "the audit log's entries")
    query = (sa.select(AuditEntry).where(_after(AuditEntry.id, cursor))
             .order_by(AuditEntry.id.desc()).limit(limit + 1))
    if action is not None:
        query = query.where(AuditEntry.action.startswith(action, autoescape=True)
                            if action.endswith(".") else AuditEntry.action == action)
    with catalog.read_session() as session:
        rows, following = page_of(session.scalars(query).all(), limit,
                                  lambda row: (row.id,))
    items = [AuditItem(id=entry.id, at=entry.at, actor=entry.actor, action=entry.action,
                       target=entry.target, details=dict(entry.details or {}))
             for entry in rows]
    return Page[AuditItem](items=items, next=following)
