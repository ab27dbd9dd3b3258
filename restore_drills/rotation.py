"""Which store a drill takes next, and which stores are overdue (pure, no clock).

A system's drill job drills one store per run. :func:`choose_store` rotates through the
policy's stores: a store never drilled comes first, then the one whose last attempt is
the oldest, so that a store that keeps failing (down, damaged) is tried in its turn
rather than retried at every run or skipped. With a schedule that fires at least once
per store within the plan's period (the policy schema refuses one that does not), every
store is attempted within the period; :func:`overdue` names the stores that, all the
same, have no passing drill within it, for the daemon to report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta


def choose_store(stores: Sequence[str], last_attempt: Mapping[str, datetime | None]) -> str:
    """The store to drill next.

    ``stores`` are the policy's stores in policy order; ``last_attempt`` maps a store to
    the start of its latest drill, passed or failed (missing or None: never drilled).
    Returns the first store never drilled, else the one attempted longest ago; ties go
    to the store listed first. Raises ``ValueError`` when ``stores`` is empty.
    """
    if not stores:
        raise ValueError("a system without stores has nothing to drill")
    never = [store for store in stores if last_attempt.get(store) is None]
    if never:
        return never[0]
    # min() keeps the first of equal keys: ties go to policy order
    return min(stores, key=lambda store: last_attempt[store])


def overdue(stores: Sequence[str], last_passed: Mapping[str, datetime | None],
            period: timedelta, now: datetime) -> list[str]:
    """The stores without a passing drill within ``period`` before ``now``, in policy order.

    ``last_passed`` maps a store to the start of its latest passing drill (missing or
    None: none ever passed). A drill exactly ``period`` old still counts.
    """
    oldest_allowed = now - period
    return [store for store in stores
            if (passed := last_passed.get(store)) is None or passed < oldest_allowed]
