"""Durations as policies write them: ``90s``, ``15m``, ``1h``, ``7d``, ``2w``, ``1d12h``.

A duration is one or more ``<whole number><unit>`` parts, units from largest to
smallest and each at most once: ``w`` (7 days), ``d`` (24 hours), ``h``, ``m``, ``s``.
Everything is in fixed lengths of seconds; there are no months or years, because their
length varies and a policy's targets (RPO, RTO, timeouts) must mean one thing.

Pure functions, no I/O.
"""

from __future__ import annotations

import re
from datetime import timedelta

UNIT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}

DURATION_PATTERN = r"^(?:\d+w)?(?:\d+d)?(?:\d+h)?(?:\d+m)?(?:\d+s)?$"
_PARTS = re.compile("^" + "".join(rf"(?:(\d{{1,15}}){unit})?" for unit in UNIT_SECONDS) + "$")

DURATION_HINT = "a duration such as 90s, 15m, 1h, 7d or 2w (units w, d, h, m, s)"


def parse_duration(text: str) -> timedelta:
    """Turn ``"1h30m"`` into ``timedelta(hours=1, minutes=30)``.

    Raises ``ValueError`` with a message fit for a user when ``text`` is not a
    duration (no unit, an unknown unit, units out of order, blanks, a sign) or is too
    long for a ``timedelta``.
    """
    if not isinstance(text, str):
        raise ValueError(f"must be {DURATION_HINT}")
    match = _PARTS.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"{text!r} is not {DURATION_HINT}")
    seconds = sum(
        int(count) * UNIT_SECONDS[unit]
        for count, unit in zip(match.groups(), UNIT_SECONDS, strict=True)
        if count is not None
    )
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"{text!r} is too long a duration") from None


def format_duration(value: timedelta) -> str:
    """The canonical text of ``value``: a count of the largest unit that divides it exactly.

    Days, hours, minutes or seconds (weeks are read, never written, so that ``7d`` stays
    ``7d``): ``timedelta(days=30)`` gives ``"30d"``, ``timedelta(seconds=90)`` gives
    ``"90s"``, ``timedelta(0)`` gives ``"0s"``, and ``parse_duration(format_duration(d))
    == d``. Raises ``ValueError`` for a negative duration or one with a fraction of a
    second, which the text form cannot express.
    """
    if value < timedelta(0):
        raise ValueError(f"a negative duration ({value}) has no text form")
    if value.microseconds:
        raise ValueError(f"a duration with a fraction of a second ({value}) has no text form")
    seconds = value.days * 86400 + value.seconds
    for unit in ("d", "h", "m"):
        if seconds and seconds % UNIT_SECONDS[unit] == 0:
            return f"{seconds // UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"
