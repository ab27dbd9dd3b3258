"""Alerts: what an operator must see, kept in the catalog and written to the log.

An alert about the same thing (``kind``, system, store, ``subject``) that is still open
is raised once: raising it again counts it and updates its message. Resolving clears it.
Channels (webhooks, email) come later; for now the log line is the notification.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drd.catalog import Catalog, audit
from drd.catalog.models import Alert, System
from drd.catalog.models import Store as StoreRow
from drd.catalog.types import utcnow
from drd.errors import UserError

log = logging.getLogger("drd.alerts")

KINDS = ("damage", "check_failed", "replication_failed", "retention_failed", "drill_failed",
         "drill_overdue", "job_failed",
         # a copy of config, the sealed password or a manifest differs from the catalog's
         # record; config of a system whose digest cannot be known (drd.recorded)
         "tamper", "unverifiable",
         # a snapshot report the stores contradict (drd.confirmation)
         "forged_report",
         # raised and resolved by the rules (drd.alerting.rules)
         "rpo_breached", "backup_failed", "store_down", "replication_lag", "object_lock_short",
         "keys_not_disabled", "keys_not_made")


def open_key(kind: str, system_id: int | None, store_id: int | None, subject: str) -> str:
    return f"{kind}:{system_id or '-'}:{store_id or '-'}:{subject}"[:300]


def raise_alert(session: Session, kind: str, message: str, *, system_id: int | None = None,
                store_id: int | None = None, subject: str = "", severity: str = "critical",
                details: dict[str, Any] | None = None, now: dt.datetime | None = None) -> Alert:
    """Open (or repeat) an alert, in ``session``'s transaction, and log it.

    ``message`` and ``details`` must hold no secret.
    """
    now = now or utcnow()
    key = open_key(kind, system_id, store_id, subject)
    alert = session.scalar(sa.select(Alert).where(Alert.open_key == key))
    if alert is None:
        alert = Alert(kind=kind, severity=severity, system_id=system_id, store_id=store_id,
                      open_key=key, message=message, details=details or {}, opened_at=now,
                      last_seen_at=now, count=1)
        session.add(alert)
        log.error("ALERT %s: %s", kind, message)
    else:
        alert.count += 1
        alert.last_seen_at = now
        alert.message = message
        alert.details = details or {}
        log.warning("ALERT %s (again, %d times): %s", kind, alert.count, message)
    session.flush()
    return alert


def resolve_alert(session: Session, kind: str, *, system_id: int | None = None,
                  store_id: int | None = None, subject: str = "",
                  now: dt.datetime | None = None) -> bool:
    """Resolve the open alert about this thing; False if none was open."""
    alert = session.scalar(sa.select(Alert).where(
        Alert.open_key == open_key(kind, system_id, store_id, subject)))
    if alert is None:
        return False
    alert.open_key = None
    alert.resolved_at = now or utcnow()
    log.info("alert %s resolved: %s", kind, alert.message)
    return True


def resolve_by_operator(catalog: Catalog, alert_id: int, *, actor: str, note: str = ""
                        ) -> AlertView:
    """Resolve the open alert ``alert_id`` by hand (``drd alerts resolve``), with an
    ``alert.resolve`` audit entry naming ``actor`` and ``note``; return it as resolved.

    For alerts nothing resolves by itself (``forged_report``: a person has looked into
    the system). An alert the rules own comes back at their next pass if its cause
    remains. Raises :class:`UserError` for no such alert, or one resolved already.
    """
    with catalog.session() as session:
        alert = session.get(Alert, alert_id)
        if alert is None:
            raise UserError(f"no alert {alert_id} (see drd alerts)")
        if alert.resolved_at is not None:
            raise UserError(f"alert {alert_id} was resolved at "
                            f"{alert.resolved_at.isoformat(timespec='seconds')} already")
        alert.open_key = None
        alert.resolved_at = utcnow()
        system = session.get(System, alert.system_id) if alert.system_id else None
        store = session.get(StoreRow, alert.store_id) if alert.store_id else None
        audit.record(session, actor, "alert.resolve", system.name if system else None,
                     alert=alert.id, kind=alert.kind, store=store.name if store else None,
                     message=alert.message, note=note)
        log.info("alert %s resolved by %s: %s", alert.kind, actor, alert.message)
        return AlertView(id=alert.id, kind=alert.kind, severity=alert.severity,
                         system=system.name if system else None,
                         store=store.name if store else None, message=alert.message,
                         opened_at=alert.opened_at, last_seen_at=alert.last_seen_at,
                         count=alert.count, resolved_at=alert.resolved_at,
                         details=dict(alert.details or {}))


@dataclass(frozen=True)
class AlertView:
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

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "severity": self.severity,
                "system": self.system, "store": self.store, "message": self.message,
                "opened_at": self.opened_at, "last_seen_at": self.last_seen_at,
                "count": self.count, "resolved_at": self.resolved_at,
                "details": self.details}


def list_alerts(catalog: Catalog, open_only: bool = True) -> list[AlertView]:
    """Alerts, newest first (open ones only unless ``open_only`` is False)."""
    with catalog.session() as session:
        query = (sa.select(Alert, System.name, StoreRow.name)
                 .outerjoin(System, Alert.system_id == System.id)
                 .outerjoin(StoreRow, Alert.store_id == StoreRow.id)
                 .order_by(Alert.last_seen_at.desc(), Alert.id.desc()))
        if open_only:
            query = query.where(Alert.resolved_at.is_(None))
        return [AlertView(id=a.id, kind=a.kind, severity=a.severity, system=system,
                          store=store, message=a.message, opened_at=a.opened_at,
                          last_seen_at=a.last_seen_at, count=a.count,
                          resolved_at=a.resolved_at, details=dict(a.details or {}))
                for a, system, store in session.execute(query)]
