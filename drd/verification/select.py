"""Which objects a verification run reads, how many bytes it may read, and coverage.

Pure functions, no I/O and no clock: the verifier (:mod:`drd.verification.run`) feeds
them the ledger (:class:`~drd.catalog.models.StoreObject` rows, as
:class:`LedgerEntry`) and the time.

The promise they keep together: with the default budget (:func:`default_budget`) and
the policy's verification schedule, every byte of a store is read back within the
policy's period. Selection is a queue: objects still to be examined first (those found
corrupt, then those never verified, oldest first), then the least recently verified
ones (:func:`select_for_verification`). A run reads until its budget is spent, so an
object verified now comes round again once the bytes ahead of it are read; the default
budget is enough for all of them within the runs a period holds, with a margin that
also absorbs a store growing by less than ``margin - 1`` (25 %) of its size per period.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from policies.cron import longest_gap

# Re-exported: sizes are defined once, in policies (which must not import drd.verification).
from policies.sizes import SIZE_HINT as SIZE_HINT
from policies.sizes import parse_size as parse_size

DEFAULT_PERIOD = dt.timedelta(days=30)
DEFAULT_SCHEDULE = "0 2 * * *"
SAFETY_MARGIN = 1.25


@dataclass(frozen=True)
class LedgerEntry:
    """One object of one store as the ledger knows it.

    ``state`` is the ledger's (``present``, ``corrupt``, ``missing``, ``lost``);
    ``verified_at`` is when its bytes were last read back and found right (None: never);
    ``period`` is the verification period of the system it belongs to.
    """

    key: str
    size: int
    first_seen_at: dt.datetime
    verified_at: dt.datetime | None = None
    period: dt.timedelta = DEFAULT_PERIOD
    state: str = "present"


@dataclass(frozen=True)
class Coverage:
    """How much of a store is proven intact at one moment.

    ``ratio``: the share of bytes verified within their period (None when nothing is
    tracked); ``oldest_unverified``: how long the least recently proven byte has gone
    unproven (since its last verification, or since drd first saw it), None when nothing
    is tracked.
    """

    ratio: float | None
    oldest_unverified: dt.timedelta | None
    bytes_tracked: int
    objects_tracked: int
    bytes_verified: int

    def as_dict(self) -> dict:
        return {
            "coverage": None if self.ratio is None else round(self.ratio, 6),
            "oldest_unverified_seconds": (None if self.oldest_unverified is None
                                          else int(self.oldest_unverified.total_seconds())),
            "bytes_tracked": self.bytes_tracked,
            "objects_tracked": self.objects_tracked,
            "bytes_verified": self.bytes_verified,
        }


def _queue_position(entry: LedgerEntry) -> tuple:
    # corrupt rows first (a run that died before healing them left them so), then never
    # verified ones by age, then the least recently verified; the key breaks ties so the
    # order is the same every time
    if entry.state == "corrupt":
        return (0, entry.first_seen_at, entry.key)
    if entry.verified_at is None:
        return (1, entry.first_seen_at, entry.key)
    return (2, entry.verified_at, entry.key)


def verification_order(entries: Iterable[LedgerEntry]) -> list[LedgerEntry]:
    """The readable entries (``present`` or ``corrupt``) in the order runs read them."""
    return sorted((entry for entry in entries if entry.state in ("present", "corrupt")),
                  key=_queue_position)


def select_for_verification(entries: Iterable[LedgerEntry], budget_bytes: int | None
                            ) -> list[LedgerEntry]:
    """The entries one run reads: from the head of :func:`verification_order` until
    ``budget_bytes`` are spent.

    Entries are taken while the bytes taken so far are below the budget, so a run reads
    at least its budget (the last object may run past it) and always at least one object,
    however small the budget: every run makes progress and a large object is never
    skipped for smaller ones behind it. ``budget_bytes`` None takes everything (a full
    verification). ``missing`` and ``lost`` entries are never selected: there is nothing
    to read, they are for healing.
    """
    ordered = verification_order(entries)
    if budget_bytes is None:
        return ordered
    chosen: list[LedgerEntry] = []
    spent = 0
    for entry in ordered:
        if chosen and spent >= budget_bytes:
            break
        chosen.append(entry)
        spent += entry.size
    return chosen


def runs_per_period(run_interval: dt.timedelta, period: dt.timedelta) -> int:
    """How many runs, ``run_interval`` apart at most, surely fall within one ``period``
    after a run (at least 1)."""
    if run_interval <= dt.timedelta(0):
        raise ValueError("the run interval must be positive")
    return max(1, period // run_interval)


def default_budget(total_bytes: int, run_interval: dt.timedelta, period: dt.timedelta,
                   margin: float = SAFETY_MARGIN) -> int:
    """The bytes a run reads so that every byte is re-read within ``period``.

    ``total_bytes`` is what the store holds (of one system); runs come at most
    ``run_interval`` apart (:func:`run_interval`). Every run reads ``margin`` times the
    share one of the :func:`runs_per_period` must read; at least 1 byte (so: one object).
    """
    if total_bytes < 0:
        raise ValueError("total_bytes must be >= 0")
    share = total_bytes * margin / runs_per_period(run_interval, period)
    return max(1, math.ceil(share))


@functools.lru_cache(maxsize=256)
def run_interval(schedule: str) -> dt.timedelta:
    """The longest time between two runs of the cron ``schedule`` (UTC).

    The longest gap, not the next one: a weekday schedule leaves three days between
    Friday and Monday, and the budget must cover those too (a conservative reading of
    the schedule). Raises ``ValueError`` for an invalid expression.
    """
    gap = longest_gap(schedule)
    if gap <= dt.timedelta(0):
        raise ValueError(f"{schedule!r} runs only once: no interval between runs")
    return gap


def coverage(entries: Iterable[LedgerEntry], now: dt.datetime) -> Coverage:
    """The share of bytes verified within their period at ``now``, and the oldest gap.

    A byte counts as covered when its object is ``present`` and was verified at most its
    period before ``now``. The oldest unverified age is ``now - min(verified_at or
    first_seen_at)`` over every entry (never negative).
    """
    total = verified = objects = objects_verified = 0
    oldest: dt.datetime | None = None
    for entry in entries:
        objects += 1
        total += entry.size
        if (entry.state == "present" and entry.verified_at is not None
                and now - entry.verified_at <= entry.period):
            verified += entry.size
            objects_verified += 1
        anchor = entry.verified_at or entry.first_seen_at
        oldest = anchor if oldest is None else min(oldest, anchor)
    if not objects:
        return Coverage(ratio=None, oldest_unverified=None, bytes_tracked=0,
                        objects_tracked=0, bytes_verified=0)
    # only empty objects: count objects instead of bytes
    ratio = verified / total if total else objects_verified / objects
    age = max(now - oldest, dt.timedelta(0))
    return Coverage(ratio=ratio, oldest_unverified=age, bytes_tracked=total,
                    objects_tracked=objects, bytes_verified=verified)


@dataclass(frozen=True)
class CoverageCounts:
    """What :func:`coverage` needs of a group of entries, as a database can sum it up:
    counts and bytes, those verified within their period, and the oldest
    ``verified_at or first_seen_at`` (None for no entries)."""

    objects: int = 0
    bytes: int = 0
    objects_verified: int = 0
    bytes_verified: int = 0
    oldest_anchor: dt.datetime | None = None


def coverage_from_counts(parts: Iterable[CoverageCounts], now: dt.datetime) -> Coverage:
    """:func:`coverage` of the union of groups already counted (per system, say)."""
    objects = total = objects_verified = verified = 0
    oldest: dt.datetime | None = None
    for part in parts:
        objects += part.objects
        total += part.bytes
        objects_verified += part.objects_verified
        verified += part.bytes_verified
        if part.oldest_anchor is not None:
            oldest = part.oldest_anchor if oldest is None else min(oldest, part.oldest_anchor)
    if not objects:
        return Coverage(ratio=None, oldest_unverified=None, bytes_tracked=0,
                        objects_tracked=0, bytes_verified=0)
    ratio = verified / total if total else objects_verified / objects
    age = max(now - oldest, dt.timedelta(0)) if oldest is not None else None
    return Coverage(ratio=ratio, oldest_unverified=age, bytes_tracked=total,
                    objects_tracked=objects, bytes_verified=verified)


def share_of_budget(store_budget: int, system_bytes: int, store_bytes: int) -> int:
    """One system's part of a store's configured budget, in proportion to its bytes.

    ``Store.verify_budget_bytes`` is what one round of runs reads from the store, all
    systems together; a run for one system reads its share (at least 1 byte).
    """
    if store_bytes <= 0 or system_bytes >= store_bytes:
        return max(1, store_budget)
    return max(1, math.ceil(store_budget * system_bytes / store_bytes))


def budget_for(total_bytes: int, *, configured: int | None = None,
               store_bytes: int | None = None, schedule: str = DEFAULT_SCHEDULE,
               period: dt.timedelta = DEFAULT_PERIOD) -> int:
    """The budget of one run for one system on one store.

    The store's ``configured`` budget (shared among its systems by bytes, see
    :func:`share_of_budget`) when set, else :func:`default_budget` for the system's
    schedule and period.
    """
    if configured is not None:
        return share_of_budget(configured, total_bytes,
                               total_bytes if store_bytes is None else store_bytes)
    return default_budget(total_bytes, run_interval(schedule), period)


def summarise(selected: Sequence[LedgerEntry]) -> tuple[int, int]:
    """(objects, bytes) of a selection."""
    return len(selected), sum(entry.size for entry in selected)
