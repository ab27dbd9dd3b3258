"""The outbox of alert notifications: what to tell which channel, and telling it.

Jobs only write alert rows (:mod:`drd.services.alerts`). The notifier thread
(:mod:`drd.daemon.notify`) calls, every few seconds:

- :func:`enqueue`: decides with the pure :func:`plan_notifications` which
  (alert, channel, event) messages are due and queues them as ``pending`` rows of
  ``alert_notifications``, stamping ``alerts.notified_at``. The alerts it decides about are
  locked (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's ``BEGIN
  IMMEDIATE`` serialises writers), so two daemons never queue the same message twice.
- :func:`deliver_due`: claims each due pending row with a conditional ``UPDATE`` (one
  daemon wins it; the claim pushes ``next_attempt_at`` past :data:`CLAIM_LEASE`, so a
  daemon that dies mid-send leaves it to be sent again later -- delivery is at least once,
  and ``X-Drd-Delivery`` lets a receiver drop a duplicate), sends it outside any
  transaction, and records ``sent``, or a retry after :func:`retry_delay`, or ``failed``
  after the channel's ``attempts`` (or at once for a permanent refusal), with the reason
  masked on one line in ``last_error``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa

from drd.alerting import channels as channel_io
from drd.alerting.channels import AlertMessage, DeliveryError
from drd.alerting.settings import AlertSettings, Channel
from drd.catalog import Catalog
from drd.catalog.models import Alert, AlertNotification, System
from drd.catalog.models import Store as StoreRow
from drd.errors import UserError
from drd.secrets import mask

log = logging.getLogger("drd.alerts.notify")

RETRY_BASE = dt.timedelta(seconds=30)
RETRY_CAP = dt.timedelta(minutes=30)
CLAIM_LEASE = dt.timedelta(minutes=5)
"""How long a claimed row waits before another daemon may send it again (longer than any
channel's timeout: a daemon that died mid-send)."""
BATCH = 50
MAX_ERROR_LENGTH = 500
TOLD_EVENTS = ("opened", "repeated")
_AFTER = dt.timedelta(microseconds=1)


class AlertState(Protocol):
    """What planning needs of an alert (an :class:`~drd.catalog.models.Alert` row fits)."""

    id: int
    resolved_at: dt.datetime | None
    notified_at: dt.datetime | None


@dataclass(frozen=True, order=True)
class PlannedNotification:
    alert_id: int
    channel: str
    event: str


# -- pure decisions -----------------------------------------------------------------------


def plan_notifications(alerts: Iterable[AlertState], channels: Sequence[str],
                       sent: Collection[tuple[int, str, str]], now: dt.datetime,
                       repeat_interval: dt.timedelta | None) -> list[PlannedNotification]:
    """Which messages to queue now, for each alert and each channel name.

    ``sent`` holds the (alert id, channel, event) already queued (in any state). For an
    open alert: ``opened`` when the channel was never told of it; ``repeated`` when it
    was and ``notified_at`` is ``repeat_interval`` old or older (None: never repeat). For
    a resolved alert: ``resolved`` once, when the channel was told it opened (an alert
    opened and resolved between two passes is told to no one).
    """
    planned = []
    for alert in alerts:
        for channel in channels:
            told = any((alert.id, channel, event) in sent for event in TOLD_EVENTS)
            if alert.resolved_at is not None:
                if told and (alert.id, channel, "resolved") not in sent:
                    planned.append(PlannedNotification(alert.id, channel, "resolved"))
            elif not told:
                planned.append(PlannedNotification(alert.id, channel, "opened"))
            elif repeat_interval and alert.notified_at is not None \
                    and now - alert.notified_at >= repeat_interval:
                planned.append(PlannedNotification(alert.id, channel, "repeated"))
    return planned


def retry_delay(attempts: int, base: dt.timedelta = RETRY_BASE,
                cap: dt.timedelta = RETRY_CAP) -> dt.timedelta:
    """The wait after failed attempt number ``attempts``: ``base`` doubled per attempt,
    at most ``cap`` (30 s, 1 min, 2 min, ...)."""
    return min(base * (2 ** max(attempts - 1, 0)), cap)


@dataclass(frozen=True)
class Outcome:
    """What becomes of a row after an attempt: its state, next try and error."""

    state: str
    next_attempt_at: dt.datetime | None = None
    error: str | None = None


def after_attempt(attempts: int, max_attempts: int, error: DeliveryError | None,
                  now: dt.datetime) -> Outcome:
    """The row's fate after attempt number ``attempts`` ended with ``error`` (None: sent)."""
    if error is None:
        return Outcome("sent")
    reason = one_line(error)
    if error.permanent or attempts >= max_attempts:
        return Outcome("failed", error=reason)
    return Outcome("pending", next_attempt_at=now + retry_delay(attempts), error=reason)


def one_line(error: BaseException | str) -> str:
    text = str(error) or type(error).__name__
    return mask(" ".join(text.split()))[:MAX_ERROR_LENGTH]


# -- effects: queueing --------------------------------------------------------------------


def _candidates():
    """Alerts that may need a message: open ones, and resolved ones told of by the time
    they were resolved (``notified_at`` moves past ``resolved_at`` once they are told)."""
    return sa.select(Alert).where(sa.or_(
        Alert.resolved_at.is_(None),
        sa.and_(Alert.notified_at.is_not(None), Alert.notified_at <= Alert.resolved_at)))


def _sent(session, ids: list[int]) -> set[tuple[int, str, str]]:
    return {tuple(row) for row in session.execute(
        sa.select(AlertNotification.alert_id, AlertNotification.channel,
                  AlertNotification.event).distinct()
        .where(AlertNotification.alert_id.in_(ids)))}


def enqueue(catalog: Catalog, settings: AlertSettings,
            now: dt.datetime) -> list[PlannedNotification]:
    """Queue the messages :func:`plan_notifications` finds due; return them.

    A first read, without locks, finds whether anything is due (mostly nothing); only
    then are those alerts locked and the plan made again under the lock.
    """
    names = [channel.name for channel in settings.channels]
    if not names:
        return []
    with catalog.session() as session:
        alerts = list(session.scalars(_candidates()))
        due = {item.alert_id for item in plan_notifications(
            alerts, names, _sent(session, [alert.id for alert in alerts]), now,
            settings.repeat_interval)} if alerts else set()
    if not due:
        return []
    with catalog.session() as session:
        alerts = list(session.scalars(_candidates().where(Alert.id.in_(due))
                                      .order_by(Alert.id).with_for_update(skip_locked=True)))
        sent = _sent(session, [alert.id for alert in alerts]) if alerts else set()
        planned = plan_notifications(alerts, names, sent, now, settings.repeat_interval)
        for item in planned:
            session.add(AlertNotification(alert_id=item.alert_id, channel=item.channel,
                                          event=item.event, state="pending", created_at=now,
                                          next_attempt_at=now, attempts=0))
        told = {item.alert_id for item in planned}
        for alert in alerts:
            if alert.id in told:
                # past resolved_at, so that a resolved alert told is no candidate again
                alert.notified_at = max(now, alert.resolved_at + _AFTER
                                        if alert.resolved_at else now)
    for item in planned:
        log.info("alert %d: %s notice queued for channel %s", item.alert_id, item.event,
                 item.channel)
    return planned


# -- effects: delivering ------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One claimed row and what its message says."""

    id: int
    channel: str
    attempts: int
    message: AlertMessage


def _claim(catalog: Catalog, row_id: int, now: dt.datetime,
           settings: AlertSettings) -> Delivery | None:
    with catalog.session() as session:
        won = session.execute(
            sa.update(AlertNotification)
            .where(AlertNotification.id == row_id, AlertNotification.state == "pending",
                   AlertNotification.next_attempt_at <= now)
            .values(next_attempt_at=now + CLAIM_LEASE,
                    attempts=AlertNotification.attempts + 1)).rowcount
        if not won:
            return None
        row, alert, system, store = session.execute(
            sa.select(AlertNotification, Alert, System.name, StoreRow.name)
            .join(Alert, Alert.id == AlertNotification.alert_id)
            .outerjoin(System, System.id == Alert.system_id)
            .outerjoin(StoreRow, StoreRow.id == Alert.store_id)
            .where(AlertNotification.id == row_id)).one()
        message = AlertMessage(
            delivery=row.id, event=row.event, alert_id=alert.id, kind=alert.kind,
            severity=alert.severity, system=system, store=store, message=alert.message,
            opened_at=alert.opened_at, last_seen_at=alert.last_seen_at,
            resolved_at=alert.resolved_at, count=alert.count,
            details=dict(alert.details or {}), centre_url=settings.centre_url)
        return Delivery(id=row.id, channel=row.channel, attempts=row.attempts,
                        message=message)


def _record(catalog: Catalog, delivery: Delivery, outcome: Outcome,
            now: dt.datetime) -> None:
    values: dict = {"state": outcome.state, "last_error": outcome.error}
    if outcome.state == "sent":
        values["sent_at"] = now
    elif outcome.next_attempt_at is not None:
        values["next_attempt_at"] = outcome.next_attempt_at
    with catalog.session() as session:
        session.execute(sa.update(AlertNotification)
                        .where(AlertNotification.id == delivery.id,
                               AlertNotification.state == "pending")
                        .values(**values))


Sender = Callable[[Channel, AlertMessage, dt.datetime], None]


def deliver_due(catalog: Catalog, settings: AlertSettings, now: dt.datetime,
                send: Sender = channel_io.send, limit: int = BATCH) -> dict[str, int]:
    """Send the pending notifications due at ``now`` (at most ``limit``); return how many
    were ``sent``, put off for a ``retry``, or ``failed``.

    A channel that fails once in a pass is not tried again in that pass, so a channel
    down costs at most one timeout per pass, and the other channels' messages go on.
    """
    counts = {"sent": 0, "retry": 0, "failed": 0}
    with catalog.session() as session:
        due = list(session.execute(
            sa.select(AlertNotification.id, AlertNotification.channel)
            .where(AlertNotification.state == "pending",
                   AlertNotification.next_attempt_at <= now)
            .order_by(AlertNotification.next_attempt_at, AlertNotification.id)
            .limit(limit)).all())
    failing: set[str] = set()
    for row_id, channel_name in due:
        if channel_name in failing:
            continue
        delivery = _claim(catalog, row_id, now, settings)
        if delivery is None:
            continue  # another daemon has it
        channel = settings.channel(delivery.channel)
        if channel is None:
            outcome = Outcome("failed", error=f"no channel {delivery.channel!r} is "
                                              "configured any more")
        elif delivery.attempts > channel.attempts:
            outcome = Outcome("failed", error=f"abandoned after {delivery.attempts - 1} "
                                              "attempt(s) whose daemons stopped mid-send")
        else:
            error = None
            try:
                send(channel, delivery.message, now)
            except DeliveryError as failure:
                error = failure
            outcome = after_attempt(delivery.attempts, channel.attempts, error, now)
        _record(catalog, delivery, outcome, now)
        if outcome.state == "sent":
            counts["sent"] += 1
            log.info("alert %d: %s notice sent to %s", delivery.message.alert_id,
                     delivery.message.event, delivery.channel)
        elif outcome.state == "pending":
            counts["retry"] += 1
            failing.add(delivery.channel)
            log.warning("alert %d: %s notice to %s failed (attempt %d), retried at %s: %s",
                        delivery.message.alert_id, delivery.message.event,
                        delivery.channel, delivery.attempts,
                        outcome.next_attempt_at.isoformat(), outcome.error)
        else:
            counts["failed"] += 1
            failing.add(delivery.channel)
            log.error("alert %d: %s notice to %s given up after %d attempt(s): %s",
                      delivery.message.alert_id, delivery.message.event, delivery.channel,
                      delivery.attempts, outcome.error)
    return counts


def send_test(settings: AlertSettings, name: str, now: dt.datetime,
              send: Sender = channel_io.send) -> None:
    """Send a test notice (``kind: test``, ``delivery: 0``) on the channel ``name`` now,
    outside the outbox. Raises :class:`~drd.errors.UserError` for an unknown channel and
    :class:`DeliveryError` when it does not arrive."""
    channel = settings.channel(name)
    if channel is None:
        known = ", ".join(item.name for item in settings.channels) or "none configured"
        raise UserError(f"no alert channel {name!r} (channels: {known})")
    send(channel, AlertMessage(
        delivery=0, event="opened", alert_id=0, kind="test", severity="info", system=None,
        store=None, message=f"a test of the alert channel {name}", opened_at=now,
        last_seen_at=now, resolved_at=None, count=1, details={},
        centre_url=settings.centre_url), now)
