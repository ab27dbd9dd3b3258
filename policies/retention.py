"""Which snapshots a policy's retention keeps: restic's ``forget --keep-*``, as a pure function.

:func:`apply_retention` follows restic's ``ApplyPolicy`` (``internal/data/
snapshot_policy.go``, restic 0.17 and later) rule for rule:

- snapshots are taken newest first (equal times keep their input order);
- ``keep_last: N`` keeps the N newest;
- ``keep_hourly/daily/weekly/monthly/yearly: N`` keeps, for each of the N newest
  hours/days/ISO weeks/months/years that have a snapshot, the newest snapshot in it;
  and while a rule still has count left when the oldest snapshot is reached, it keeps
  that oldest snapshot too (reason ``"oldest daily snapshot"``), so that a young
  repository keeps its full history;
- ``keep_within: D`` keeps every snapshot newer than ``D`` before the newest snapshot
  that is not in the future (measured from that snapshot, not from now, so a system
  that stopped backing up does not lose its last snapshots);
- a snapshot is kept if any rule keeps it; its reasons name every rule that did.

Differences from restic, on purpose:

- buckets (hour, day, week, month, year) are in UTC; restic uses the local time zone
  of the machine running ``forget``, so the same snapshots could be thinned differently
  on two machines;
- rules with nothing set keep every snapshot (reason ``"no retention rules"``); restic
  refuses to run with an empty policy rather than remove everything;
- counts are 0 (off) or more; restic's ``-1`` ("unlimited") and tag rules are not
  policy fields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Generic, Protocol, TypeVar

from policies.durations import format_duration
from policies.schema import Retention

NO_RULES_REASON = "no retention rules"


class SnapshotLike(Protocol):
    """What retention needs of a snapshot: a unique id and a timezone-aware time."""

    @property
    def id(self) -> str: ...

    @property
    def time(self) -> datetime: ...


@dataclass(frozen=True)
class Snapshot:
    """The smallest :class:`SnapshotLike`: an id and a timezone-aware time."""

    id: str
    time: datetime


S = TypeVar("S", bound=SnapshotLike)


@dataclass(frozen=True)
class RetentionPlan(Generic[S]):
    """What to keep and what to forget, both newest first, and why each kept one is kept.

    ``reasons`` maps the id of every kept snapshot to the rules that keep it, in
    restic's words: ``["last snapshot", "daily snapshot", "within 2d"]``.
    """

    keep: list[S] = field(default_factory=list)
    remove: list[S] = field(default_factory=list)
    reasons: dict[str, list[str]] = field(default_factory=dict)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


_Bucketer = Callable[[datetime, int], object]

# (rule field, bucket of a snapshot given its UTC time and its position, reason)
_BUCKET_RULES: list[tuple[str, _Bucketer, str]] = [
    ("keep_last", lambda _time, position: position, "last snapshot"),
    ("keep_hourly", lambda time, _position: (time.year, time.month, time.day, time.hour),
     "hourly snapshot"),
    ("keep_daily", lambda time, _position: (time.year, time.month, time.day), "daily snapshot"),
    ("keep_weekly", lambda time, _position: time.isocalendar()[:2], "weekly snapshot"),
    ("keep_monthly", lambda time, _position: (time.year, time.month), "monthly snapshot"),
    ("keep_yearly", lambda time, _position: time.year, "yearly snapshot"),
]


def _minus(moment: datetime, span: timedelta) -> datetime | None:
    """``moment - span``, or None when that is before the earliest ``datetime``."""
    try:
        return moment - span
    except OverflowError:
        return None


def _check_input(snapshots: list[SnapshotLike], now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    seen: set[str] = set()
    for snapshot in snapshots:
        if snapshot.time.tzinfo is None:
            raise ValueError(f"snapshot {snapshot.id} has a time without a timezone")
        if snapshot.id in seen:
            raise ValueError(f"snapshot {snapshot.id} is given twice")
        seen.add(snapshot.id)


def apply_retention(snapshots: Iterable[S], rules: Retention, now: datetime) -> RetentionPlan[S]:
    """Split ``snapshots`` into those ``rules`` keep and those they remove.

    ``now`` only decides which snapshots are "in the future" and so are not the newest
    for ``keep_within``. Raises ``ValueError`` when ``now`` or a snapshot time has no
    time zone, or when two snapshots have the same id.
    """
    ordered = sorted(snapshots, key=lambda snapshot: snapshot.time, reverse=True)
    _check_input(ordered, now)
    if rules.is_empty():
        return RetentionPlan(list(ordered), [], {s.id: [NO_RULES_REASON] for s in ordered})

    remaining = {rule: getattr(rules, rule) for rule, _, _ in _BUCKET_RULES}
    last_bucket: dict[str, object] = {}
    within_start = None
    if rules.keep_within:
        newest = max((s.time for s in ordered if s.time < now), default=None)
        # with every snapshot in the future restic's newest is the zero time: all within
        within_start = _minus(newest, rules.keep_within) if newest is not None else None

    plan: RetentionPlan[S] = RetentionPlan()
    for position, snapshot in enumerate(ordered):
        time = _utc(snapshot.time)
        is_oldest = position == len(ordered) - 1
        reasons = []
        if rules.keep_within and (within_start is None or snapshot.time > within_start):
            reasons.append(f"within {format_duration(rules.keep_within)}")
        for rule, bucket_of, reason in _BUCKET_RULES:
            if remaining[rule] <= 0:
                continue
            bucket = bucket_of(time, position)
            new_bucket = rule not in last_bucket or bucket != last_bucket[rule]
            if new_bucket or is_oldest:
                reasons.append(reason if new_bucket else f"oldest {reason}")
                last_bucket[rule] = bucket
                remaining[rule] -= 1
        if reasons:
            plan.keep.append(snapshot)
            plan.reasons[snapshot.id] = reasons
        else:
            plan.remove.append(snapshot)
    return plan
