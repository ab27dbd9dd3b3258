"""Applying retention to a system: forget and prune on one store, then the others follow.

:func:`run_retention` is what the daemon's ``retention`` job calls (and what an operator
may call by hand). One run:

1. **Lists every store** of the system (restic's own objects only,
   :func:`drd.ledger.is_restic_object`: drd's objects beside them, which prune never
   touches, are replication's and verification's).
2. **Processes due tombstones** (those of earlier runs whose delay has passed): a
   tombstone whose pruned store holds its key again is dropped (the content came back).
   If a snapshot came after the prune (reported after it, or held unreported), a backup
   may have deduplicated against what prune removed, reading another store's older
   indexes: the pruned store must first hold everything the others hold and pass a
   keyed ``restic check`` alone; what the check finds missing is brought back from the
   other stores (see :func:`_guard`; tombstones not due yet go through this too, so a
   pruned store is healed as soon as a snapshot needs it). Then the key is deleted from
   each other store (its ledger row too) once that store holds every object the pruned
   store holds -- the new index files prune wrote, above all, which replication copies
   -- so that no store loses index entries it still needs. A store that is down, or an
   object it refuses to delete, stays pending for a later run. This comes before this
   run's own prune, whose new index files the other stores cannot hold yet.
3. **Picks one store** to prune: the first of the policy's stores that is reachable,
   lacks no object that another reachable store holds (tombstoned objects aside), and
   whose replication watermark (:class:`~drd.catalog.models.Replica`), when the system
   has any, is the newest (:func:`drd.retention.decide.pick_store`). A store that lags
   is never pruned: prune would delete data that a snapshot it has not received yet
   still needs. If none qualifies, retention waits (the run reports an error) and
   replication catches up first.
4. **Unseals the password** (audited), lists restic's snapshots on that store and
   decides (:func:`drd.retention.decide.decide`) what to forget.
5. Records the start (the ledger of that store brought in line with its listing, and an
   audit entry ``retention.prune`` naming the store and the snapshots), runs ``restic
   forget ID...`` with our explicit ids and ``restic prune`` against that store alone,
   lists it again. Every object the ledger had for it at the start (listed then, not
   missing already) that the listing now lacks is what prune removed: each gets a
   :class:`~drd.catalog.models.Tombstone` (``delete_after = now +
   prune.delete_delay``), its ledger row goes, the catalog's snapshots and their
   copies become ``forgotten``, and the audit entry ``retention.forget`` closes the
   start. A ``retention.prune`` without its ``retention.forget`` (a crash in between) is
   finished by the next run: same store, prune again, tombstones from ledger against
   listing -- so a crash loses nothing and repeats nothing.

Replication and verification leave tombstoned keys alone (:func:`drd.ledger.tombstoned_keys`),
so nothing prune removed comes back meanwhile.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drd.catalog import Catalog, audit
from drd.catalog.models import (
    AuditEntry,
    Drill,
    Replica,
    Snapshot,
    SnapshotCopy,
    StoreObject,
    System,
    Tombstone,
)
from drd.catalog.types import utcnow
from drd.config import Config
from drd.crypto.keystore import KeyStore
from drd.crypto.masterkey import MasterKey
from drd.errors import OperationError, UserError
from drd.keyed_check import KeyedCheckReport, check_store
from drd.ledger import expected_sha256, is_restic_object, sync_listing, tombstoned_keys
from drd.replication.run import HashingReader, ObjectCorrupt
from drd.restic import ProgressEvent, Repository, Restic
from drd.retention.decide import (
    LOCK_PREFIX,
    RetentionDecision,
    SnapshotFacts,
    check_found_missing,
    decide,
    deletion_order,
    fresh_locks,
    lacking,
    pick_store,
    resurrection,
    snapshot_ids,
    snapshots_since,
)
from drd.services.alerts import raise_alert, resolve_alert
from drd.services.escrow import unseal_password
from drd.services.repositories import RepositoryStore, SystemRepository, open_repositories
from drd.services.status import BackupFacts, is_good_backup
from drd.stores.errors import StoreError
from policies import parse_duration
from policies.schema import Retention

log = logging.getLogger("drd.retention")

PRUNE_STARTED = "retention.prune"
PRUNE_DONE = "retention.forget"
RESURRECTED = "retention.resurrect"
DEFAULT_DELETE_DELAY = dt.timedelta(days=1)

Listing = dict[str, int]


@dataclass
class RetentionReport:
    """What one :func:`run_retention` did.

    ``store``: the store pruned (None when none was). ``forgotten``: restic ids of the
    snapshots forgotten; ``kept``: why each kept one is kept. ``pruned_objects`` /
    ``pruned_bytes``: what prune removed from that store (each now a tombstone).
    ``deleted_elsewhere``: objects deleted from the other stores this run; ``pending``:
    (tombstone, store) deletions that are due but had to wait (store down, object
    locked, replication behind); ``dropped``: tombstones dropped because the content
    came back. ``checked``: the pruned stores that a keyed check had to clear before
    their tombstones' objects could leave the other stores (see :func:`_guard`);
    ``resurrected``: pruned objects copied back onto their pruned store because a
    snapshot needs them (their tombstones dropped). ``ok`` is false when ``errors`` is
    not empty.
    """

    system: str
    store: str | None = None
    forgotten: list[str] = field(default_factory=list)
    kept: dict[str, list[str]] = field(default_factory=dict)
    pruned_objects: int = 0
    pruned_bytes: int = 0
    deleted_elsewhere: int = 0
    pending: int = 0
    dropped: int = 0
    checked: list[str] = field(default_factory=list)
    resurrected: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "ok": self.ok, "store": self.store,
                "forgotten": list(self.forgotten), "kept": dict(self.kept),
                "pruned_objects": self.pruned_objects, "pruned_bytes": self.pruned_bytes,
                "deleted_elsewhere": self.deleted_elsewhere, "pending": self.pending,
                "dropped": self.dropped, "checked": list(self.checked),
                "resurrected": self.resurrected, "errors": list(self.errors),
                "seconds": round(self.seconds, 3)}


# -- reading the catalog ------------------------------------------------------------------

def _system_row(session: Session, system: str) -> System:
    row = session.scalar(sa.select(System).where(System.name == system))
    if row is None:
        raise UserError(f"no system named {system!r} (see drd status)")
    if row.policy is None:
        raise UserError(f"system {system!r} has no policy yet: nothing decides its retention")
    return row


def _rules(document: dict[str, Any]) -> tuple[Retention, int]:
    return (Retention.model_validate(document.get("retention") or {}),
            int(document.get("object_lock_days") or 0))


def _delete_delay(document: dict[str, Any]) -> dt.timedelta:
    text = (document.get("prune") or {}).get("delete_delay")
    return parse_duration(text) if text else DEFAULT_DELETE_DELAY


def catalog_facts(session: Session, system_id: int, min_copies: int, *,
                  active_only: bool) -> dict[str, SnapshotFacts]:
    """The catalog's snapshots of ``system_id`` as decision facts, by restic id."""
    present = (sa.select(SnapshotCopy.snapshot_id, sa.func.count().label("present"))
               .where(SnapshotCopy.state == "present")
               .group_by(SnapshotCopy.snapshot_id).subquery())
    query = (sa.select(Snapshot.id, Snapshot.restic_id, Snapshot.time, Snapshot.partial,
                       Snapshot.status, sa.func.coalesce(present.c.present, 0))
             .outerjoin(present, present.c.snapshot_id == Snapshot.id)
             .where(Snapshot.system_id == system_id))
    if active_only:
        query = query.where(Snapshot.status == "active")
    drills: dict[object, list[int]] = {}
    for drill_id, snapshot_id, restic_id in session.execute(
            sa.select(Drill.id, Drill.snapshot_id, Drill.snapshot_restic_id)
            .where(Drill.system_id == system_id, Drill.finished_at.is_(None))):
        for name in {("row", snapshot_id), ("restic", restic_id)}:
            if name[1] is not None:
                drills.setdefault(name, []).append(drill_id)
    facts = {}
    for row_id, restic_id, moment, partial, status, count in session.execute(query):
        backup = BackupFacts(time=moment, partial=partial, present_copies=count,
                             status=status)
        needed = sorted(set(drills.get(("row", row_id), []))
                        | set(drills.get(("restic", restic_id), [])))
        facts[restic_id] = SnapshotFacts(id=restic_id, time=moment,
                                         good=is_good_backup(backup, min_copies),
                                         drills=tuple(needed),
                                         confirmed=status != "unconfirmed")
    return facts


def plan_retention(catalog: Catalog, system: str, *,
                   now: dt.datetime | None = None) -> RetentionDecision:
    """What retention would forget of ``system`` now, from the catalog's active snapshots.

    Needs no password and touches no store. Raises :class:`UserError` for an unknown
    system or one without a policy.
    """
    now = now or utcnow()
    with catalog.session() as session:
        row = _system_row(session, system)
        document = dict(row.policy.document)
        facts = catalog_facts(session, row.id, int(document.get("min_copies", 1)),
                              active_only=True)
    rules, lock_days = _rules(document)
    return decide(facts.values(), rules, now, object_lock_days=lock_days)


# -- the run -------------------------------------------------------------------------------

def run_retention(catalog: Catalog, master_key: MasterKey, keystore: KeyStore, config: Config,
                  system: str, *, now: dt.datetime | None = None, actor: str = "scheduler",
                  progress: Callable[[ProgressEvent], None] | None = None
                  ) -> RetentionReport:
    """Apply ``system``'s retention: forget and prune on one store, then the others follow.

    See the module docstring for the steps. A store or restic failure ends up in the
    report's ``errors`` (and an alert ``retention_failed``), not as an exception; a
    failure removing due tombstones' objects does not stop the forget and prune.
    ``progress`` gets a :class:`~drd.restic.ProgressEvent` per object removed from
    another store (objects as ``files_done``/``total_files``, with bytes).

    Raises:
        UserError: an unknown system, or one without a policy.
    """
    started = time.monotonic()
    now = now or utcnow()
    with catalog.session() as session:
        _system_row(session, system)
    (repository,) = open_repositories(catalog, master_key, [system])
    report = RetentionReport(system=system)
    listings = {rs.store_id: _list(rs) for rs in repository.stores}
    try:
        _process_tombstones(catalog, keystore, config, repository, listings, now, actor,
                            report, progress)
    except OperationError as error:
        report.errors.append(str(error))
        log.error("retention of %s (removing pruned objects elsewhere): %s", system, error)
    try:
        _forget_and_prune(catalog, keystore, config, repository, listings, now, actor,
                          report)
    except OperationError as error:
        report.errors.append(str(error))
        log.error("retention of %s: %s", system, error)
    with catalog.session() as session:
        if report.errors:
            raise_alert(session, "retention_failed",
                        f"retention of {system} did not finish: {report.errors[0]}",
                        system_id=repository.system_id,
                        details={"errors": report.errors[:10], "store": report.store})
        else:
            resolve_alert(session, "retention_failed", system_id=repository.system_id)
    report.seconds = time.monotonic() - started
    return report


def _list(rs: RepositoryStore) -> Listing | None:
    """The tracked keys (with sizes) of ``rs``, or None when it cannot be listed."""
    try:
        return {info.key: info.size for info in rs.store.list()
                if is_restic_object(info.key)}
    except StoreError as error:
        log.warning("retention: store %s cannot be listed: %s", rs.name, error)
        return None


def _unfinished_prune(session: Session, system: str) -> dict[str, Any] | None:
    """The details of a ``retention.prune`` that no ``retention.forget`` followed."""
    last = session.scalar(
        sa.select(AuditEntry).where(AuditEntry.target == system,
                                    AuditEntry.action.in_((PRUNE_STARTED, PRUNE_DONE)))
        .order_by(AuditEntry.id.desc()).limit(1))
    if last is None or last.action != PRUNE_STARTED:
        return None
    return dict(last.details)


def _forget_and_prune(catalog: Catalog, keystore: KeyStore, config: Config,
                      repository: SystemRepository, listings: dict[int, Listing | None],
                      now: dt.datetime, actor: str, report: RetentionReport) -> None:
    system = repository.system
    by_id = {rs.store_id: rs for rs in repository.stores}
    with catalog.session() as session:
        unfinished = _unfinished_prune(session, system)
        tombstoned = tombstoned_keys(session, repository.system_id)
        watermarks = dict(session.execute(
            sa.select(Replica.store_id, Replica.watermark_at)
            .where(Replica.system_id == repository.system_id)).all())
    if unfinished is not None:
        chosen = by_id.get(unfinished.get("store_id"))
        if chosen is None:
            raise OperationError(f"an interrupted prune of {system} on store "
                                 f"{unfinished.get('store')!r} cannot be finished: the "
                                 "policy no longer names that store")
        if listings.get(chosen.store_id) is None:
            raise OperationError(f"an interrupted prune of {system} on {chosen.name} waits "
                                 f"for {chosen.name} to be reachable again")
        log.warning("retention of %s: finishing the interrupted prune on %s", system,
                    chosen.name)
    else:
        chosen, refusals = pick_store(repository.stores, listings, tombstoned, watermarks)
        if chosen is None:
            raise OperationError(f"no store of {system} can be pruned now: "
                                 + "; ".join(refusals))
    report.store = chosen.name

    password = unseal_password(catalog, keystore, system, actor=actor,
                               reason=f"retention (forget and prune) on {chosen.name}")
    url, env = chosen.store.restic_location()
    restic_repository = Repository(url=url, password=password, env=env,
                                   display=f"{chosen.name}/{system}")
    restic = Restic(config.restic_binary)
    listed = restic.snapshots(restic_repository)

    document = repository.policy
    rules, lock_days = _rules(document)
    with catalog.session() as session:
        facts = catalog_facts(session, repository.system_id,
                              int(document.get("min_copies", 1)), active_only=False)
    decision = decide([facts.get(s.id) or SnapshotFacts(id=s.id, time=s.time, reported=False)
                       for s in listed], rules, now, object_lock_days=lock_days)
    report.kept = {s.id: list(decision.reasons[s.id]) for s in decision.keep}
    to_forget = decision.remove_ids
    if not to_forget and unfinished is None:
        log.info("retention of %s: nothing to forget on %s", system, chosen.name)
        return
    candidates = list(dict.fromkeys([*(unfinished or {}).get("snapshots", []), *to_forget]))

    # the ledger of the pruned store is what prune starts from: after prune, whatever it
    # had and the store lacks is what prune removed -- except what the store lacked
    # already (missing, waiting to be healed: never tombstoned). Listed again now:
    # objects a backup wrote since the run's first listing are in prune's reach, and must
    # be in the ledger to be tombstoned if it removes them. Listed before the catalog
    # session opens, so that no writer waits on a store's listing.
    listing = _list(chosen) if unfinished is None else None
    with catalog.session() as session:
        if unfinished is None:
            if listing is None:
                raise OperationError(f"{chosen.name} cannot be listed before the prune of "
                                     f"{system}: nothing was forgotten")
            sync_listing(session, repository.system_id, chosen.store_id, listing.items(),
                         now, scope=is_restic_object)
            absent = sorted({key for key in session.scalars(sa.select(StoreObject.key).where(
                StoreObject.system_id == repository.system_id,
                StoreObject.store_id == chosen.store_id)) if is_restic_object(key)}
                - set(listing))
        else:
            absent = list(unfinished.get("absent", []))
        audit.record(session, actor=actor, action=PRUNE_STARTED, target=system,
                     store=chosen.name, store_id=chosen.store_id, snapshots=candidates,
                     absent=absent)

    restic.unlock(restic_repository)  # a killed run's lock would refuse the prune
    if to_forget:
        restic.forget(restic_repository, to_forget)
    result = restic.prune(restic_repository)
    log.info("retention of %s: prune on %s deleted %d blobs (%s)", system, chosen.name,
             result.blobs_deleted, result.bytes_deleted or "0 B")
    after = {info.key: info.size for info in chosen.store.list()
             if is_restic_object(info.key)}
    # forget succeeded for ours; an interrupted run's are gone if restic no longer listed them
    listed_ids = {s.id for s in listed}
    forgotten = [snapshot_id for snapshot_id in candidates
                 if snapshot_id in to_forget or snapshot_id not in listed_ids]
    listings[chosen.store_id] = after

    delay = _delete_delay(document)
    with catalog.session() as session:
        # any state: a row that was present at the start may have been marked missing
        # meanwhile by a replication pass that listed the store during the prune
        rows = list(session.scalars(sa.select(StoreObject).where(
            StoreObject.system_id == repository.system_id,
            StoreObject.store_id == chosen.store_id)))
        already_absent = set(absent)
        removed = [row for row in rows if is_restic_object(row.key)
                   and row.key not in after and row.key not in already_absent]
        for row in removed:
            _tombstone(session, repository.system_id, row.key, row.size, chosen, now,
                       now + delay)
            session.delete(row)
        snapshot_ids = list(session.scalars(sa.select(Snapshot.id).where(
            Snapshot.system_id == repository.system_id,
            Snapshot.restic_id.in_(forgotten)))) if forgotten else []
        if snapshot_ids:
            session.execute(sa.update(Snapshot).where(Snapshot.id.in_(snapshot_ids))
                            .values(status="forgotten"))
            session.execute(sa.update(SnapshotCopy)
                            .where(SnapshotCopy.snapshot_id.in_(snapshot_ids))
                            .values(state="forgotten"))
        pruned_bytes = sum(row.size for row in removed)
        audit.record(session, actor=actor, action=PRUNE_DONE, target=system,
                     store=chosen.name, store_id=chosen.store_id, snapshots=forgotten,
                     objects=len(removed), bytes=pruned_bytes,
                     delete_after=(now + delay).isoformat(),
                     resumed=unfinished is not None)
    report.forgotten = forgotten
    report.pruned_objects = len(removed)
    report.pruned_bytes = pruned_bytes
    log.info("retention of %s: forgot %d snapshots on %s, prune removed %d objects "
             "(removed from the other stores after %s)", system, len(forgotten),
             chosen.name, len(removed), (now + delay).isoformat())


def _tombstone(session: Session, system_id: int, key: str, size: int,
               pruned: RepositoryStore, now: dt.datetime, delete_after: dt.datetime) -> None:
    existing = session.scalar(sa.select(Tombstone).where(Tombstone.system_id == system_id,
                                                         Tombstone.key == key))
    if existing is not None and existing.done_at is None:
        # already on its way out (pruned earlier, elsewhere): its own delay stands
        existing.deleted_from = sorted({*existing.deleted_from, pruned.name})
        return
    if existing is None:
        existing = Tombstone(system_id=system_id, key=key)
        session.add(existing)
    existing.size = size
    existing.pruned_store_id = pruned.store_id
    existing.removed_at = now
    existing.delete_after = delete_after
    existing.deleted_from = [pruned.name]
    existing.done_at = None


Due = tuple[int, str, int]  # a live tombstone: its id, key and pruned store's id


def _guard(catalog: Catalog, keystore: KeyStore, config: Config,
           repository: SystemRepository, listings: dict[int, Listing | None],
           live: list[Due], due_ids: set[int], now: dt.datetime, actor: str,
           report: RetentionReport) -> list[Due]:
    """Those of the ``live`` tombstones (not done; ``due_ids`` the due ones) whose keys
    may leave the other stores now, as far as the pruned store is concerned.

    A backup that ran during or after a prune may have read another store's indexes,
    which still listed what prune removed, and deduplicated against it: its snapshot
    then needs tombstoned packs. So, per pruned store, when any snapshot was reported
    after the tombstones' ``removed_at`` (or a store holds one no agent reported;
    :func:`~drd.retention.decide.snapshots_since`), the pruned store must first be
    shown self-sufficient:

    1. it holds every object another store holds, tombstoned keys aside (replication
       has brought it the new snapshots, indexes and packs); else everything waits;
    2. a keyed ``restic check`` (structure, no data) of the pruned store alone passes:
       every blob of every snapshot there is indexed there, in packs that are there;
    3. if instead the check finds objects missing, the tombstoned packs and indexes
       that another store still holds are copied back onto the pruned store (streamed,
       SHA-256 checked against the name), their tombstones dropped (audit
       ``retention.resurrect``) and the check runs again; if it still fails, nothing
       is deleted and the run reports an error (alert ``retention_failed``);
    4. no store holds a snapshot that the pruned store did not hold when it was
       listed at the start of the run (one that arrived while the check ran would not
       have been checked); else everything waits for the next run.

    Before all this, and again on each store between deleting the indexes and deleting
    the packs, a restic lock in any store that is not stale (a backup may be running,
    having read an index that still lists pruned packs) makes everything wait for a
    later run (:func:`~drd.retention.decide.fresh_locks`).

    Tombstones not due yet go through it too: a pruned store that a new snapshot needs
    pruned objects on is healed at once, rather than when they are due (until then a
    restore from it alone, and its next prune, would stop at the missing blobs).

    Nothing is deleted before this has passed in the same run, so a crash anywhere
    leaves only tombstones to be processed again (and copies that the next run finds
    back on the pruned store, and drops the tombstones of). Without a snapshot newer
    than the prune, nothing is checked.
    """
    by_id = {rs.store_id: rs for rs in repository.stores}
    groups: dict[int, list[Due]] = {}
    for entry in live:
        groups.setdefault(entry[2], []).append(entry)
    with catalog.session() as session:
        # a forgotten snapshot needs nothing any more
        reported = dict(session.execute(
            sa.select(Snapshot.restic_id, Snapshot.reported_at)
            .where(Snapshot.system_id == repository.system_id,
                   Snapshot.status != "forgotten")).all())
        removed_at = dict(session.execute(
            sa.select(Tombstone.pruned_store_id, sa.func.min(Tombstone.removed_at))
            .where(Tombstone.id.in_([entry[0] for entry in live]))
            .group_by(Tombstone.pruned_store_id)).all())
        tombstoned = tombstoned_keys(session, repository.system_id)
    held = snapshot_ids(key for listing in listings.values() if listing is not None
                        for key in listing) - snapshot_ids(tombstoned)
    cleared: list[Due] = []
    for pruned_id, entries in groups.items():
        since = snapshots_since(removed_at[pruned_id], reported, held)
        if not since:
            cleared += entries
            continue
        pruned = by_id.get(pruned_id)
        try:
            cleared += _guard_store(catalog, keystore, config, repository, pruned,
                                    listings, entries, due_ids, since, tombstoned, now,
                                    actor, report)
        except (StoreError, OperationError) as error:
            _wait(catalog, repository, entries, due_ids, report)
            report.errors.append(f"checking {pruned.name if pruned else '?'} before "
                                 f"removing pruned objects elsewhere: {error}")
            log.error("retention of %s: %s", repository.system, report.errors[-1])
    return cleared


def _guard_store(catalog: Catalog, keystore: KeyStore, config: Config,
                 repository: SystemRepository, pruned: RepositoryStore | None,
                 listings: dict[int, Listing | None], entries: list[Due],
                 due_ids: set[int], since: list[str], tombstoned: set[str],
                 now: dt.datetime, actor: str, report: RetentionReport) -> list[Due]:
    """:func:`_guard` for the live tombstones ``entries`` of one pruned store."""
    system = repository.system
    shown = ", ".join(snapshot_id[:8] for snapshot_id in since[:5])
    if pruned is None or any(listings.get(rs.store_id) is None for rs in repository.stores):
        _wait(catalog, repository, entries, due_ids, report)
        log.warning("retention of %s: %d pruned objects stay everywhere: snapshots made "
                    "since the prune (%s) need a check of the pruned store with every "
                    "store listed", system, len(entries), shown)
        return []
    others = [listings[rs.store_id] for rs in repository.stores if rs is not pruned]
    missing = lacking(listings[pruned.store_id], others, tombstoned)
    if missing:
        _wait(catalog, repository, entries, due_ids, report)
        log.warning("retention of %s: %s lacks %d objects another store holds; pruned "
                    "objects stay everywhere until replication brings them (snapshots "
                    "since the prune: %s)", system, pruned.name, len(missing), shown)
        return []

    checked_snapshots = snapshot_ids(listings[pruned.store_id])
    password = unseal_password(catalog, keystore, system, actor=actor,
                               reason=f"retention: restic check on {pruned.name} before "
                                      "pruned objects leave the other stores")
    report.checked.append(pruned.name)
    log.info("retention of %s: snapshots made since the prune (%s): checking %s alone "
             "before pruned objects leave the other stores", system, shown, pruned.name)
    result = check_store(catalog, keystore, config, repository, pruned, actor=actor,
                         password=password, alerts=False)
    resurrected = 0
    if not result.ok and result.ran and check_found_missing(result.errors):
        log.warning("retention of %s: restic check on %s finds objects missing (%s); "
                    "bringing pruned objects back", system, pruned.name,
                    _detail(result.errors))
        back = _resurrect(catalog, repository, pruned, listings, entries, since, now,
                          actor)
        report.resurrected += len(back)
        resurrected = len(back)
        entries = [entry for entry in entries if entry[1] not in back]
        if back:
            result = check_store(catalog, keystore, config, repository, pruned,
                                 actor=actor, password=password, alerts=False)
    if not result.ok:
        _wait(catalog, repository, entries, due_ids, report)
        report.errors.append(_check_failure(result, pruned.name, resurrected))
        return []

    # a snapshot that reached a store after the pruned store was listed was not checked
    arrived: set[str] = set()
    for rs in repository.stores:
        arrived |= snapshot_ids(info.key for info in rs.store.list("snapshots/"))
    unchecked = arrived - checked_snapshots - snapshot_ids(tombstoned)
    if unchecked:
        _wait(catalog, repository, entries, due_ids, report)
        log.warning("retention of %s: %d snapshots arrived during the check of %s; pruned "
                    "objects stay everywhere until the next run", system, len(unchecked),
                    pruned.name)
        return []
    return entries


def _detail(errors: list[str]) -> str:
    """The most telling of restic check's error lines (not a bare "error for tree X:")."""
    for line in errors:
        if not line.rstrip().endswith(":"):
            return line.strip()
    return errors[0].strip() if errors else "no detail"


def _running(repository: SystemRepository) -> list[str]:
    """The stores holding a restic lock that is not stale (a backup may be running and
    use pruned packs it found in an older index); logs when there are any."""
    now = utcnow()
    running = []
    for rs in repository.stores:
        try:
            locks = [(info.key, info.modified) for info in rs.store.list(LOCK_PREFIX)]
        except StoreError:
            continue  # nothing is deleted from a store that cannot be listed anyway
        if fresh_locks(locks, now):
            running.append(rs.name)
    if running:
        log.info("retention of %s: restic holds a lock in %s (a backup may be running); "
                 "pruned objects stay where they are until a later run", repository.system,
                 ", ".join(running))
    return running


def _check_failure(result: KeyedCheckReport, store: str, resurrected: int) -> str:
    if not result.ran:
        return (f"restic check on {store} could not run, pruned objects stay on the other "
                f"stores: {_detail(result.errors)}")
    after = f" after bringing back {resurrected} pruned objects" if resurrected else ""
    return (f"restic check on {store} fails{after}; pruned objects stay on the other "
            f"stores: {_detail(result.errors)}")


def _wait(catalog: Catalog, repository: SystemRepository, entries: list[Due],
          due_ids: set[int], report: RetentionReport) -> None:
    """Count the deletions of the due ones of ``entries`` that are not done as pending."""
    names = {rs.name for rs in repository.stores}
    with catalog.session() as session:
        for tombstone_id, _, _ in entries:
            if tombstone_id not in due_ids:
                continue
            tombstone = session.get(Tombstone, tombstone_id)
            if tombstone is not None:  # None: dropped, its key brought back
                report.pending += len(names - set(tombstone.deleted_from))


def _resurrect(catalog: Catalog, repository: SystemRepository, pruned: RepositoryStore,
               listings: dict[int, Listing | None], entries: list[Due], since: list[str],
               now: dt.datetime, actor: str) -> set[str]:
    """Copy the tombstoned packs and indexes of ``entries`` that another store still
    holds back onto ``pruned``; drop their tombstones. Returns the keys brought back.

    Each copy is streamed and checked against its name on the way (a bad one is never
    written; the next holder is tried). Under Object Lock a copy carries the policy's
    retention. The copies are made before any tombstone is dropped: after a crash, the
    next run finds the keys back on the pruned store and drops their tombstones then.
    """
    system = repository.system
    target = listings[pruned.store_id]
    others = {rs.name: listings[rs.store_id] for rs in repository.stores if rs is not pruned}
    stores = {rs.name: rs for rs in repository.stores}
    with catalog.session() as session:
        sizes = {key: session.get(Tombstone, tombstone_id).size
                 for tombstone_id, key, _ in entries}
    lock_days = int(repository.policy.get("object_lock_days") or 0)
    retain_until = (utcnow() + dt.timedelta(days=lock_days)
                    if pruned.object_lock and lock_days > 0 else None)
    back: dict[str, int] = {}
    for key, sources in resurrection(sizes, others).items():
        for source in sources:
            reader = HashingReader(stores[source].store.get(key), source, key, sizes[key],
                                   expected_sha256(key))
            try:
                pruned.store.put(key, reader, length=sizes[key], retain_until=retain_until)
            except (ObjectCorrupt, StoreError, ValueError, OSError) as error:
                log.warning("retention of %s: %s could not come back from %s: %s", system,
                            key, source, error)
                continue
            finally:
                reader.close()
            back[key] = sizes[key]
            target[key] = sizes[key]
            break
    with catalog.session() as session:
        for key, size in back.items():
            session.execute(sa.delete(StoreObject).where(
                StoreObject.store_id == pruned.store_id,
                StoreObject.system_id == repository.system_id, StoreObject.key == key))
            session.add(StoreObject(store_id=pruned.store_id, system_id=repository.system_id,
                                    key=key, size=size, state="present", first_seen_at=now))
        if not back:
            log.warning("retention of %s: no store holds the pruned objects %s lacks",
                        system, pruned.name)
            return set()
        session.execute(sa.delete(Tombstone).where(
            Tombstone.system_id == repository.system_id, Tombstone.key.in_(list(back))))
        audit.record(session, actor=actor, action=RESURRECTED, target=system,
                     store=pruned.name, store_id=pruned.store_id, objects=len(back),
                     bytes=sum(back.values()), snapshots=since[:20])
    log.warning("retention of %s: %d pruned objects (%d bytes) brought back onto %s for "
                "snapshots made since the prune", system, len(back), sum(back.values()),
                pruned.name)
    return set(back)


def _process_tombstones(catalog: Catalog, keystore: KeyStore, config: Config,
                        repository: SystemRepository, listings: dict[int, Listing | None],
                        now: dt.datetime, actor: str, report: RetentionReport,
                        progress: Callable[[ProgressEvent], None] | None = None) -> None:
    """Delete due tombstones' keys from the stores that still hold them."""
    system_id = repository.system_id
    by_id = {rs.store_id: rs for rs in repository.stores}
    names = {rs.name for rs in repository.stores}
    with catalog.session() as session:
        live = list(session.execute(
            sa.select(Tombstone.id, Tombstone.key, Tombstone.pruned_store_id,
                      Tombstone.delete_after <= now)
            .where(Tombstone.system_id == system_id, Tombstone.done_at.is_(None))
            .order_by(Tombstone.id)))
        tombstoned = tombstoned_keys(session, system_id)
    if not live:
        return
    # the guard runs for tombstones not due yet too: a store that a snapshot made since
    # its prune needs pruned objects for is healed at once (restores from it alone
    # work, and its next prune, which would stop at the missing blobs, can run)
    due_ids = {tombstone_id for tombstone_id, _, _, is_due in live if is_due}

    # the content came back: the pruned store holds the key again (a later backup wrote
    # the same object), so the other stores keep theirs
    alive = []
    with catalog.session() as session:
        for tombstone_id, key, pruned_id, is_due in live:
            pruned = by_id.get(pruned_id)
            listing = listings.get(pruned_id) if pruned is not None else {}
            if listing is None:
                report.pending += int(is_due)
                log.warning("retention of %s: %s waits: its pruned store %s cannot be "
                            "listed", repository.system, key, pruned.name)
                continue
            if key in listing:
                session.execute(sa.delete(Tombstone).where(Tombstone.id == tombstone_id))
                report.dropped += 1
                log.info("retention of %s: %s is back in %s; its tombstone is dropped",
                         repository.system, key, pruned.name)
                continue
            alive.append((tombstone_id, key, pruned_id))
    if alive and _running(repository):
        _wait(catalog, repository, alive, due_ids, report)
        return
    alive = [entry for entry in _guard(catalog, keystore, config, repository, listings,
                                       alive, due_ids, now, actor, report)
             if entry[0] in due_ids]

    total = sum(1 for rs in repository.stores for tombstone_id, key, _ in alive
                if key in (listings.get(rs.store_id) or {}))
    done_objects = done_bytes = 0
    for rs in repository.stores:
        with catalog.session() as session:
            tombstones = [session.get(Tombstone, tombstone_id) for tombstone_id, _, _ in alive]
            todo = [t for t in tombstones if rs.name not in t.deleted_from]
            if not todo:
                continue
            listing = listings.get(rs.store_id)
            if listing is None:
                report.pending += len(todo)
                log.warning("retention of %s: %d pruned objects wait for %s (cannot be "
                            "listed)", repository.system, len(todo), rs.name)
                continue
            behind = {}
            for pruned_id in {t.pruned_store_id for t in todo}:
                pruned_listing = listings.get(pruned_id) or {}
                behind[pruned_id] = len(set(pruned_listing) - set(listing) - tombstoned)
            todo.sort(key=lambda t: (deletion_order(t.key), t.key))
            indexes_deleted = False
            for position, tombstone in enumerate(todo):
                if behind.get(tombstone.pruned_store_id):
                    report.pending += 1
                    continue
                if indexes_deleted and deletion_order(tombstone.key) == 2:
                    # a backup that started before those indexes went may use the packs
                    indexes_deleted = False
                    if _running(repository):
                        report.pending += len(todo) - position
                        break
                if tombstone.key in listing:
                    try:
                        rs.store.delete(tombstone.key)
                    except StoreError as error:
                        report.pending += 1
                        log.warning("retention of %s: %s stays in %s for now: %s",
                                    repository.system, tombstone.key, rs.name, error)
                        continue
                    indexes_deleted |= deletion_order(tombstone.key) == 0
                    done_bytes += listing.pop(tombstone.key, 0)
                    done_objects += 1
                    report.deleted_elsewhere += 1
                    if progress is not None:
                        progress(ProgressEvent(
                            percent_done=done_objects / max(total, done_objects),
                            files_done=done_objects, total_files=total,
                            bytes_done=done_bytes))
                session.execute(sa.delete(StoreObject).where(
                    StoreObject.store_id == rs.store_id, StoreObject.system_id == system_id,
                    StoreObject.key == tombstone.key))
                tombstone.deleted_from = sorted({*tombstone.deleted_from, rs.name})
            for pruned_id, count in behind.items():
                if count:
                    log.warning("retention of %s: %s lacks %d objects that %s holds; "
                                "pruned objects stay there until replication copies them",
                                repository.system, rs.name, count,
                                by_id[pruned_id].name if pruned_id in by_id else "?")
    with catalog.session() as session:
        for tombstone_id, _, _ in alive:
            tombstone = session.get(Tombstone, tombstone_id)
            if names <= set(tombstone.deleted_from):
                tombstone.done_at = now
