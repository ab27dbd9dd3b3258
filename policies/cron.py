"""Policy schedules: five-field cron expressions, in UTC, with standard cron meaning.

APScheduler 3 reads crontab expressions with two differences from cron(8), both of
which would silently move a policy's backups or drills:

- its day-of-week numbers start at 0 = Monday, cron's at 0 (or 7) = Sunday. So
  ``"0 3 * * 0"`` would run on Mondays. :func:`cron_trigger` rewrites the day-of-week
  field into day names, which both read the same way.
- when both day-of-month and day-of-week are restricted, cron runs on *either*,
  APScheduler only on days matching *both*. Such expressions are refused.

Everything that turns a policy schedule into a trigger should go through
:func:`cron_trigger`. Pure (no I/O, no clock).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.cron import CronTrigger

# Sunday twice: cron accepts both 0 and 7 for it.
_CRON_DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"]
# APScheduler's own order, Monday first: the order the rewritten field lists days in.
_SCHEDULER_DAY_ORDER = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_DAY_ITEM = re.compile(r"^(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(\d+))?$")

# A fixed start for measuring gaps between runs, so that the answer never depends on
# the day it is asked (2024 is a leap year and starts on a Monday).
REFERENCE_START = datetime(2024, 1, 1, tzinfo=UTC)


def _day_number(text: str) -> int:
    if text.isdigit():
        number = int(text)
        if number > 7:
            raise ValueError(f"day of week {text!r} is out of range (0-7, 0 and 7 are Sunday)")
        return number
    if text in _CRON_DAY_NAMES:
        return _CRON_DAY_NAMES.index(text)
    raise ValueError(f"day of week {text!r} is neither 0-7 nor a name sun..sat")


def _cron_days(field: str) -> set[str]:
    """The day names (``"mon"``...) selected by a cron(8) day-of-week field."""
    days: set[str] = set()
    for item in field.lower().split(","):
        match = _DAY_ITEM.fullmatch(item)
        if match is None:
            raise ValueError(f"day of week {item!r} is not a cron day-of-week item")
        base, step_text = match.groups()
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"day of week {item!r} has a step of 0")
        if base == "*":
            first, last = 0, 6
        elif "-" in base:
            first_text, last_text = base.split("-")
            first, last = _day_number(first_text), _day_number(last_text)
            if first > last:
                raise ValueError(f"day of week range {base!r} runs backwards")
        else:
            first = _day_number(base)
            last = 7 if step_text else first  # "1/2" means from Monday to the end
        days.update(_CRON_DAY_NAMES[number] for number in range(first, last + 1, step))
    return days


def scheduler_day_of_week(field: str) -> str:
    """Rewrite a cron(8) day-of-week field for APScheduler 3 (``"0"`` -> ``"sun"``).

    Raises ``ValueError`` for a field cron would not accept.
    """
    if field == "*":
        return "*"
    days = _cron_days(field)
    if len(days) == 7:
        return "*"
    return ",".join(day for day in _SCHEDULER_DAY_ORDER if day in days)


def cron_trigger(expression: str) -> CronTrigger:
    """An APScheduler trigger, in UTC, that fires when cron(8) would run ``expression``.

    ``expression`` has exactly five fields: minute, hour, day of month, month, day of
    week. Raises ``ValueError`` with a message for a user when it is not a valid cron
    expression, restricts both day fields, or never fires.
    """
    if not isinstance(expression, str):
        raise ValueError("must be a cron expression in quotes, such as \"0 * * * *\"")
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"{expression!r} has {len(fields)} fields; a cron expression has exactly 5: "
            "minute hour day-of-month month day-of-week"
        )
    minute, hour, day, month, day_of_week = fields
    if not day.startswith("*") and not day_of_week.startswith("*"):
        raise ValueError(
            f"{expression!r} restricts both the day of month and the day of week; "
            "restrict one of them (cron would run on either, which is rarely meant)"
        )
    try:
        rewritten = " ".join([minute, hour, day, month, scheduler_day_of_week(day_of_week)])
        trigger = CronTrigger.from_crontab(rewritten, timezone=UTC)
    except ValueError as error:
        raise ValueError(f"{expression!r} is not a valid cron expression: {error}") from None
    if trigger.get_next_fire_time(None, REFERENCE_START) is None:
        raise ValueError(f"{expression!r} never fires")
    return trigger


def validate_cron(expression: str) -> str:
    """Return ``expression`` unchanged if :func:`cron_trigger` accepts it, else raise it."""
    cron_trigger(expression)
    return expression


def longest_gap(expression: str, runs: int = 512) -> timedelta:
    """The longest time between two consecutive runs among the first ``runs`` runs.

    Counted from :data:`REFERENCE_START`, so it is a lower bound of the true longest
    gap (exact for every schedule that repeats within ``runs`` runs: hourly, daily,
    weekly, monthly). Raises ``ValueError`` like :func:`cron_trigger`.
    """
    trigger = cron_trigger(expression)
    previous = trigger.get_next_fire_time(None, REFERENCE_START)
    longest = timedelta(0)
    for _ in range(runs):
        following = trigger.get_next_fire_time(previous, previous + timedelta(seconds=1))
        if following is None:
            break
        longest = max(longest, following - previous)
        previous = following
    return longest


def fewest_runs_after_a_run(expression: str, window: timedelta, enough: int,
                            months: int = 12) -> int:
    """The fewest runs within ``window`` after a run (that run excluded), up to ``enough``.

    The windows measured start at the first run on or after each of the first
    ``months`` month starts from :data:`REFERENCE_START`, so that months of different
    lengths (and February of a leap year) count. Counting stops at ``enough``: the
    answer is exact below it, and ``enough`` means "at least that many". A rotation
    through ``n`` things on this schedule comes back to each within ``window`` when
    the answer is ``n``. Raises ``ValueError`` like :func:`cron_trigger`.
    """
    trigger = cron_trigger(expression)
    fewest = enough
    for month in range(months):
        year, index = divmod(REFERENCE_START.month - 1 + month, 12)
        month_start = REFERENCE_START.replace(year=REFERENCE_START.year + year, month=index + 1)
        start = trigger.get_next_fire_time(None, month_start)
        if start is None:
            return 0
        count, previous = 0, start
        while count < fewest:
            following = trigger.get_next_fire_time(previous, previous + timedelta(seconds=1))
            if following is None or following - start > window:
                break
            count, previous = count + 1, following
        fewest = min(fewest, count)
        if fewest == 0:
            break
    return fewest
