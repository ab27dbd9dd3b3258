"""Which copies of a recorded object are right: pure, no I/O, no vote.

:func:`judge_copies` takes each store's copy of one key (its SHA-256 and size as read,
or that the store lacks it, and whether an Object Lock retention is in force on it) and
the catalog's record, and says which copies match, which are damaged and which store is
the best source to heal from. The rules:

- With a record, a copy is good when its SHA-256 (and size) are the record's, damaged
  otherwise; how many copies agree with each other never counts.
- The best sources are the good copies that are locked (Object Lock retention in force),
  then the other good ones, each group in the policy's order (the order given).
- Without a record, nothing is judged, except where the caller allows learning the
  digest from locked copies (``config`` of a system enrolled by an agent that did not
  send its digest): when every locked copy present has the same bytes, that is the
  expected digest (to be recorded); when locked copies differ, or none is locked, the
  key cannot be checked and the judgement says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Record:
    """What every copy of a key must be: its SHA-256 (hex), its size, and where the
    digest came from."""

    sha256: str
    size: int
    source: str = ""


@dataclass(frozen=True)
class SeenCopy:
    """One store's copy of a key as read: ``sha256`` and ``size`` of its bytes (both
    None: the store lacks it), ``locked`` when an Object Lock retention is in force on
    it."""

    store: str
    sha256: str | None
    size: int | None = None
    locked: bool = False


@dataclass(frozen=True)
class Judgement:
    """The outcome of :func:`judge_copies`.

    ``expected`` is the record judged by (None: the key cannot be checked, ``problem``
    says why); ``good`` the stores whose copy matches it, best source first; ``damaged``
    the stores whose copy does not; ``missing`` the stores that lack the key.
    ``learned_from`` names the locked copies the expectation was learned from when there
    was no record: the caller records it.
    """

    expected: Record | None
    good: tuple[str, ...] = ()
    damaged: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    learned_from: tuple[str, ...] = ()
    problem: str = ""

    @property
    def best_source(self) -> str | None:
        return self.good[0] if self.good else None


def matches(copy: SeenCopy, record: Record) -> bool:
    """True when ``copy`` has the record's bytes (its digest and its size)."""
    return copy.sha256 == record.sha256 and copy.size == record.size


def judge_copies(copies: Sequence[SeenCopy], record: Record | None, *,
                 learn_from_locked: bool = False) -> Judgement:
    """Judge the copies of one key against ``record`` (see the module docstring).

    ``copies`` come in the policy's order of stores. ``learn_from_locked`` allows an
    expectation to be learned from locked copies when ``record`` is None.
    """
    missing = tuple(copy.store for copy in copies if copy.sha256 is None)
    present = [copy for copy in copies if copy.sha256 is not None]
    learned: tuple[str, ...] = ()
    if record is None:
        if not learn_from_locked:
            return Judgement(None, missing=missing,
                             problem="the catalog holds no record of its digest")
        locked = [copy for copy in present if copy.locked]
        distinct = {(copy.sha256, copy.size) for copy in locked}
        if not locked:
            return Judgement(None, missing=missing, problem=(
                "the catalog holds no record of its digest and no store holds a locked "
                "copy to take it from"))
        if len(distinct) > 1:
            return Judgement(None, missing=missing, problem=(
                "the catalog holds no record of its digest and the locked copies differ ("
                + ", ".join(copy.store for copy in locked) + ")"))
        ((sha256, size),) = distinct
        learned = tuple(copy.store for copy in locked)
        record = Record(sha256, size or 0, "locked copy in " + ", ".join(learned))
    good = [copy for copy in present if matches(copy, record)]
    good.sort(key=lambda copy: not copy.locked)  # stable: the policy's order within each
    damaged = tuple(copy.store for copy in present if not matches(copy, record))
    return Judgement(record, good=tuple(copy.store for copy in good), damaged=damaged,
                     missing=missing, learned_from=learned)
