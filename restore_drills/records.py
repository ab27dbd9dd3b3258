"""What a drill reads from and writes to the catalog, and the drill list.

:func:`load_subject` gathers, in one session, what a drill of a system needs: the
system, its policy, its stores (in the policy's order), its snapshots, the last drill
attempt per store, and its signed manifests. :func:`start_drill` records a drill as
running (retention keeps the snapshots of a running drill); :func:`finish_drill` records
the verdict, the report and its signature, and opens or resolves the ``drill_failed``
alert of that system and store. :func:`list_drills` is ``drd drill list``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from drd.catalog import Catalog
from drd.catalog.models import (
    Drill,
    Snapshot,
    SnapshotCopy,
    SnapshotManifest,
    StoreObject,
    System,
)
from drd.catalog.models import Store as StoreRow
from drd.catalog.types import utcnow
from drd.errors import UserError
from drd.services.alerts import raise_alert, resolve_alert
from restore_drills.plan import PointSnapshot
from restore_drills.report import REPORT_SCHEMA
from restore_drills.rotation import overdue


@dataclass(frozen=True)
class StoreInfo:
    id: int
    name: str
    region: str
    object_lock: bool


@dataclass
class Subject:
    """A system as a drill sees it: ``stores`` in its policy's order (registered ones),
    ``last_attempt`` per store name, ``copies`` the stores holding each snapshot
    (catalog id -> store names whose copy is ``present``)."""

    system_id: int
    system: str
    department: str
    policy: str
    document: Mapping[str, Any]
    agent_public_key: str | None
    stores: list[StoreInfo]
    snapshots: list[PointSnapshot]
    last_attempt: dict[str, dt.datetime | None] = field(default_factory=dict)
    last_passed: dict[str, dt.datetime | None] = field(default_factory=dict)
    copies: dict[int, set[str]] = field(default_factory=dict)
    damaged_objects: int = 0
    enrolled_at: dt.datetime | None = None

    def store(self, name: str) -> StoreInfo:
        for store in self.stores:
            if store.name == name:
                return store
        raise UserError(f"system {self.system!r} is not kept in store {name!r} (its stores: "
                        f"{', '.join(store.name for store in self.stores) or 'none'})")


def load_subject(catalog: Catalog, system: str) -> Subject:
    """Raises :class:`UserError` for an unknown system, or one without a policy."""
    with catalog.session() as session:
        row = session.scalar(sa.select(System).options(
            selectinload(System.department), selectinload(System.policy))
            .where(System.name == system))
        if row is None:
            raise UserError(f"no system named {system!r} (see drd status)")
        if row.policy is None:
            raise UserError(f"system {system!r} has no policy: nothing says where its "
                            "backups are")
        document = dict(row.policy.document or {})
        by_name = {store.name: store for store in session.scalars(sa.select(StoreRow))}
        stores = [StoreInfo(by_name[name].id, name, by_name[name].region,
                            bool(by_name[name].object_lock))
                  for name in document.get("stores") or [] if name in by_name]
        snapshots = [
            PointSnapshot(id=snapshot.id, restic_id=snapshot.restic_id, time=snapshot.time,
                          paths=tuple(snapshot.paths or ()), tags=tuple(snapshot.tags or ()),
                          status=snapshot.status, partial=snapshot.partial,
                          file_count=snapshot.file_count, size_bytes=snapshot.size_bytes)
            for snapshot in session.scalars(sa.select(Snapshot).where(
                Snapshot.system_id == row.id).order_by(Snapshot.time))]
        copies: dict[int, set[str]] = {}
        store_names = {store.id: store.name for store in by_name.values()}
        for snapshot_id, store_id in session.execute(
                sa.select(SnapshotCopy.snapshot_id, SnapshotCopy.store_id)
                .join(Snapshot, Snapshot.id == SnapshotCopy.snapshot_id)
                .where(Snapshot.system_id == row.id, SnapshotCopy.state == "present")):
            copies.setdefault(snapshot_id, set()).add(store_names.get(store_id, "?"))
        subject = Subject(system_id=row.id, system=row.name, department=row.department.name,
                          policy=row.policy.name, document=document,
                          agent_public_key=row.agent_public_key, stores=stores,
                          snapshots=snapshots, copies=copies, enrolled_at=row.enrolled_at)
        for store in stores:
            subject.last_attempt[store.name] = session.scalar(
                sa.select(sa.func.max(Drill.started_at)).where(
                    Drill.system_id == row.id, Drill.store_id == store.id))
            subject.last_passed[store.name] = session.scalar(
                sa.select(sa.func.max(Drill.started_at)).where(
                    Drill.system_id == row.id, Drill.store_id == store.id,
                    Drill.passed.is_(True)))
        subject.damaged_objects = session.scalar(
            sa.select(sa.func.count()).select_from(StoreObject).where(
                StoreObject.system_id == row.id,
                StoreObject.state.in_(("corrupt", "missing", "lost")))) or 0
    return subject


def load_manifests(catalog: Catalog, snapshot_ids: Sequence[int]
                   ) -> dict[int, tuple[bytes, bytes]]:
    """The recorded manifests (canonical bytes, signature) by snapshot catalog id."""
    with catalog.session() as session:
        return {row.snapshot_id: (bytes(row.content), bytes(row.signature))
                for row in session.scalars(sa.select(SnapshotManifest).where(
                    SnapshotManifest.snapshot_id.in_(list(snapshot_ids))))}


def start_drill(catalog: Catalog, subject: Subject, store: StoreInfo,
                primary: PointSnapshot, started_at: dt.datetime,
                stale_after: dt.timedelta = dt.timedelta(days=1)) -> int:
    """Record a running drill; return its id.

    Drills of the system still "running" that started more than ``stale_after`` ago
    belonged to a process that died (killed, or its machine lost): they are marked failed
    first, so that they no longer keep their snapshots from retention.
    """
    with catalog.session() as session:
        for stale in session.scalars(sa.select(Drill).where(
                Drill.system_id == subject.system_id, Drill.finished_at.is_(None),
                Drill.started_at < started_at - stale_after)):
            stale.passed = False
            stale.finished_at = started_at
            stale.report = {"schema": REPORT_SCHEMA, "id": stale.id, "passed": False,
                            "abandoned": True,
                            "reasons": ["the drill never finished: its process stopped"]}
        drill = Drill(system_id=subject.system_id, store_id=store.id,
                      snapshot_id=primary.id, snapshot_restic_id=primary.restic_id,
                      started_at=started_at, passed=None)
        session.add(drill)
        session.flush()
        return drill.id


def finish_drill(catalog: Catalog, drill_id: int, report: Mapping[str, Any],
                 signature: bytes, *, subject: Subject, store: StoreInfo) -> None:
    """Record a drill's verdict, report and signature; alert on failure, resolve on pass."""
    with catalog.session() as session:
        drill = session.get(Drill, drill_id)
        drill.finished_at = dt.datetime.fromisoformat(report["finished_at"])
        drill.passed = bool(report["passed"])
        drill.rto_seconds = report.get("rto_seconds")
        drill.rpo_seconds = report.get("rpo_seconds")
        drill.report = dict(report)
        drill.signature = signature
        if drill.passed:
            resolve_alert(session, "drill_failed", system_id=subject.system_id,
                          store_id=store.id)
        else:
            reasons = report.get("reasons") or ["no reason recorded"]
            raise_alert(session, "drill_failed",
                        f"restore drill {drill_id} of {subject.system} from {store.name} "
                        f"failed: {reasons[0]}",
                        system_id=subject.system_id, store_id=store.id,
                        details={"drill": drill_id, "reasons": list(reasons[:10])})


def flag_overdue(catalog: Catalog, subject: Subject, period: dt.timedelta,
                 now: dt.datetime) -> list[str]:
    """Open (or resolve) the system's ``drill_overdue`` alert: the stores without a
    passing drill within the plan's ``period``. A system enrolled less than a period ago
    is not overdue yet. Returns the overdue stores."""
    with catalog.session() as session:
        last_passed = {store.name: session.scalar(
            sa.select(sa.func.max(Drill.started_at)).where(
                Drill.system_id == subject.system_id, Drill.store_id == store.id,
                Drill.passed.is_(True))) for store in subject.stores}
        late = overdue([store.name for store in subject.stores], last_passed, period, now)
        if subject.enrolled_at is not None and now - subject.enrolled_at < period:
            late = []
        if late:
            raise_alert(session, "drill_overdue",
                        f"{subject.system}: no passing restore drill within the plan's "
                        f"period from {', '.join(late)}",
                        system_id=subject.system_id, severity="warning",
                        details={"stores": late, "period_seconds": period.total_seconds()})
        else:
            resolve_alert(session, "drill_overdue", system_id=subject.system_id)
    return late


def discard_drill(catalog: Catalog, drill_id: int) -> None:
    """Remove a drill that was interrupted before its verdict (the daemon stopping, ^C):
    it proved nothing either way and runs again; the audit log keeps its unseal."""
    with catalog.session() as session:
        drill = session.get(Drill, drill_id)
        if drill is not None and drill.passed is None:
            session.delete(drill)


def abandon_drill(catalog: Catalog, drill_id: int, reason: str, *, alert: bool = True) -> None:
    """Mark a drill that could not finish (an internal error, an interruption) as failed,
    without a signed report, so that it does not stay "running" and keep its snapshots
    from retention; ``alert`` opens ``drill_failed`` (not for an interruption: the drill
    runs again)."""
    with catalog.session() as session:
        drill = session.get(Drill, drill_id)
        if drill is not None and drill.passed is None:
            drill.passed = False
            drill.finished_at = utcnow()
            drill.report = {"schema": REPORT_SCHEMA, "id": drill_id, "passed": False,
                            "reasons": [reason], "abandoned": True}
            if not alert:
                return
            raise_alert(session, "drill_failed", f"restore drill {drill_id} did not finish: "
                        f"{reason}", system_id=drill.system_id, store_id=drill.store_id,
                        details={"drill": drill_id, "reasons": [reason]})


# -- the list -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrillView:
    """A drill as ``drd drill list`` shows it."""

    id: int
    system: str
    store: str
    snapshot: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    passed: bool | None
    rto_seconds: float | None
    rpo_seconds: float | None
    reason: str | None

    @property
    def verdict(self) -> str:
        return {True: "passed", False: "FAILED", None: "running"}[self.passed]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "system": self.system, "store": self.store,
                "snapshot": self.snapshot, "started_at": self.started_at.isoformat(),
                "finished_at": self.finished_at.isoformat() if self.finished_at else None,
                "passed": self.passed, "verdict": self.verdict,
                "rto_seconds": self.rto_seconds, "rpo_seconds": self.rpo_seconds,
                "reason": self.reason}


def list_drills(catalog: Catalog, system: str | None = None, limit: int = 100
                ) -> list[DrillView]:
    """The newest ``limit`` drills (of ``system``), newest first.

    Raises :class:`UserError` for an unknown system.
    """
    with catalog.session() as session:
        query = (sa.select(Drill, System.name, StoreRow.name)
                 .join(System, System.id == Drill.system_id)
                 .join(StoreRow, StoreRow.id == Drill.store_id)
                 .order_by(Drill.started_at.desc(), Drill.id.desc()).limit(limit))
        if system is not None:
            if session.scalar(sa.select(System.id).where(System.name == system)) is None:
                raise UserError(f"no system named {system!r} (see drd status)")
            query = query.where(System.name == system)
        views = []
        for drill, system_name, store_name in session.execute(query):
            reasons = (drill.report or {}).get("reasons") or []
            views.append(DrillView(
                id=drill.id, system=system_name, store=store_name,
                snapshot=drill.snapshot_restic_id, started_at=drill.started_at,
                finished_at=drill.finished_at, passed=drill.passed,
                rto_seconds=drill.rto_seconds, rpo_seconds=drill.rpo_seconds,
                reason=reasons[0] if reasons and drill.passed is False else None))
        return views
