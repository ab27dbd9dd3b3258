"""Object Lock against retention: a lock must not outlive everything the retention keeps.

The rule
--------
``object_lock_days`` must not exceed the *retention horizon*: the longest time the
retention rules can keep any snapshot while backups run on schedule.

Why this rule. A locked object cannot be deleted before its lock runs out, so a
snapshot that retention forgets while it is still locked stays in the store (and its
data cannot be pruned) until then. For some snapshots this is expected and harmless:
with ``keep_hourly: 24`` an hourly snapshot is forgotten after a day even if the lock
is a week -- the retention job must treat "still locked" as "delete later", not as an
error. But when the lock is longer than the horizon, *every* snapshot is forgotten
while locked: the retention and the lock contradict each other, nothing can be freed
before the lock runs out, and the store holds about ``object_lock_days`` of history
whatever the retention says. That is refused.

A stricter rule ("no snapshot may be forgotten while locked") is not used: it would
forbid thinning (hourly -> daily -> monthly) under any lock, and backups made on
demand (``drd backup-now``) can push any snapshot out of ``keep_last`` or out of its
hour at any time, so no retention except ``keep_within`` could satisfy it.

The horizon
-----------
Each rule keeps at most ``count`` snapshots, the newest of ``count`` distinct buckets.
With a backup every ``interval`` (the longest gap between scheduled backups), those
buckets reach back at most ``count x max(bucket length, interval)``:

==============  =====================================
keep_last       count x interval
keep_hourly     count x max(1 hour, interval)
keep_daily      count x max(1 day, interval)
keep_weekly     count x max(7 days, interval)
keep_monthly    count x max(31 days, interval)
keep_yearly     count x max(366 days, interval)
keep_within     its duration
==============  =====================================

The horizon is the largest of these (a snapshot is kept while any rule keeps it). No
rule at all means snapshots are kept forever: no horizon, any lock is fine. Backups
missed (an agent down) make snapshots live longer than the horizon, never shorter, so
the check never refuses a lock that a running system would honour.

The schema bounds counts and days, but these functions may be called with any
numbers: a span too long for a ``timedelta`` counts as :data:`FOREVER`. Pure.
"""

from __future__ import annotations

from datetime import timedelta

from policies.durations import format_duration
from policies.schema import Retention

FOREVER = timedelta(days=999_999_999)
"""The longest ``timedelta`` in whole days: what a span too long to compute counts as."""

_BUCKET_LENGTHS = {
    "keep_last": timedelta(0),
    "keep_hourly": timedelta(hours=1),
    "keep_daily": timedelta(days=1),
    "keep_weekly": timedelta(days=7),
    "keep_monthly": timedelta(days=31),
    "keep_yearly": timedelta(days=366),
}


def _span(count: int, length: timedelta) -> timedelta:
    """``count x length``, or :data:`FOREVER` when that is longer than it."""
    try:
        return min(count * length, FOREVER)
    except OverflowError:
        return FOREVER


def retention_horizon(retention: Retention, interval: timedelta) -> tuple[timedelta, str] | None:
    """The longest ``retention`` keeps a snapshot, and the rule that sets it (``"keep_daily:
    14"``), given backups every ``interval``; None when no rule is set (kept forever).
    """
    if retention.is_empty():
        return None
    candidates: list[tuple[timedelta, str]] = []
    for rule, bucket_length in _BUCKET_LENGTHS.items():
        count = getattr(retention, rule)
        if count:
            candidates.append((_span(count, max(bucket_length, interval)), f"{rule}: {count}"))
    if retention.keep_within:
        candidates.append(
            (retention.keep_within, f"keep_within: {format_duration(retention.keep_within)}")
        )
    return max(candidates, key=lambda candidate: candidate[0])


def object_lock_problem(object_lock_days: int, retention: Retention,
                        interval: timedelta) -> str | None:
    """Why ``object_lock_days`` contradicts ``retention``, or None when it does not.

    ``interval`` is the longest gap between scheduled backups. See the module docstring
    for the rule.
    """
    if object_lock_days <= 0:
        return None
    horizon = retention_horizon(retention, interval)
    if horizon is None:
        return None
    longest, rule = horizon
    if _span(object_lock_days, timedelta(days=1)) <= longest:
        return None
    return (
        f"{object_lock_days} days is longer than the retention keeps any snapshot "
        f"(at most {format_duration(longest)}, by {rule} with a backup every "
        f"{format_duration(interval)}): every snapshot would be forgotten while still locked; "
        "lower object_lock_days or keep snapshots longer"
    )
