"""Whether a reported snapshot counts, from what the stores hold (pure).

A snapshot report is the agent's claim. The agent reports a snapshot only after the
fan-out made it durable, so a real one is held by at least the policy's ``min_copies``
stores when the report arrives: its ``snapshots/<id>`` object, whose SHA-256 is its
name. :func:`judge` weighs what one look at the stores found (:class:`Evidence`):

- **confirm** when at least ``min_copies`` stores hold the object (right bytes);
- **reject** when no store holds it and the stores that answered rule a real report
  out: fewer stores could not be asked than ``min_copies`` (every store answered
  without it, say), so ``min_copies`` stores cannot hold it;
- **reject** too when no store that answered holds it :data:`CONFIRM_WITHIN` after the
  report (an hour): a report whose snapshot never appears;
- otherwise **wait**: the stores that could hold it could not be asked (down, refused,
  not mounted), or some store holds it but fewer than ``min_copies`` do (replication
  copies it, and the next look confirms it). A report that waits never counts.

A rejected report stays rejected: it is the record of a claim the stores contradicted.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable
from dataclasses import dataclass

from policies import format_duration

CONFIRM_WITHIN = dt.timedelta(hours=1)
"""How long a report may wait for its snapshot to appear in a store that answers."""


class Verdict(enum.StrEnum):
    CONFIRM = "confirm"
    WAIT = "wait"
    REJECT = "reject"


@dataclass(frozen=True)
class Evidence:
    """What one look at the policy's stores found of one snapshot, by store name.

    ``held``: the object is there and its SHA-256 is its name. ``lacking``: the store
    answered, and has no such object (or bytes under that name that are not it).
    ``unknown``: the store could not be asked (down, refused the credentials, its
    directory missing).
    """

    held: frozenset[str] = frozenset()
    lacking: frozenset[str] = frozenset()
    unknown: frozenset[str] = frozenset()

    @classmethod
    def of(cls, held: Iterable[str] = (), lacking: Iterable[str] = (),
           unknown: Iterable[str] = ()) -> Evidence:
        return cls(frozenset(held), frozenset(lacking), frozenset(unknown))

    def as_dict(self) -> dict[str, list[str]]:
        return {"held": sorted(self.held), "lacking": sorted(self.lacking),
                "unknown": sorted(self.unknown)}


@dataclass(frozen=True)
class Judgement:
    """A :class:`Verdict` and why, in words for the log, the alert and the audit entry."""

    verdict: Verdict
    reason: str


def judge(evidence: Evidence, *, min_copies: int, reported_at: dt.datetime,
          now: dt.datetime, within: dt.timedelta = CONFIRM_WITHIN) -> Judgement:
    """Confirm, reject or wait for one reported snapshot (see the module docstring).

    ``min_copies`` is the policy's (at least 1); ``reported_at`` when the centre
    recorded the report (its own clock, never the agent's). Raises ``ValueError`` for a
    ``min_copies`` below 1.
    """
    if min_copies < 1:
        raise ValueError(f"min_copies must be at least 1, not {min_copies}")
    held, lacking, unknown = (sorted(evidence.held), sorted(evidence.lacking),
                              sorted(evidence.unknown))
    if len(held) >= min_copies:
        return Judgement(Verdict.CONFIRM, f"held by {', '.join(held)}")
    if held:
        return Judgement(Verdict.WAIT, f"held by {', '.join(held)} only, {min_copies} "
                         "copies needed (replication copies it)")
    if len(unknown) < min_copies:
        if not unknown:
            return Judgement(Verdict.REJECT, f"no store holds it ({', '.join(lacking)} "
                             "answered without it)")
        return Judgement(Verdict.REJECT, f"{', '.join(lacking)} answered without it, and "
                         f"{', '.join(unknown)} alone cannot hold {min_copies} copies")
    waited = now - reported_at
    if lacking and waited >= within:
        after = format_duration(_minutes(waited))
        return Judgement(Verdict.REJECT, f"not in {', '.join(lacking)} {after} after the "
                         f"report ({', '.join(unknown)} could not be asked)")
    return Judgement(Verdict.WAIT, f"{', '.join(unknown)} could not be asked"
                     + (f"; not in {', '.join(lacking)}" if lacking else ""))


def _minutes(span: dt.timedelta) -> dt.timedelta:
    return dt.timedelta(minutes=max(int(span.total_seconds() // 60), 1))
