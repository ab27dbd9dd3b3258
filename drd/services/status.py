"""``drd status``: is every system inside its RPO?

The decisions are pure functions with unit tests: which snapshot counts as a good
backup (:func:`is_good_backup`), whether a system is late (:func:`assess`) and the
centre's overall verdict (:func:`overall_verdict`). The catalog work is summed up by the
database, never by loading every snapshot: :func:`newest_good_snapshots` asks for each
system's newest good snapshot (an index walk on ``(system_id, time)`` that stops at the
first good one), and :func:`ledger_coverage` sums the verification ledger per system and
store; each picks the system's policy's figures (``min_copies``, the verification
period) with a ``CASE`` on its policy id, so one query serves every policy.

A system is late when it is enrolled and its newest good backup is older than its
policy's RPO -- or, before its first good backup, when it enrolled longer than one RPO
ago. A good backup is an ``active`` snapshot (a report the centre has confirmed in the
stores, not forgotten: never ``unconfirmed`` or ``rejected``) that is not partial and
whose copies are present in at least ``min_copies`` stores, the policy's definition of
durable.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drd.catalog import Catalog
from drd.catalog.models import (
    Department,
    Policy,
    Snapshot,
    SnapshotCopy,
    StoreObject,
    System,
    Tombstone,
)
from drd.catalog.models import Store as StoreRow
from drd.catalog.types import UTCDateTime, utcnow
from drd.services.scope import Scope, statement
from drd.verification.select import DEFAULT_PERIOD, Coverage, CoverageCounts, coverage_from_counts
from policies import format_duration, parse_duration

VERDICTS = ("ok", "warning", "critical")


@dataclass(frozen=True)
class BackupFacts:
    """What :func:`newest_good_backup` needs to know of one snapshot; ``status`` is the
    snapshot's (:data:`~drd.catalog.models.SNAPSHOT_STATES`)."""

    time: dt.datetime
    partial: bool
    present_copies: int
    status: str = "active"


@dataclass(frozen=True)
class Lateness:
    """A system's standing against its RPO at one moment."""

    age: dt.timedelta | None  # since the newest good backup; None before the first
    late: bool


def is_good_backup(facts: BackupFacts, min_copies: int) -> bool:
    """True when a snapshot counts as a backup: confirmed and kept (``active``), complete,
    durable."""
    return (facts.status == "active" and not facts.partial
            and facts.present_copies >= min_copies)


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


def short_age(seconds: float | None) -> str | None:
    """:func:`_short` of a number of seconds (as the API gives ages)."""
    return None if seconds is None else _short(dt.timedelta(seconds=seconds))


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


def overall_verdict(*, late: int, alerts: dict[str, int], stores_down: int) -> str:
    """The centre's verdict at a glance (pure): ``critical``, ``warning`` or ``ok``.

    ``critical`` when any system is late, any open alert is critical, or any store is
    down (its last probe failed); ``warning`` when any other alert is open; else ``ok``.
    ``alerts`` counts open alerts by severity.
    """
    if late or alerts.get("critical", 0) or stores_down:
        return "critical"
    if any(count for severity, count in alerts.items() if severity != "critical"):
        return "warning"
    return "ok"


@dataclass(frozen=True)
class PolicyRules:
    """What the status needs of a policy: ``min_copies``, ``rpo``, the drill targets
    (``rto``, ``drill_rpo``: the drill plan's own where set) and the verification period."""

    name: str | None = None
    min_copies: int = 1
    rpo: dt.timedelta | None = None
    rto: dt.timedelta | None = None
    drill_rpo: dt.timedelta | None = None
    verification_period: dt.timedelta = DEFAULT_PERIOD


def _duration(value: Any) -> dt.timedelta | None:
    try:
        return parse_duration(value) if value else None
    except ValueError:
        return None


def rules_of(name: str | None, document: dict[str, Any] | None) -> PolicyRules:
    """A policy document's :class:`PolicyRules` (pure; a missing field takes its default)."""
    document = document or {}
    drill = document.get("drill") or {}
    verification = document.get("verification") or {}
    rpo, rto = _duration(document.get("rpo")), _duration(document.get("rto"))
    try:
        min_copies = max(1, int(document.get("min_copies", 1)))
    except (TypeError, ValueError):
        min_copies = 1
    return PolicyRules(name=name, min_copies=min_copies, rpo=rpo,
                       rto=_duration(drill.get("rto")) or rto,
                       drill_rpo=_duration(drill.get("rpo")) or rpo,
                       verification_period=(_duration(verification.get("period"))
                                            or DEFAULT_PERIOD))


_POLICIES = sa.select(Policy.id, Policy.name, Policy.document).order_by(Policy.id)


def policy_rules(session: Session) -> dict[int | None, PolicyRules]:
    """Every policy's rules by policy id; ``None`` (no policy) has the defaults."""
    rules: dict[int | None, PolicyRules] = {None: PolicyRules()}
    for policy_id, name, document in session.execute(_POLICIES):
        rules[policy_id] = rules_of(name, document)
    return rules


def per_policy(rules: dict[int | None, PolicyRules], value, type_: Any = None) -> Any:
    """A SQL expression on ``System.policy_id``: ``value(rules)`` of the system's policy
    (of ``rules[None]``, the defaults, for a system without one), so that one query
    serves systems of every policy."""
    def literal(policy: PolicyRules) -> Any:
        return sa.literal(value(policy), type_=type_)

    whens = {policy_id: literal(policy) for policy_id, policy in rules.items()
             if policy_id is not None}
    default = literal(rules.get(None, PolicyRules()))
    return sa.case(whens, value=System.policy_id, else_=default) if whens else default


def per_policy_parameter(rules: dict[int | None, PolicyRules], name: str, value,
                         type_: Any) -> tuple[Any, dict[str, Any]]:
    """As :func:`per_policy`, with each policy's value in a bound parameter: the
    expression (the same for the same policy ids, so a statement holding it can be kept)
    and the parameters for this call."""
    params = {f"{name}_default": value(rules.get(None, PolicyRules()))}
    whens = {}
    for policy_id, policy in rules.items():
        if policy_id is not None:
            whens[policy_id] = sa.bindparam(f"{name}_{policy_id}", type_=type_)
            params[f"{name}_{policy_id}"] = value(policy)
    default = sa.bindparam(f"{name}_default", type_=type_)
    expression = sa.case(whens, value=System.policy_id, else_=default) if whens else default
    return expression, params


def _good_snapshot(min_copies: Any):
    """A scalar subquery, correlated to ``System``: the id of its newest good snapshot
    (``min_copies`` a number or an expression on ``System``)."""
    present = (sa.select(sa.func.count()).select_from(SnapshotCopy)
               .where(SnapshotCopy.snapshot_id == Snapshot.id,
                      SnapshotCopy.state == "present")
               .correlate(Snapshot).scalar_subquery())
    return (sa.select(Snapshot.id)
            .where(Snapshot.system_id == System.id, Snapshot.status == "active",
                   Snapshot.partial.is_(False), present >= min_copies)
            # by time alone, so that the (system_id, time) index gives the order
            .order_by(Snapshot.time.desc()).limit(1)
            .correlate(System).scalar_subquery())


def newest_good_snapshots(session: Session, rules: dict[int | None, PolicyRules],
                          where: Scope | Any = None) -> dict[int, tuple[int, str, dt.datetime]]:
    """Per system id (of the systems matching ``where``, a :class:`Scope` or a condition
    on ``System``; all without one): its newest good snapshot as ``(snapshot row id,
    restic id, time)``; systems without one are left out.

    One query: per system, an index walk on ``(system_id, time)`` from the newest
    snapshot that stops at the first good one, its policy's ``min_copies`` picked by a
    ``CASE`` on the system's policy.
    """
    scope = Scope.of(where)
    copies = tuple((policy_id, policy.min_copies) for policy_id, policy in rules.items())

    def build(condition: Any) -> Any:
        good = _good_snapshot(per_policy(rules, lambda policy: policy.min_copies))
        return (sa.select(System.id, Snapshot.id, Snapshot.restic_id, Snapshot.time)
                .join(Snapshot, Snapshot.id == good).where(condition))

    query = statement(("newest_good_snapshots", copies), scope, build)
    return {row[0]: (row[1], row[2], row[3])
            for row in session.execute(query, dict(scope.params))}


def system_statuses(catalog: Catalog, now: dt.datetime | None = None) -> list[SystemStatus]:
    """Every system's standing against its policy's RPO at ``now``, by name."""
    now = now or utcnow()
    with catalog.read_session() as session:
        rules = policy_rules(session)
        newest = newest_good_snapshots(session, rules)
        counts = dict(session.execute(
            sa.select(Snapshot.system_id, sa.func.count()).group_by(Snapshot.system_id)).all())
        systems = session.execute(
            sa.select(System.id, System.name, Department.name.label("department"),
                      System.policy_id, System.status, System.hostname, System.enrolled_at,
                      System.last_seen_at, System.backup_requested_at)
            .join(Department, Department.id == System.department_id)
            .order_by(System.name)).all()
    result = []
    for system in systems:
        policy = rules.get(system.policy_id, PolicyRules())
        last = newest[system.id][2] if system.id in newest else None
        standing = assess(status=system.status, last_backup_at=last,
                          enrolled_at=system.enrolled_at, rpo=policy.rpo, now=now)
        result.append(SystemStatus(
            system=system.name, department=system.department, policy=policy.name,
            status=system.status, hostname=system.hostname, enrolled_at=system.enrolled_at,
            last_backup_at=last, age=standing.age, rpo=policy.rpo, late=standing.late,
            snapshots=counts.get(system.id, 0), last_seen_at=system.last_seen_at,
            backup_requested=system.backup_requested_at is not None,
        ))
    return result


def ledger_coverage(session: Session, rules: dict[int | None, PolicyRules], now: dt.datetime,
                    where: Scope | Any = None) -> dict[tuple[int, int], CoverageCounts]:
    """The verification ledger summed up by the database per ``(system id, store id)``,
    for the systems matching ``where`` (a :class:`Scope` or a condition on ``System``),
    tombstoned keys left out: what :func:`drd.verification.select.coverage` counts,
    without loading a row. One query; each system's verification period is picked by a
    ``CASE`` on its policy."""
    scope = Scope.of(where)
    since, params = per_policy_parameter(
        rules, "verified_since", lambda policy: now - policy.verification_period,
        UTCDateTime())

    def build(condition: Any) -> Any:
        tombstoned = sa.exists().where(Tombstone.system_id == StoreObject.system_id,
                                       Tombstone.key == StoreObject.key)
        covered = sa.and_(StoreObject.state == "present",
                          StoreObject.verified_at.is_not(None),
                          StoreObject.verified_at >= since)
        return (sa.select(
            StoreObject.system_id, StoreObject.store_id, sa.func.count(),
            sa.func.coalesce(sa.func.sum(StoreObject.size), 0),
            sa.func.coalesce(sa.func.sum(sa.case((covered, 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((covered, StoreObject.size), else_=0)), 0),
            sa.func.min(sa.func.coalesce(StoreObject.verified_at, StoreObject.first_seen_at),
                        type_=UTCDateTime()))
            .join(System, System.id == StoreObject.system_id)
            .where(~tombstoned, condition)
            .group_by(StoreObject.system_id, StoreObject.store_id))

    query = statement(("ledger_coverage", tuple(rules)), scope, build)
    result: dict[tuple[int, int], CoverageCounts] = {}
    for row in session.execute(query, params | dict(scope.params)):
        result[(row[0], row[1])] = CoverageCounts(
            objects=int(row[2]), bytes=int(row[3]), objects_verified=int(row[4]),
            bytes_verified=int(row[5]), oldest_anchor=row[6])
    return result


def coverage_per_store(session: Session, now: dt.datetime,
                       rules: dict[int | None, PolicyRules] | None = None
                       ) -> dict[int, Coverage]:
    """Per store id, over all systems: :class:`~drd.verification.select.Coverage` (every
    registered store is listed; one the ledger knows nothing of has a ratio of None)."""
    counts = ledger_coverage(session, rules if rules is not None else policy_rules(session),
                             now)
    parts: dict[int, list[CoverageCounts]] = {
        store_id: [] for store_id in session.scalars(sa.select(StoreRow.id))}
    for (_, store_id), value in counts.items():
        parts.setdefault(store_id, []).append(value)
    return {store_id: coverage_from_counts(values, now) for store_id, values in parts.items()}


def store_coverage(catalog: Catalog, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Per store, by name: how much verification has proven intact
    (as :func:`drd.verification.coverage_report` says): ``coverage``,
    ``oldest_unverified_seconds`` and the bytes and objects tracked."""
    now = now or utcnow()
    with catalog.read_session() as session:
        names = dict(session.execute(sa.select(StoreRow.id, StoreRow.name)).all())
        coverage = coverage_per_store(session, now)
    return sorted(({"store": names[store_id]} | value.as_dict()
                   for store_id, value in coverage.items() if store_id in names),
                  key=lambda entry: entry["store"])
