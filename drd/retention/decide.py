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
  in an agent's spool). It is judged once it is reported;
- **not confirmed yet**: reported, but the centre has not yet seen it in ``min_copies``
  stores (:mod:`drd.confirmation`). It is judged once confirmed; forgotten before, the
  next look would find it gone and reject a real report.

Only a good backup -- confirmed, among other things -- is "the newest good backup": an
unconfirmed newer report never takes that protection from a confirmed snapshot.

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
UNCONFIRMED_REASON = "not confirmed in the stores yet"


@dataclass(frozen=True)
class SnapshotFacts:
    """What the decision needs to know of one snapshot.

    ``id`` is restic's full id, ``time`` timezone-aware. ``good``: a good backup (see
    :func:`drd.services.status.is_good_backup`). ``drills``: ids of unfinished drills
    that restore it. ``reported``: the catalog knows it (an agent reported it).
    ``confirmed``: not a report still waiting for the centre to see it in the stores.
    """

    id: str
    time: dt.datetime
    good: bool = False
    drills: tuple[int, ...] = ()
    reported: bool = True
    confirmed: bool = True


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
        if not snapshot.confirmed:
            protections.append(UNCONFIRMED_REASON)
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


# -- the guard before pruned objects leave the other stores ------------------------------
#
# A backup that runs while (or after) one store is pruned may read the indexes of another
# store, which still lists what prune removed, and dedup against it: the new snapshot then
# needs objects that are tombstoned. Before due tombstones are deleted, the pruned store
# must be shown self-sufficient (a keyed ``restic check`` there alone) whenever such a
# snapshot may exist; what the check finds missing is brought back from the stores that
# still hold it.

# what restic 0.14 ``check`` prints when an object a snapshot needs is gone:
#   "tree 5941..: file "f1" blob aed1.. not found in index"   (data blob not indexed)
#   "id bee4.. not found in repository"                        (tree blob not indexed)
#   "pack 7c78..: does not exist"                              (indexed pack missing)
#   "tree ..: file "f" blob N size could not be found"        (blob size unknown)
MISSING_MARKERS = ("not found in index", "not found in repository", ": does not exist",
                   "size could not be found")

# the objects brought back to a pruned store when a snapshot needs what prune removed:
# packs and the indexes naming them. A forgotten snapshot's own file stays gone (it
# would be a snapshot again); the next prune removes whatever no snapshot needs.
RESURRECTED_PREFIXES = ("data/", "index/")

SNAPSHOT_PREFIX = "snapshots/"


def snapshot_ids(keys: Iterable[str]) -> set[str]:
    """The restic ids of the ``snapshots/<id>`` keys among ``keys``."""
    return {key[len(SNAPSHOT_PREFIX):] for key in keys if key.startswith(SNAPSHOT_PREFIX)}


def snapshots_since(removed_at: dt.datetime, reported: Mapping[str, dt.datetime],
                    held: Iterable[str]) -> list[str]:
    """The snapshots that may use what a prune removed at ``removed_at``, sorted.

    ``reported`` maps the restic id of every snapshot the catalog knows to when it was
    reported; ``held`` are the ids of the snapshots some store holds. A snapshot counts
    when it was reported after ``removed_at`` (a backup that ran during or after the
    prune), or when a store holds it and no agent reported it yet (nothing says when it
    was made). Empty: no snapshot can need a removed object, no check is needed.
    """
    since = {snapshot_id for snapshot_id, moment in reported.items() if moment > removed_at}
    return sorted(since | (set(held) - set(reported)))


def lacking(pruned: Iterable[str], others: Iterable[Iterable[str]],
            tombstoned: Iterable[str]) -> set[str]:
    """The keys some other store holds and the pruned store lacks, tombstoned keys aside.

    Until it is empty the pruned store cannot be checked for the others: a new snapshot,
    index or pack may not have reached it yet.
    """
    held: set[str] = set().union(*(set(keys) for keys in others))
    return held - set(pruned) - set(tombstoned)


def check_found_missing(errors: Iterable[str]) -> bool:
    """Whether a failed ``restic check``'s error lines say that objects are missing (a
    blob not in the index, an indexed pack gone), which bringing back pruned objects
    may cure -- rather than, say, damaged data."""
    return any(marker in line for line in errors for marker in MISSING_MARKERS)


def resurrection(tombstoned: Mapping[str, int],
                 listings: Mapping[str, Mapping[str, int] | None]) -> dict[str, list[str]]:
    """What to copy back onto a pruned store, and from where.

    ``tombstoned`` maps the pruned store's due tombstoned keys to their sizes;
    ``listings`` what each other store holds (key to size; None: not listed). Every
    tombstoned pack or index (:data:`RESURRECTED_PREFIXES`) that another store still
    holds at the right size, mapped to those stores in the given order.
    """
    plan: dict[str, list[str]] = {}
    for key, size in sorted(tombstoned.items()):
        if not key.startswith(RESURRECTED_PREFIXES):
            continue
        sources = [name for name, listing in listings.items()
                   if listing is not None and listing.get(key) == size]
        if sources:
            plan[key] = sources
    return plan


# restic 0.14 refreshes the lock of a running command every 5 minutes and holds a lock
# older than 30 minutes for stale; the fan-out writes an agent's locks to every store
RESTIC_LOCK_STALE = dt.timedelta(minutes=30)

LOCK_PREFIX = "locks/"


def fresh_locks(locks: Iterable[tuple[str, dt.datetime]], now: dt.datetime,
                stale_after: dt.timedelta = RESTIC_LOCK_STALE) -> list[str]:
    """The keys of the restic locks (key, last modified) that are not stale at ``now``.

    One means a restic command (an agent's backup, above all) may be running: it may
    have read indexes that still list pruned packs, and write a snapshot that needs them
    after the guard's check, so pruned objects stay where they are until it is done.
    """
    return sorted(key for key, modified in locks if now - modified < stale_after)


def deletion_order(key: str) -> int:
    """Indexes first, then snapshots, then packs: once the indexes that list pruned packs
    are gone from a store, no backup starting there can deduplicate against those packs."""
    if key.startswith("index/"):
        return 0
    if key.startswith(SNAPSHOT_PREFIX):
        return 1
    return 2
