"""One pass of the alert rules: read the facts, evaluate, raise and resolve to match.

:func:`gather_facts` reads what the rules need from the catalog in one session;
:func:`run_rules` evaluates them (:func:`drd.alerting.rules.evaluate`), then raises and
resolves alerts as :func:`drd.alerting.rules.reconcile` says, in one transaction. The
leader's watch (:mod:`drd.daemon.watch`) runs it on a timer; ``drd alerts check`` once.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drd.alerting import rules
from drd.alerting.rules import (
    DrillFacts,
    ExpectedAlert,
    Facts,
    KeyWorkFacts,
    LockFacts,
    OpenAlert,
    ReplicaFacts,
    RuleSettings,
    StoreFacts,
    SystemFacts,
)
from drd.catalog import Catalog
from drd.catalog.models import Alert, Drill, Policy, Replica, Snapshot, StoreCredential, System
from drd.catalog.models import Store as StoreRow
from drd.catalog.types import utcnow
from drd.secrets import mask
from drd.services import alerts
from drd.services.status import system_statuses
from policies.cron import longest_gap
from restore_drills.plan import settings_from_policy

log = logging.getLogger("drd.alerts.rules")


def _moment(value: Any) -> dt.datetime | None:
    """An RFC 3339 time an agent sent (kept as JSON text), or None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


@lru_cache(maxsize=256)
def _interval(schedule: str) -> dt.timedelta | None:
    try:
        return longest_gap(schedule)
    except ValueError:
        return None


def gather_facts(catalog: Catalog, now: dt.datetime) -> Facts:
    """What the rules need to know, read from the catalog at ``now``."""
    statuses = {status.system: status for status in system_statuses(catalog, now)}
    with catalog.session() as session:
        store_rows = list(session.scalars(sa.select(StoreRow).order_by(StoreRow.name)))
        stores = tuple(StoreFacts(row.id, row.name, bool(row.object_lock), row.reachable,
                                  row.check_error, row.checked_at) for row in store_rows)
        by_name = {store.name: store for store in stores}
        store_names = {store.store_id: store.name for store in stores}
        systems = []
        drills = []
        passed: dict[tuple[int, int], dt.datetime] = {
            (system_id, store_id): started for system_id, store_id, started in session.execute(
                sa.select(Drill.system_id, Drill.store_id, sa.func.max(Drill.started_at))
                .where(Drill.passed.is_(True)).group_by(Drill.system_id, Drill.store_id))}
        for system_id, name, heartbeat, policy_document in session.execute(
                sa.select(System.id, System.name, System.last_heartbeat, Policy.document)
                .outerjoin(Policy, Policy.id == System.policy_id).order_by(System.name)):
            status = statuses.get(name)
            if status is None:  # enrolled after the statuses were read
                continue
            said = heartbeat if isinstance(heartbeat, dict) else {}
            failure = said.get("last_failure") if isinstance(said.get("last_failure"),
                                                               dict) else {}
            systems.append(SystemFacts(
                system_id=system_id, name=name, status=status.status, late=status.late,
                last_backup_at=status.last_backup_at, rpo=status.rpo,
                enrolled_at=status.enrolled_at,
                agent_last_success=_moment(said.get("last_backup_at")),
                last_failure_at=_moment(failure.get("at")),
                last_failure_error=mask(str(failure.get("error") or ""))[:200]))
            document = policy_document or {}
            if status.status == "enrolled" and document.get("drill"):
                policy_stores = tuple(store for store in document.get("stores") or []
                                      if store in by_name)
                drills.append(DrillFacts(
                    system_id=system_id, system=name,
                    period=settings_from_policy(document, Path(".")).period,
                    stores=policy_stores, enrolled_at=status.enrolled_at,
                    last_passed={store: passed.get((system_id, by_name[store].store_id))
                                 for store in policy_stores}))
        # per replica, the oldest snapshot not yet safe there: reported after its watermark
        waiting = (sa.select(sa.func.min(Snapshot.reported_at))
                   .where(Snapshot.system_id == Replica.system_id, Snapshot.status == "active",
                          sa.or_(Replica.watermark_at.is_(None),
                                 Snapshot.reported_at > Replica.watermark_at))
                   .correlate(Replica).scalar_subquery())
        replicas = tuple(
            ReplicaFacts(system_id=replica.system_id, system=system_name,
                         store_id=replica.store_id,
                         store=store_names.get(replica.store_id, "?"),
                         lag_objects=replica.lag_objects, lag_bytes=replica.lag_bytes,
                         watermark_at=replica.watermark_at, waiting_since=waiting_since)
            for replica, system_name, waiting_since in session.execute(
                sa.select(Replica, System.name, waiting)
                .join(System, System.id == Replica.system_id)
                .where(System.status == "enrolled")))
        locks = []
        for policy in session.scalars(sa.select(Policy).order_by(Policy.name)):
            document = policy.document or {}
            schedule = document.get("schedule")
            locks.append(LockFacts(
                policy=policy.name, object_lock_days=int(document.get("object_lock_days") or 0),
                retention=dict(document.get("retention") or {}),
                interval=_interval(schedule) if isinstance(schedule, str) else None,
                stores=tuple(by_name[store] for store in document.get("stores") or []
                             if store in by_name)))
        keys = tuple(
            KeyWorkFacts(system_id=row.system_id, system=system_name, store_id=row.store_id,
                         store=store_names.get(row.store_id, "?"), state=row.state,
                         attempts=row.attempts, reason=row.reason,
                         last_error=mask(row.last_error or "")[:200] or None)
            for row, system_name in session.execute(
                sa.select(StoreCredential, System.name)
                .join(System, System.id == StoreCredential.system_id)
                .where(StoreCredential.state.in_(("pending", "disabling")))))
    return Facts(systems=tuple(systems), stores=stores, replicas=replicas,
                 drills=tuple(drills), locks=tuple(locks), keys=keys)


@dataclass(frozen=True)
class RulePass:
    """What one evaluation opened (or changed) and resolved."""

    raised: list[ExpectedAlert]
    resolved: list[OpenAlert]

    def as_dict(self) -> dict[str, Any]:
        return {"raised": [{"kind": alert.kind, "severity": alert.severity,
                            "message": alert.message} for alert in self.raised],
                "resolved": [{"kind": alert.kind, "message": alert.message}
                             for alert in self.resolved]}


def run_rules(catalog: Catalog, settings: RuleSettings | None = None,
              now: dt.datetime | None = None) -> RulePass:
    """Evaluate the rules at ``now`` and raise and resolve alerts to match.

    Raises :class:`~drd.errors.OperationError` when the catalog fails. Another pass at
    the same time (``drd alerts check`` next to the leader's watch) is no failure.
    """
    now = now or utcnow()
    settings = settings or RuleSettings()
    should = rules.evaluate(gather_facts(catalog, now), settings, now)
    with catalog.session() as session:
        open_alerts = {alert.open_key: OpenAlert(alert.open_key, alert.kind, alert.message,
                                                 alert.severity)
                       for alert in session.scalars(sa.select(Alert).where(
                           Alert.open_key.is_not(None), Alert.kind.in_(rules.OWNED_KINDS)))}
        to_raise, to_resolve = rules.reconcile(should, open_alerts)
        for alert in to_raise:
            _raise(session, alert, now)
        for alert in to_resolve:
            kind, system_id, store_id, subject = rules.key_parts(alert.key)
            alerts.resolve_alert(session, kind, system_id=system_id, store_id=store_id,
                                 subject=subject, now=now)
    return RulePass(to_raise, to_resolve)


def _raise(session: Session, alert: ExpectedAlert, now: dt.datetime) -> None:
    """Raise ``alert`` in a savepoint of ``session``. Another pass (``drd alerts check``
    next to the leader's watch) may open the same key between our read and our insert:
    the unique ``open_key`` refuses ours, and raising again repeats theirs."""
    for attempt in (1, 2):
        try:
            with session.begin_nested():
                alerts.raise_alert(session, alert.kind, alert.message,
                                   system_id=alert.system_id, store_id=alert.store_id,
                                   subject=alert.subject, severity=alert.severity,
                                   details=dict(alert.details), now=now)
            return
        except sa.exc.IntegrityError:
            if attempt == 2:  # opened and resolved again under us: the next pass sees it
                log.warning("alert %s (%s) not raised: another pass changed it at the "
                            "same time", alert.kind, alert.message)
