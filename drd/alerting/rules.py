"""The alert rules: which alerts should be open, given what the catalog knows (pure).

:func:`evaluate` takes the facts (:class:`Facts`, gathered by
:mod:`drd.alerting.evaluate`), the thresholds (:class:`RuleSettings`) and ``now``, and returns
the alerts that should be open, by their open key (:func:`drd.services.alerts.open_key`).
:func:`reconcile` compares them with the open alerts of the kinds the rules own
(:data:`OWNED_KINDS`): what to raise (new, or its message or severity changed) and what
to resolve (open, no longer holds). Neither reads a clock or the catalog.

The rules (``docs/alerts.md``, "Rules"):

- ``rpo_breached``: an enrolled system late against its policy's RPO
  (:func:`drd.services.status.assess`: its newest good backup is older than the RPO, or
  it has none and enrolled more than one RPO ago);
- ``backup_failed``: the agent's last backup attempt (heartbeat ``last_failure``) failed
  after its last good backup (the newest of the catalog's good backup and the agent's own
  ``last_backup_at``);
- ``store_down``: the probe found the store unreachable (``stores.reachable`` False);
- ``replication_lag``: a replica lacks more than ``replication_lag_objects`` objects or
  ``replication_lag_bytes`` bytes, or a snapshot of the system has waited more than
  ``replication_lag_age`` since its report to be safe there (beyond the watermark);
- ``drill_overdue``: a system with a drill plan has stores without a passing drill in the
  plan's period (the decision and message of ``restore_drills.records.flag_overdue``,
  which raises the same alert after each drill: the two agree);
- ``object_lock_short``: a policy asks for Object Lock (``object_lock_days`` > 0) and one
  of its stores has none, or a store with Object Lock locks for fewer days than the
  retention needs (:func:`lock_days_needed`);
- ``keys_not_disabled``: a system's own key that must be disabled (retired, token
  revoked, store left the policy) has failed to be at least :data:`KEY_ATTEMPTS` times:
  it still works in that store (critical: after a compromise, this is the open door);
- ``keys_not_made``: a system's key could not be made in a store after
  :data:`KEY_ATTEMPTS` tries: the agent backs up to the other stores only (warning).

``damage`` (verification) and ``drill_failed`` (drills) are raised and resolved where
they are found; the rules do not own them.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from drd.services.alerts import open_key
from policies import format_duration, parse_duration
from restore_drills.rotation import overdue

OWNED_KINDS = ("rpo_breached", "backup_failed", "store_down", "replication_lag",
               "drill_overdue", "object_lock_short", "keys_not_disabled", "keys_not_made")
# failed store calls after which a key not yet disabled (or made) is alerted: the first
# retries come after 15 and 30 s, so this is under a minute of trying
KEY_ATTEMPTS = 2
GIB = 1 << 30
DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class RuleSettings:
    """Thresholds and intervals, from ``alerts.rules`` in ``drd.yaml`` (see
    :func:`rule_settings`)."""

    replication_lag_objects: int = 1000
    replication_lag_bytes: int = GIB
    replication_lag_age: dt.timedelta = DAY
    probe_interval: float = 60.0
    rules_interval: float = 60.0


_SETTING_KEYS = {"replication_lag_objects", "replication_lag_bytes", "replication_lag_age",
                 "probe_interval", "rules_interval"}


def rule_settings(config: Any) -> RuleSettings:
    """The rule settings of ``config.alerts["rules"]``, defaults for what is left out.

    ``replication_lag_age`` is a duration (``"1d"``, or seconds); the intervals are
    seconds (or a duration). Raises ``ValueError`` naming the bad key.
    """
    rules = (getattr(config, "alerts", None) or {}).get("rules") or {}
    if not isinstance(rules, Mapping):
        raise ValueError("alerts.rules: must be a mapping")
    unknown = sorted(set(rules) - _SETTING_KEYS)
    if unknown:
        raise ValueError(f"alerts.rules: unknown key(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name in ("replication_lag_objects", "replication_lag_bytes"):
        if name in rules:
            value = rules[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"alerts.rules.{name}: must be a whole number >= 0")
            values[name] = value
    for name in ("replication_lag_age", "probe_interval", "rules_interval"):
        if name in rules:
            seconds = _seconds(rules[name], f"alerts.rules.{name}")
            values[name] = dt.timedelta(seconds=seconds) if name.endswith("age") else seconds
    return RuleSettings(**values)


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{where}: must be a duration such as 60s or 1d")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        try:
            seconds = parse_duration(str(value)).total_seconds()
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
    if seconds <= 0:
        raise ValueError(f"{where}: must be longer than zero")
    return seconds


# -- the facts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SystemFacts:
    """A system's standing (``late``, ``last_backup_at`` from
    :func:`drd.services.status.system_statuses`) and what its agent last said."""

    system_id: int
    name: str
    status: str
    late: bool = False
    last_backup_at: dt.datetime | None = None
    rpo: dt.timedelta | None = None
    enrolled_at: dt.datetime | None = None
    agent_last_success: dt.datetime | None = None
    last_failure_at: dt.datetime | None = None
    last_failure_error: str = ""


@dataclass(frozen=True)
class StoreFacts:
    store_id: int
    name: str
    object_lock: bool = False
    reachable: bool | None = None
    check_error: str | None = None
    checked_at: dt.datetime | None = None


@dataclass(frozen=True)
class ReplicaFacts:
    """One system's repository on one store; ``waiting_since`` is when the oldest of the
    system's snapshots not yet safe there (reported after ``watermark_at``, or at all
    without one) was reported (None: nothing waits)."""

    system_id: int
    system: str
    store_id: int
    store: str
    lag_objects: int | None = None
    lag_bytes: int | None = None
    watermark_at: dt.datetime | None = None
    waiting_since: dt.datetime | None = None


@dataclass(frozen=True)
class DrillFacts:
    """A system with a drill plan: its stores in policy order and the start of each one's
    latest passing drill."""

    system_id: int
    system: str
    period: dt.timedelta
    stores: tuple[str, ...]
    last_passed: Mapping[str, dt.datetime | None] = field(default_factory=dict)
    enrolled_at: dt.datetime | None = None


@dataclass(frozen=True)
class LockFacts:
    """An applied policy's lock and retention, its backup interval (the longest gap of its
    schedule; None when unknown) and its registered stores."""

    policy: str
    object_lock_days: int
    retention: Mapping[str, Any]
    interval: dt.timedelta | None
    stores: tuple[StoreFacts, ...]


@dataclass(frozen=True)
class KeyWorkFacts:
    """A system's own key not in its final state: ``state`` is ``pending`` (to be made) or
    ``disabling`` (to be disabled), ``attempts`` the store calls that failed."""

    system_id: int
    system: str
    store_id: int
    store: str
    state: str
    attempts: int
    reason: str | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class Facts:
    systems: tuple[SystemFacts, ...] = ()
    stores: tuple[StoreFacts, ...] = ()
    replicas: tuple[ReplicaFacts, ...] = ()
    drills: tuple[DrillFacts, ...] = ()
    locks: tuple[LockFacts, ...] = ()
    keys: tuple[KeyWorkFacts, ...] = ()


@dataclass(frozen=True)
class ExpectedAlert:
    """An alert that should be open. ``message`` stays the same while the cause does (a
    pass that finds the same alert raises nothing); figures that change go in
    ``details``."""

    kind: str
    message: str
    system_id: int | None = None
    store_id: int | None = None
    subject: str = ""
    severity: str = "critical"
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return open_key(self.kind, self.system_id, self.store_id, self.subject)


@dataclass(frozen=True)
class OpenAlert:
    """An open alert as the catalog holds it (``key`` is its ``open_key``)."""

    key: str
    kind: str
    message: str
    severity: str


def key_parts(key: str) -> tuple[str, int | None, int | None, str]:
    """``(kind, system_id, store_id, subject)`` of an open key (the inverse of
    :func:`drd.services.alerts.open_key` for keys shorter than its 300 characters)."""
    kind, system, store, subject = (key.split(":", 3) + ["", "", ""])[:4]
    return (kind, None if system in ("-", "") else int(system),
            None if store in ("-", "") else int(store), subject)


# -- the rules -------------------------------------------------------------------------------


def _when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def rpo_breached(systems: Iterable[SystemFacts]) -> list[ExpectedAlert]:
    result = []
    for system in systems:
        if system.status != "enrolled" or not system.late or system.rpo is None:
            continue
        rpo = format_duration(system.rpo)
        if system.last_backup_at is not None:
            message = (f"{system.name}: newest good backup ({_when(system.last_backup_at)}) "
                       f"is older than its RPO of {rpo}")
        else:
            message = f"{system.name}: no good backup yet, and its RPO of {rpo} has passed"
        result.append(ExpectedAlert(
            "rpo_breached", message, system_id=system.system_id,
            details={"last_backup_at": _iso(system.last_backup_at),
                     "rpo_seconds": system.rpo.total_seconds()}))
    return result


def backup_failed(systems: Iterable[SystemFacts]) -> list[ExpectedAlert]:
    result = []
    for system in systems:
        failed = system.last_failure_at
        if system.status != "enrolled" or failed is None:
            continue
        good = [t for t in (system.last_backup_at, system.agent_last_success) if t is not None]
        if good and max(good) >= failed:
            continue
        result.append(ExpectedAlert(
            "backup_failed",
            f"{system.name}: the backup at {_when(failed)} failed: "
            f"{system.last_failure_error or 'no reason given'}",
            system_id=system.system_id,
            details={"failed_at": _iso(failed), "error": system.last_failure_error,
                     "last_good_at": _iso(max(good) if good else None)}))
    return result


def store_down(stores: Iterable[StoreFacts]) -> list[ExpectedAlert]:
    return [ExpectedAlert(
        "store_down", f"store {store.name} is unreachable: {store.check_error or 'no reason'}",
        store_id=store.store_id,
        details={"checked_at": _iso(store.checked_at)})
        for store in stores if store.reachable is False]


def replication_lag(replicas: Iterable[ReplicaFacts], settings: RuleSettings,
                    now: dt.datetime) -> list[ExpectedAlert]:
    """A replica over a lag threshold: objects or bytes missing after the last pass, or
    a snapshot waiting longer than ``replication_lag_age`` to be safe on the store."""
    result = []
    for replica in replicas:
        reasons = []
        if (replica.lag_objects or 0) > settings.replication_lag_objects:
            reasons.append(f"more than {settings.replication_lag_objects} objects missing")
        if (replica.lag_bytes or 0) > settings.replication_lag_bytes:
            reasons.append(f"more than {_size(settings.replication_lag_bytes)} missing")
        waiting = replica.waiting_since
        if waiting is not None and now - waiting > settings.replication_lag_age:
            reasons.append(f"a snapshot reported at {_when(waiting)} is not safe there yet "
                           f"(over {format_duration(settings.replication_lag_age)})")
        if reasons:
            result.append(ExpectedAlert(
                "replication_lag",
                f"replication of {replica.system} to {replica.store} lags: "
                + "; ".join(reasons),
                system_id=replica.system_id, store_id=replica.store_id, severity="warning",
                details={"lag_objects": replica.lag_objects, "lag_bytes": replica.lag_bytes,
                         "watermark_at": _iso(replica.watermark_at)}))
    return result


def drill_overdue(drills: Iterable[DrillFacts], now: dt.datetime) -> list[ExpectedAlert]:
    """As ``restore_drills.records.flag_overdue`` decides it (same key and message)."""
    result = []
    for facts in drills:
        if facts.enrolled_at is not None and now - facts.enrolled_at < facts.period:
            continue
        late = overdue(list(facts.stores), facts.last_passed, facts.period, now)
        if late:
            result.append(ExpectedAlert(
                "drill_overdue",
                f"{facts.system}: no passing restore drill within the plan's period from "
                f"{', '.join(late)}",
                system_id=facts.system_id, severity="warning",
                details={"stores": late, "period_seconds": facts.period.total_seconds()}))
    return result


def retention_need(retention: Mapping[str, Any], interval: dt.timedelta
                   ) -> dt.timedelta | None:
    """How far back the retention's finest tier reaches: what a lock must cover so that
    every recent restore point retention counts on cannot be deleted or overwritten.

    ``keep_daily: N`` needs N days (N backup intervals if backups are rarer than daily).
    Without ``keep_daily``, the longer of ``keep_last: N`` (N intervals) and
    ``keep_hourly: N`` (N hours, or N intervals if rarer). None when none of the three is
    set (only weekly and coarser tiers, ``keep_within``, or keep everything): no need.
    """
    daily = int(retention.get("keep_daily") or 0)
    if daily:
        return daily * max(DAY, interval)
    spans = []
    if last := int(retention.get("keep_last") or 0):
        spans.append(last * interval)
    if hourly := int(retention.get("keep_hourly") or 0):
        spans.append(hourly * max(dt.timedelta(hours=1), interval))
    return max(spans) if spans else None


def lock_days_needed(retention: Mapping[str, Any], interval: dt.timedelta) -> int:
    """:func:`retention_need` in whole days, rounded up (0: no need)."""
    need = retention_need(retention, interval)
    return math.ceil(need / DAY) if need else 0


def object_lock_short(locks: Iterable[LockFacts]) -> list[ExpectedAlert]:
    result = []
    for facts in locks:
        needed = lock_days_needed(facts.retention, facts.interval) if facts.interval else 0
        for store in facts.stores:
            if facts.object_lock_days > 0 and not store.object_lock:
                message = (f"policy {facts.policy} asks for {facts.object_lock_days} days of "
                           f"Object Lock, but store {store.name} has no Object Lock: its "
                           "copies can be deleted or overwritten")
            elif store.object_lock and facts.object_lock_days < needed:
                message = (f"policy {facts.policy} locks objects on {store.name} for "
                           f"{facts.object_lock_days} days, fewer than the {needed} days its "
                           "retention keeps recent snapshots: raise object_lock_days")
            else:
                continue
            result.append(ExpectedAlert(
                "object_lock_short", message, store_id=store.store_id, subject=facts.policy,
                severity="warning",
                details={"policy": facts.policy, "object_lock_days": facts.object_lock_days,
                         "days_needed": needed, "store_object_lock": store.object_lock}))
    return result


def key_work(keys: Iterable[KeyWorkFacts]) -> list[ExpectedAlert]:
    result = []
    for key in keys:
        if key.attempts < KEY_ATTEMPTS or key.state not in ("pending", "disabling"):
            continue
        error = f" (last error: {key.last_error})" if key.last_error else ""
        if key.state == "disabling":
            result.append(ExpectedAlert(
                "keys_not_disabled",
                f"{key.system}: its key in store {key.store} must be disabled "
                f"({key.reason or 'no longer wanted'}) and still works there: the store "
                "refused or could not be reached; drd keeps trying (drd status)",
                system_id=key.system_id, store_id=key.store_id,
                details={"attempts": key.attempts, "last_error": key.last_error or ""}))
        else:
            result.append(ExpectedAlert(
                "keys_not_made",
                f"{key.system}: no key of its own in store {key.store} yet, so its agent "
                f"backs up to the other stores only{error}",
                system_id=key.system_id, store_id=key.store_id, severity="warning",
                details={"attempts": key.attempts}))
    return result


def evaluate(facts: Facts, settings: RuleSettings, now: dt.datetime
             ) -> dict[str, ExpectedAlert]:
    """Every alert of :data:`OWNED_KINDS` that should be open at ``now``, by open key."""
    expected = [*rpo_breached(facts.systems), *backup_failed(facts.systems),
                *store_down(facts.stores), *replication_lag(facts.replicas, settings, now),
                *drill_overdue(facts.drills, now), *object_lock_short(facts.locks),
                *key_work(facts.keys)]
    return {alert.key: alert for alert in expected}


def reconcile(should: Mapping[str, ExpectedAlert], open_alerts: Mapping[str, OpenAlert]
              ) -> tuple[list[ExpectedAlert], list[OpenAlert]]:
    """``(to_raise, to_resolve)``: the alerts that should be open and are not, or are open
    with another message or severity; and the open alerts of :data:`OWNED_KINDS` that no
    longer hold. Open alerts of other kinds are never resolved here."""
    to_raise = [alert for key, alert in sorted(should.items())
                if key not in open_alerts
                or (open_alerts[key].message, open_alerts[key].severity)
                != (alert.message, alert.severity)]
    to_resolve = [alert for key, alert in sorted(open_alerts.items())
                  if alert.kind in OWNED_KINDS and key not in should]
    return to_raise, to_resolve


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _size(count: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", GIB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:g} {unit}"
    return f"{count} bytes"
