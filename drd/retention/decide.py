"""Which snapshots retention forgets: the policy's rules, then protections that always win.

:func:`decide` is pure. It applies the policy's ``retention`` rules as restic's
``forget --keep-*`` would (:func:`policies.retention.apply_retention`), then keeps,
whatever the rules say, every snapshot that is:

- **under Object Lock**: made less than ``object_lock_days`` (plus
  :data:`LOCK_SAFETY_MARGIN`, for clock skew and the time objects take to be written)
  before ``now``; its objects cannot be removed from a locked store anyway, and
  forgetting it in one store only would leave the stores disagreeing;
- **the newest good backup** of the system (:func:`drd.services.status.is_good_backup`):
  never forgotten, whatever the rules, so a system always keeps something to restore;
- **needed by a drill** that has not finished;
- **unknown to the catalog**: restic lists it, but no agent reported it (a report still
  in an agent's spool). It is judged once it is reported.

Every kept snapshot has its reasons (rules first, then protections); every removed one
says why restic's rules let it go.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from policies import format_duration
from policies.retention import NO_RULES_REASON, apply_retention
from policies.schema import Retention

# Object Lock is counted from the snapshot's time; objects are written a little later
# and clocks drift, so a lock is treated as holding this much longer.
LOCK_SAFETY_MARGIN = dt.timedelta(hours=1)

NEWEST_GOOD_REASON = "newest good backup"
UNREPORTED_REASON = "not reported by the agent yet"


@dataclass(frozen=True)
class SnapshotFacts:
    """What the decision needs to know of one snapshot.

    ``id`` is restic's full id, ``time`` timezone-aware. ``good``: a good backup (see
    :func:`drd.services.status.is_good_backup`). ``drills``: ids of unfinished drills
    that restore it. ``reported``: the catalog knows it (an agent reported it).
    """

    id: str
    time: dt.datetime
    good: bool = False
    drills: tuple[int, ...] = ()
    reported: bool = True


@dataclass(frozen=True)
class RetentionDecision:
    """What to keep and what to forget, newest first, each with its reasons.

    ``reasons`` maps every snapshot's id to why it is kept (rules, then protections) or,
    for one in ``remove``, why the rules let it go.
    """

    keep: list[SnapshotFacts] = field(default_factory=list)
    remove: list[SnapshotFacts] = field(default_factory=list)
    reasons: dict[str, list[str]] = field(default_factory=dict)

    @property
    def remove_ids(self) -> list[str]:
        return [snapshot.id for snapshot in self.remove]

    def as_dict(self) -> dict[str, Any]:
        def entry(snapshot: SnapshotFacts) -> dict[str, Any]:
            return {"id": snapshot.id, "short_id": snapshot.id[:8], "time": snapshot.time,
                    "good": snapshot.good, "reasons": list(self.reasons[snapshot.id])}

        return {"keep": [entry(s) for s in self.keep],
                "forget": [entry(s) for s in self.remove]}


def rules_text(rules: Retention) -> str:
    """The rules that are set, in policy words: ``keep_last 1, keep_daily 7``."""
    parts = [f"{name} {getattr(rules, name)}" for name in
             ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly",
              "keep_yearly") if getattr(rules, name)]
    if rules.keep_within:
        parts.append(f"keep_within {format_duration(rules.keep_within)}")
    return ", ".join(parts) or NO_RULES_REASON


def lock_until(snapshot: SnapshotFacts, object_lock_days: int,
               margin: dt.timedelta = LOCK_SAFETY_MARGIN) -> dt.datetime | None:
    """Until when ``snapshot`` counts as locked (margin included); None without a lock."""
    if object_lock_days <= 0:
        return None
    return snapshot.time + dt.timedelta(days=object_lock_days) + margin


def decide(snapshots: Iterable[SnapshotFacts], rules: Retention, now: dt.datetime, *,
           object_lock_days: int = 0,
           lock_margin: dt.timedelta = LOCK_SAFETY_MARGIN) -> RetentionDecision:
    """Split ``snapshots`` into those to keep and those to forget.

    Raises ``ValueError`` for a naive ``now`` or snapshot time, or an id given twice
    (as :func:`~policies.retention.apply_retention`).
    """
    snapshots = list(snapshots)
    plan = apply_retention(snapshots, rules, now)
    good = [snapshot for snapshot in snapshots if snapshot.good]
    newest_good = max(good, key=lambda s: s.time).id if good else None
    let_go = f"no rule keeps it ({rules_text(rules)})"

    decision = RetentionDecision()
    for snapshot in sorted(snapshots, key=lambda s: s.time, reverse=True):
        reasons = list(plan.reasons.get(snapshot.id, []))
        protections = []
        locked = lock_until(snapshot, object_lock_days, lock_margin)
        if locked is not None and locked > now:
            protections.append(f"object lock holds until {_iso(locked)}")
        if snapshot.id == newest_good:
            protections.append(NEWEST_GOOD_REASON)
        protections += [f"needed by drill {drill}" for drill in snapshot.drills]
        if not snapshot.reported:
            protections.append(UNREPORTED_REASON)
        if reasons or protections:
            decision.keep.append(snapshot)
            decision.reasons[snapshot.id] = reasons + protections
        else:
            decision.remove.append(snapshot)
            decision.reasons[snapshot.id] = [let_go]
    return decision


class StoreLike(Protocol):
    """What :func:`pick_store` needs of a store: its catalog id and its name."""

    @property
    def store_id(self) -> int: ...

    @property
    def name(self) -> str: ...


StoreT = TypeVar("StoreT", bound=StoreLike)


def pick_store(stores: Sequence[StoreT], listings: Mapping[int, Iterable[str] | None],
               tombstoned: set[str], watermarks: Mapping[int, dt.datetime | None]
               ) -> tuple[StoreT | None, list[str]]:
    """The store to prune, and why each store before it did not qualify.

    ``stores`` in the policy's order; ``listings`` the keys each holds (None: it could
    not be listed); ``watermarks`` each store's replication watermark. The first store
    that was listed, lacks no key another listed store holds (``tombstoned`` keys
    aside), and whose watermark is the newest of all, when any store has one.
    """
    held = {store.store_id: set(listings[store.store_id]) for store in stores
            if listings.get(store.store_id) is not None}
    union: set[str] = set().union(*held.values()) - tombstoned if held else set()
    newest = max((mark for mark in watermarks.values() if mark is not None), default=None)
    refusals = [f"{store.name} cannot be listed" for store in stores
                if store.store_id not in held]
    for store in stores:
        if store.store_id not in held:
            continue
        lacking = union - held[store.store_id]
        mark = watermarks.get(store.store_id)
        if lacking:
            refusals.append(f"{store.name} lacks {len(lacking)} objects that another store "
                            "holds (replication is behind)")
        elif newest is not None and (mark is None or mark < newest):
            refusals.append(f"{store.name}'s replication watermark is behind")
        else:
            return store, refusals
    return None, refusals


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
