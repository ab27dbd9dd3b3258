"""``drd status``: is every system inside its RPO?

The decisions are pure functions with unit tests: which snapshot counts as a good
backup (:func:`is_good_backup`) and whether a system is late (:func:`assess`). The
catalog is read once by :func:`system_statuses`.

A system is late when it is enrolled and its newest good backup is older than its
policy's RPO -- or, before its first good backup, when it enrolled longer than one RPO
ago. A good backup is a snapshot that is not partial and whose copies are present in
at least ``min_copies`` stores, the policy's definition of durable.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from drd.catalog import Catalog
from drd.catalog.models import Snapshot, SnapshotCopy, System
from drd.catalog.types import utcnow
from policies import format_duration, parse_duration


@dataclass(frozen=True)
class BackupFacts:
    """What :func:`newest_good_backup` needs to know of one snapshot."""

    time: dt.datetime
    partial: bool
    present_copies: int
    forgotten: bool = False


@dataclass(frozen=True)
class Lateness:
    """A system's standing against its RPO at one moment."""

    age: dt.timedelta | None  # since the newest good backup; None before the first
    late: bool


def is_good_backup(facts: BackupFacts, min_copies: int) -> bool:
    """True when a snapshot counts as a backup: complete, durable, not forgotten."""
    return not facts.partial and not facts.forgotten and facts.present_copies >= min_copies


def newest_good_backup(snapshots: Iterable[BackupFacts], min_copies: int
                       ) -> dt.datetime | None:
    """The time of the newest good backup among ``snapshots``, or None."""
    times = [facts.time for facts in snapshots if is_good_backup(facts, min_copies)]
    return max(times, default=None)


def assess(*, status: str, last_backup_at: dt.datetime | None,
           enrolled_at: dt.datetime | None, rpo: dt.timedelta | None,
           now: dt.datetime) -> Lateness:
    """Whether a system is late at ``now``.

    Only an enrolled system with an RPO can be late: when its newest good backup
    (``last_backup_at``) is older than ``rpo``, or it has none and enrolled more than
    ``rpo`` ago. A backup time in the future (a skewed clock) counts as age zero.
    """
    age = max(now - last_backup_at, dt.timedelta(0)) if last_backup_at else None
    if status != "enrolled" or rpo is None:
        return Lateness(age=age, late=False)
    if age is not None:
        return Lateness(age=age, late=age > rpo)
    return Lateness(age=None, late=enrolled_at is not None and now - enrolled_at > rpo)


@dataclass(frozen=True)
class SystemStatus:
    system: str
    department: str
    policy: str | None
    status: str
    hostname: str | None
    enrolled_at: dt.datetime | None
    last_backup_at: dt.datetime | None
    age: dt.timedelta | None
    rpo: dt.timedelta | None
    late: bool
    snapshots: int
    last_seen_at: dt.datetime | None
    backup_requested: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "department": self.department,
            "policy": self.policy,
            "status": self.status,
            "hostname": self.hostname,
            "enrolled_at": self.enrolled_at,
            "last_backup_at": self.last_backup_at,
            "age_seconds": self.age.total_seconds() if self.age is not None else None,
            "age": _short(self.age),
            "rpo": format_duration(self.rpo) if self.rpo is not None else None,
            "rpo_seconds": self.rpo.total_seconds() if self.rpo is not None else None,
            "late": self.late,
            "snapshots": self.snapshots,
            "last_seen_at": self.last_seen_at,
            "backup_requested": self.backup_requested,
        }


def _short(age: dt.timedelta | None) -> str | None:
    """An age for people, to the minute: ``3d4h``, ``2h5m``, ``12m``, ``0m``."""
    if age is None:
        return None
    minutes = int(age.total_seconds()) // 60
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    return f"{minutes}m"


def totals(statuses: Iterable[SystemStatus]) -> dict[str, int]:
    """Counts over all systems: ``systems``, ``enrolled``, ``pending``, ``late``."""
    statuses = list(statuses)
    return {
        "systems": len(statuses),
        "enrolled": sum(s.status == "enrolled" for s in statuses),
        "pending": sum(s.status == "pending" for s in statuses),
        "late": sum(s.late for s in statuses),
    }


def system_statuses(catalog: Catalog, now: dt.datetime | None = None) -> list[SystemStatus]:
    """Every system's standing against its policy's RPO at ``now``, by name."""
    now = now or utcnow()
    with catalog.session() as session:
        systems = list(session.scalars(
            sa.select(System).options(selectinload(System.department),
                                      selectinload(System.policy))
            .order_by(System.name)))
        present = (sa.select(SnapshotCopy.snapshot_id,
                             sa.func.count().label("present"))
                   .where(SnapshotCopy.state == "present")
                   .group_by(SnapshotCopy.snapshot_id).subquery())
        facts: dict[int, list[BackupFacts]] = {}
        for system_id, time, partial, status, count in session.execute(
                sa.select(Snapshot.system_id, Snapshot.time, Snapshot.partial,
                          Snapshot.status, sa.func.coalesce(present.c.present, 0))
                .outerjoin(present, present.c.snapshot_id == Snapshot.id)):
            facts.setdefault(system_id, []).append(BackupFacts(
                time=time, partial=partial, present_copies=count,
                forgotten=status == "forgotten"))
    result = []
    for system in systems:
        document = system.policy.document if system.policy is not None else {}
        rpo = parse_duration(document["rpo"]) if document.get("rpo") else None
        last = newest_good_backup(facts.get(system.id, []), int(document.get("min_copies", 1)))
        standing = assess(status=system.status, last_backup_at=last,
                          enrolled_at=system.enrolled_at, rpo=rpo, now=now)
        result.append(SystemStatus(
            system=system.name, department=system.department.name,
            policy=system.policy.name if system.policy is not None else None,
            status=system.status, hostname=system.hostname, enrolled_at=system.enrolled_at,
            last_backup_at=last, age=standing.age, rpo=rpo, late=standing.late,
            snapshots=len(facts.get(system.id, [])), last_seen_at=system.last_seen_at,
            backup_requested=system.backup_requested_at is not None,
        ))
    return result


def store_coverage(catalog: Catalog, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Per store, by name: how much verification has proven intact
    (:func:`drd.verification.coverage_report`): ``coverage``, ``oldest_unverified_seconds``
    and the bytes and objects tracked."""
    from drd.verification import coverage_report

    return [{"store": name} | value.as_dict()
            for name, value in sorted(coverage_report(catalog, now).items())]
