"""Replication, executed: list every store of a system, plan, copy, keep the ledger and
the watermarks.

:func:`replicate` runs one pass over the chosen systems and stores. For each system:

1. every store is listed at once, in parallel (a store that is down is retried with
   backoff by its :class:`~drd.stores.retry.RetryingStore` -- seconds, not minutes --
   while the others are listed, then given up on for this pass); a filesystem store
   whose repository directory does not exist yet is created (only when the store's own
   directory is there: an unmounted share is not replaced by a local directory);
2. the ledger (:func:`drd.ledger.sync_listing`) is brought in line with each listing,
   and the catalog's records of the objects not named by their hash are read
   (:mod:`drd.recorded`; ``config`` of a system without one is learned from a locked
   copy, or left alone with an ``unverifiable`` alert);
3. :func:`~drd.replication.plan.plan_replication` decides the copies: such an object
   only where the catalog recorded it, from a copy of its recorded size -- never from
   the copy most stores hold;
3a. a store with versions (Object Lock) that a copy would go to is asked first whether
   a delete marker hides the key there (one version listing of the repository): a
   hidden object is brought back *in place* from its own newest good version
   (:mod:`drd.repair`; audit ``object.repair``, a ``tamper`` alert naming the system)
   and not copied. In place rather than copied over from another store: the store's own
   bytes, locked since they were written, come back without crossing regions, and the
   delete is noticed and alerted instead of papered over. Only where no version of its
   own is good is the copy from another store made (the alert says so);
4. they run in ``config.replication_parallel`` threads, packs before indexes and
   snapshots after everything else. A copy of a content-addressed object between two S3
   stores on one endpoint with one key is server-side (unless it must carry a retention
   or replaces a copy); any other is streamed, and the SHA-256 is checked on the way,
   against the object's name or, for ``config``, the sealed password and manifests,
   against the catalog's record: a source whose bytes do not match is marked
   ``corrupt`` in the ledger (a recorded object's also raises a ``tamper`` alert),
   nothing is written, and another source is tried. Objects
   up to :data:`BUFFER_LIMIT` are read once (under a shared memory budget) and written
   to every target that needs them; larger ones are streamed. On a store with Object
   Lock (and a policy with ``object_lock_days``) copies are written with that retention;
5. copied objects are committed to the ledger in small batches as they finish (a
   ``kill -9`` loses at most one batch of bookkeeping; the next pass lists the stores
   again and redoes only what is still missing -- the pass is idempotent);
6. each store that now lacks nothing of the union listed at the start ``T`` gets
   ``Replica.watermark_at = T``, and every snapshot of the system reported at or before
   ``T`` is marked ``present`` on it (if its ``snapshots/`` object is there, with every
   object its report named as missing); the others get their lag and error recorded.

The watermark is withheld from every store while a store that could not be listed is
known (by its ledger) to hold objects no listed store has: the union would be short.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from drd.catalog import Catalog, audit
from drd.catalog.models import Replica, Snapshot, SnapshotCopy, StoreObject
from drd.catalog.types import utcnow
from drd.config import Config
from drd.console.progress import human_bytes
from drd.crypto.masterkey import MasterKey
from drd.errors import UserError
from drd.ledger import CONFIG, expected_sha256, sync_listing, tombstoned_keys
from drd.recorded.copies import learn_config, load_records, raise_tamper
from drd.recorded.judge import Record
from drd.recorded.keys import is_recorded_kind
from drd.repair.decide import HIDDEN, KeyHistory, expected_for, histories
from drd.repair.repository import raise_covered, record_repair, retain_until_for
from drd.repair.versions import VersionMismatch, bring_back, find_good
from drd.replication.plan import (
    SNAPSHOTS_PHASE,
    PlannedCopy,
    ReplicationPlan,
    phase,
    plan_replication,
)
from drd.restic import ProgressEvent
from drd.services.repositories import RepositoryStore, SystemRepository, open_repositories
from drd.stores.base import Store
from drd.stores.errors import StoreError, StoreNotFound, StoreUnavailable
from drd.stores.streams import IteratorReader

log = logging.getLogger("drd.replication")

MIB = 1024 * 1024
BUFFER_LIMIT = 32 * MIB
"""Objects up to this size are read once into memory, checked, and written to every
target from there; larger ones are streamed to each target."""
MEMORY_BUDGET = 160 * MIB
"""The most object bytes held in memory at once, over all copying threads."""
CHECKPOINT_OBJECTS = 64
CHECKPOINT_SECONDS = 2.0
RETRY_ATTEMPTS = 4
RETRY_BACKOFF = 0.5
"""Operation-level retries of every store (about 3 s of backoff before one gives up)."""
MAX_ERRORS_KEPT = 20


class ObjectCorrupt(Exception):
    """An object's bytes on ``store`` do not hash to its name or its record (or are not
    its size)."""

    def __init__(self, store: str, key: str, reason: str) -> None:
        self.store = store
        self.key = key
        super().__init__(f"store {store!r}: {key} is corrupt ({reason})")


# --- the report --------------------------------------------------------------------------


@dataclass
class StoreResult:
    """One store of one system after a pass.

    ``listed`` is False when the store could not be listed (down); ``lag_objects`` /
    ``lag_bytes`` are what it still lacks (for a store that was down, what the ledger
    knows it lacks: a lower bound); ``watermark_at`` is the store's watermark after the
    pass (the pass's start when it brought the store up to date, else an earlier one, or
    None).
    """

    system: str
    store: str
    listed: bool = False
    objects_copied: int = 0
    bytes_copied: int = 0
    lag_objects: int | None = None
    lag_bytes: int | None = None
    conflicts: list[str] = field(default_factory=list)
    corrupt_sources: int = 0
    objects_repaired: int = 0
    watermark_at: dt.datetime | None = None
    errors: list[str] = field(default_factory=list)
    error_count: int = 0

    @property
    def ok(self) -> bool:
        return self.listed and self.lag_objects == 0 and self.error_count == 0

    def error(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(message)

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "store": self.store, "ok": self.ok,
                "listed": self.listed, "objects_copied": self.objects_copied,
                "bytes_copied": self.bytes_copied, "lag_objects": self.lag_objects,
                "lag_bytes": self.lag_bytes, "conflicts": list(self.conflicts),
                "corrupt_sources": self.corrupt_sources,
                "objects_repaired": self.objects_repaired,
                "watermark_at": self.watermark_at.isoformat() if self.watermark_at else None,
                "errors": list(self.errors), "error_count": self.error_count}


@dataclass
class ReplicationReport:
    """The outcome of :func:`replicate`: one :class:`StoreResult` per system and store.

    ``stopped`` is True when ``should_stop`` ended the pass early (the report is partial;
    ``ok`` is then False).
    """

    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    stores: list[StoreResult] = field(default_factory=list)
    stopped: bool = False

    @property
    def objects_copied(self) -> int:
        return sum(result.objects_copied for result in self.stores)

    @property
    def bytes_copied(self) -> int:
        return sum(result.bytes_copied for result in self.stores)

    @property
    def ok(self) -> bool:
        return not self.stopped and all(result.ok for result in self.stores)

    @property
    def failed(self) -> list[StoreResult]:
        return [result for result in self.stores if not result.ok]

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "stopped": self.stopped,
                "started_at": self.started_at.isoformat(),
                "finished_at": self.finished_at.isoformat() if self.finished_at else None,
                "objects_copied": self.objects_copied, "bytes_copied": self.bytes_copied,
                "stores": [result.as_dict() for result in self.stores]}


# --- streams ------------------------------------------------------------------------------


class HashingReader(IteratorReader):
    """The chunks of a source object as a file, checked on the way against ``sha256``
    (its name's, or the catalog's record: ``against`` says which, for the message).

    The read that would hand over the last byte raises :class:`ObjectCorrupt` instead
    when the size or the SHA-256 is wrong, so an upload reading from it fails before it
    is committed: a mismatch is never written.
    """

    def __init__(self, chunks, store: str, key: str, size: int, sha256: str | None,
                 against: str = "its name") -> None:
        super().__init__(chunks)
        self._store, self._key, self._size, self._expected = store, key, size, sha256
        self._against = against
        self._digest = hashlib.sha256()
        self._done = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self._digest.update(data)
        self._done += len(data)
        if self._done > self._size:
            raise ObjectCorrupt(self._store, self._key, f"longer than {self._size} bytes")
        if not data or self._done == self._size:
            if self._done != self._size:
                raise ObjectCorrupt(self._store, self._key,
                                    f"{self._done} bytes, not {self._size}")
            if self._expected is not None and self._digest.hexdigest() != self._expected:
                raise ObjectCorrupt(self._store, self._key,
                                    f"SHA-256 does not match {self._against}")
        return data

    def readinto(self, target) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)


class MemoryBudget:
    """A count of bytes that threads take before holding an object and give back after."""

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._condition = threading.Condition()

    def take(self, count: int) -> None:
        with self._condition:
            self._condition.wait_for(lambda: self._free >= count)
            self._free -= count

    def give(self, count: int) -> None:
        with self._condition:
            self._free += count
            self._condition.notify_all()


# --- copying one key ----------------------------------------------------------------------


@dataclass
class CopyOutcome:
    """What became of one planned copy. ``corrupt_sources`` are stores found to hold a bad
    copy on the way; ``verified`` that the source's bytes were read whole and hashed
    against the name (which proves the source's copy, not the one written)."""

    copy: PlannedCopy
    ok: bool = False
    source: str | None = None
    verified: bool = False
    skipped: bool = False
    error: str | None = None
    corrupt_sources: list[str] = field(default_factory=list)


def copy_group(store: Store) -> str | None:
    """A label shared by stores that can copy server-side between each other (S3 stores
    on one endpoint with one access key), None for others."""
    inner = store.unwrap()
    endpoint = getattr(inner, "endpoint", None)
    access_key = getattr(inner, "access_key_id", None)
    return f"{endpoint}|{access_key}" if endpoint and access_key else None


class _SystemCopier:
    """Runs the copies of one system's plan: one task per key, in threads."""

    def __init__(self, repository: SystemRepository, memory: MemoryBudget,
                 now: Callable[[], dt.datetime],
                 records: dict[str, Record] | None = None) -> None:
        self.stores = {store.name: store for store in repository.stores}
        self.records = records or {}
        self.groups = {name: copy_group(store.store) for name, store in self.stores.items()}
        self.lock_days = int(repository.policy.get("object_lock_days") or 0)
        self.memory = memory
        self.now = now
        self.down: set[str] = set()
        self._down_lock = threading.Lock()

    def _mark_down(self, name: str) -> None:
        with self._down_lock:
            self.down.add(name)

    def retain_until(self, target: RepositoryStore) -> dt.datetime | None:
        if target.object_lock and self.lock_days > 0:
            return self.now() + dt.timedelta(days=self.lock_days)
        return None

    def copy_key(self, copies: Sequence[PlannedCopy]) -> list[CopyOutcome]:
        """Make every copy of one key; a store's failure is an outcome, never raised.

        The copies from stores that held the key already run at once (reading the source
        once); those from a store this key is copied to first (a server-side copy from
        a near target) follow.
        """
        bad: set[str] = set()  # sources that failed or hold a bad copy of this key
        failed_targets: set[str] = set()
        held = _Held()
        receiving = {copy.target for copy in copies}
        first = [copy for copy in copies if copy.source not in receiving]
        then = [copy for copy in copies if copy.source in receiving]
        try:
            outcomes = {}
            if len(first) > 1:
                threads = [_Worker(self._copy_one, copy, bad, failed_targets, held)
                           for copy in first[1:]]
                for thread in threads:
                    thread.start()
                outcomes[id(first[0])] = self._copy_one(first[0], bad, failed_targets, held)
                for thread in threads:
                    thread.join()
                    outcomes[id(thread.copy)] = thread.outcome
            elif first:
                outcomes[id(first[0])] = self._copy_one(first[0], bad, failed_targets, held)
            for copy in then:
                outcomes[id(copy)] = self._copy_one(copy, bad, failed_targets, held)
        finally:
            held.release(self.memory)
        return [outcomes[id(copy)] for copy in copies]

    def _copy_one(self, copy: PlannedCopy, bad: set[str], failed_targets: set[str],
                  held: _Held) -> CopyOutcome:
        outcome = CopyOutcome(copy)
        if copy.target in self.down:
            outcome.skipped = True
            outcome.error = f"store {copy.target!r} is down"
            failed_targets.add(copy.target)
            return outcome
        candidates = [name for name in (copy.source, *copy.alternatives)
                      if name not in bad and name not in failed_targets
                      and name not in self.down]
        for source in candidates:
            try:
                self._copy(copy, source, held, outcome)
            except ObjectCorrupt as problem:
                log.warning("%s; trying another store", problem)
                bad.add(source)
                outcome.corrupt_sources.append(source)
                outcome.error = str(problem)
                continue
            except StoreError as problem:
                outcome.error = str(problem)
                if problem.store == copy.target:
                    if isinstance(problem, StoreUnavailable):
                        self._mark_down(copy.target)
                    break
                bad.add(source)
                if isinstance(problem, StoreUnavailable):
                    self._mark_down(source)
                continue
            except (ValueError, OSError) as problem:
                # e.g. the source's object changed length under a streamed copy
                outcome.error = f"copying from {source!r}: {problem}"
                bad.add(source)
                continue
            outcome.ok, outcome.source, outcome.error = True, source, None
            break
        if not outcome.ok:
            failed_targets.add(copy.target)
            if outcome.error is None:
                outcome.error = "no store holds a good copy to copy from"
        return outcome

    def _copy(self, copy: PlannedCopy, source_name: str, held: _Held,
              outcome: CopyOutcome) -> None:
        """One attempt of ``copy`` from ``source_name``."""
        source, target = self.stores[source_name], self.stores[copy.target]
        retain_until = self.retain_until(target)
        group = self.groups[copy.target]
        recorded = is_recorded_kind(copy.key)
        # A retention goes with a streamed put only: SeaweedFS ignores the Object Lock
        # headers of a server-side copy and leaves the copy unlocked. A copy that replaces
        # one the target holds is streamed too: its source is checked against the name
        # on the way, so a wrong vote on sizes can never overwrite the good copy. So is
        # every copy of an object not named by its hash: it is checked against the
        # catalog's record, whatever the other copies say.
        if group is not None and self.groups[source_name] == group and retain_until is None \
                and not copy.replaces and not recorded:
            target.store.copy_from(source.store, copy.key)
            return
        sha256 = expected_sha256(copy.key)
        against = "its name"
        if recorded:
            record = self.records.get(copy.key)
            if record is None:  # the plan never copies one without a record
                raise ObjectCorrupt(source_name, copy.key, "the catalog holds no record of it")
            sha256, against = record.sha256, "the catalog's record"
        if copy.size > BUFFER_LIMIT:
            reader = HashingReader(source.store.get(copy.key), source_name, copy.key,
                                   copy.size, sha256, against)
            try:
                target.store.put(copy.key, reader, length=copy.size, retain_until=retain_until)
            finally:
                reader.close()
            outcome.verified = sha256 is not None
            return
        data = held.read(source, copy, sha256, self.memory, against)
        target.store.put(copy.key, data, length=copy.size, retain_until=retain_until)
        outcome.verified = sha256 is not None


class _Worker(threading.Thread):
    """One copy of a key, beside the others of the same key."""

    def __init__(self, function, copy: PlannedCopy, *arguments) -> None:
        super().__init__(name=f"replicate-{copy.target}", daemon=True)
        self.function, self.copy, self.arguments = function, copy, arguments
        self.outcome: CopyOutcome | None = None

    def run(self) -> None:
        self.outcome = self.function(self.copy, *self.arguments)


class _Held:
    """The checked bytes of one object, read once for all its targets, and the memory
    they take from the budget."""

    def __init__(self) -> None:
        self.source: str | None = None
        self.data = b""
        self.size = 0
        self._lock = threading.Lock()

    def read(self, source: RepositoryStore, copy: PlannedCopy, sha256: str | None,
             memory: MemoryBudget, against: str = "its name") -> bytes:
        """The bytes of ``copy.key`` from ``source``, read and checked once.

        Raises :class:`ObjectCorrupt` (holding nothing) when they are wrong, and as
        :meth:`Store.get`.
        """
        with self._lock:
            if self.source == source.name:
                return self.data
            self.release(memory)
            memory.take(copy.size)
            self.size = copy.size
            data = b"".join(source.store.get(copy.key))
            if len(data) != copy.size:
                self.release(memory)
                raise ObjectCorrupt(source.name, copy.key, f"{len(data)} bytes, not {copy.size}")
            if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
                self.release(memory)
                raise ObjectCorrupt(source.name, copy.key, f"SHA-256 does not match {against}")
            self.source, self.data = source.name, data
            return data

    def release(self, memory: MemoryBudget) -> None:
        if self.size:
            memory.give(self.size)
        self.source, self.data, self.size = None, b"", 0


# --- listing ------------------------------------------------------------------------------


def _repository_directory_creatable(store: Store) -> bool:
    """True for a filesystem store whose store directory (two levels above the
    repository: ``<store>/<department>/<system>``) exists."""
    root = getattr(store.unwrap(), "root", None)
    return isinstance(root, Path) and root.parent.parent.is_dir()


def list_store(store: Store) -> dict[str, int]:
    """Every object of ``store`` (rooted at a repository) as ``{key: size}``.

    A filesystem repository directory that does not exist yet is created (empty
    listing). Raises :class:`StoreError` when the store cannot be listed.
    """
    try:
        return {info.key: info.size for info in store.list()}
    except StoreNotFound:
        if not _repository_directory_creatable(store):
            raise
        store.create_if_missing()
        return {}


def _list_all(stores: Sequence[RepositoryStore]
              ) -> tuple[dict[str, dict[str, int] | None], dict[str, str]]:
    listings: dict[str, dict[str, int] | None] = {}
    errors: dict[str, str] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(stores))) as pool:
        futures = {store.name: pool.submit(list_store, store.store) for store in stores}
        for name, future in futures.items():
            try:
                listings[name] = future.result()
            except StoreError as problem:
                listings[name] = None
                errors[name] = str(problem)
    return listings, errors


# --- the catalog side ---------------------------------------------------------------------


@dataclass
class _LedgerEntry:
    store_id: int
    key: str
    size: int
    # "present" (copied there), "verified" (a source read whole and found right) or
    # "corrupt" (a source found bad)
    state: str
    replaced: dict[str, Any] | None = None  # audit details when a bad copy was replaced


def _commit_ledger(catalog: Catalog, system_id: int, entries: list[_LedgerEntry],
                   now: dt.datetime) -> None:
    if not entries:
        return
    keys = sorted({entry.key for entry in entries})
    for attempt in (1, 2):
        try:
            with catalog.session() as session:
                rows = {(row.store_id, row.key): row for row in session.scalars(
                    sa.select(StoreObject).where(StoreObject.system_id == system_id,
                                                 StoreObject.key.in_(keys)))}
                for entry in entries:
                    row = rows.get((entry.store_id, entry.key))
                    if row is None:
                        if entry.state != "present":
                            continue  # a source's row was made by the listing
                        row = StoreObject(store_id=entry.store_id, system_id=system_id,
                                          key=entry.key, size=entry.size, first_seen_at=now)
                        session.add(row)
                        rows[(entry.store_id, entry.key)] = row
                    if entry.state == "verified":
                        if row.state == "present" and row.size == entry.size:
                            row.verified_at = now
                    elif entry.state == "present":
                        # written from checked bytes, but not read back: unverified
                        row.state, row.size, row.verified_at = "present", entry.size, None
                        if entry.replaced is not None:
                            audit.record(session, "replicator", "replication.replace",
                                         entry.key, **entry.replaced)
                    else:
                        row.state, row.failed_at = "corrupt", now
            return
        except sa.exc.IntegrityError:
            # another daemon's verifier added a row meanwhile: read again and update it
            if attempt == 2:
                raise


def _sync_ledger(catalog: Catalog, repository: SystemRepository,
                 listings: dict[str, dict[str, int] | None], at: dt.datetime
                 ) -> tuple[dict[str, set[str]], set[str]]:
    """Sync each listing into the ledger; return (corrupt keys per store, tombstones)."""
    names = {store.store_id: store.name for store in repository.stores}
    with catalog.session() as session:
        for store in repository.stores:
            listing = listings.get(store.name)
            if listing is not None:
                sync_listing(session, repository.system_id, store.store_id,
                             listing.items(), at)
        session.flush()
        corrupt: dict[str, set[str]] = {}
        for store_id, key in session.execute(sa.select(StoreObject.store_id, StoreObject.key)
                                             .where(StoreObject.system_id ==
                                                    repository.system_id,
                                                    StoreObject.state == "corrupt")):
            if store_id in names:
                corrupt.setdefault(names[store_id], set()).add(key)
        tombstones = tombstoned_keys(session, repository.system_id)
    return corrupt, tombstones


def _records(catalog: Catalog, repository: SystemRepository,
             listings: dict[str, dict[str, int] | None],
             now: Callable[[], dt.datetime]) -> dict[str, Record]:
    """The catalog's records of the system's objects not named by their hash; config's
    learned from a locked copy first when a store holds config and the catalog no record
    of it (:func:`drd.recorded.copies.learn_config`)."""
    records = load_records(catalog, repository.system_id, now())
    if CONFIG not in records and any(CONFIG in (listing or {}) for listing in
                                     listings.values()):
        judgement = learn_config(catalog, repository.system_id, repository.system,
                                 repository.stores, now)
        if judgement.expected is not None:
            records[CONFIG] = judgement.expected
    return records


def _raise_tampers(catalog: Catalog, repository: SystemRepository, plan: ReplicationPlan,
                   found_corrupt: dict[str, dict[str, int]], copied: dict[str, set[str]],
                   records: dict[str, Record], at: dt.datetime) -> None:
    """A ``tamper`` alert for each copy found with wrong bytes when read as a source, and
    each copy of a recorded object of another size than its record."""
    ids = {store.name: store.store_id for store in repository.stores}
    damaged: dict[tuple[str, str], str] = {}
    for conflict in plan.conflicts:
        if conflict.key in records:
            for name in conflict.corrupt:
                damaged[(name, conflict.key)] = (
                    "replication replaced it from a copy that matches the record"
                    if conflict.key in copied.get(name, ()) else
                    "replication could not replace it yet; verification heals it")
    for name, keys in found_corrupt.items():
        for key in keys:
            if key in records or not is_recorded_kind(key):
                damaged.setdefault((name, key), "verification heals it from a good copy")
    if not damaged:
        return
    with catalog.session() as session:
        for (name, key), outcome in sorted(damaged.items()):
            raise_tamper(session, system_id=repository.system_id, system=repository.system,
                         store_id=ids[name], store=name, key=key, found=None,
                         expected=records.get(key), outcome=f"found by replication: {outcome}",
                         now=at)


def _ledger_present(catalog: Catalog, system_id: int, store_id: int) -> dict[str, int]:
    with catalog.session() as session:
        rows = session.execute(sa.select(StoreObject.key, StoreObject.size).where(
            StoreObject.system_id == system_id, StoreObject.store_id == store_id,
            StoreObject.state == "present"))
        return {key: size for key, size in rows}


def _log_conflicts(repository: SystemRepository, plan: ReplicationPlan) -> None:
    # A size vote is no proof: the ledger learns a copy is corrupt only when its bytes
    # were read and did not hash to the name (a replacement is streamed and checked).
    for conflict in plan.conflicts:
        log.warning("replicate %s: %s has different sizes in different stores (%s); the "
                    "copy of size %d is tried first, checked against its name",
                    repository.system, conflict.key,
                    ", ".join(f"{name}: {size}" for name, size in conflict.sizes.items()),
                    conflict.size)


def _update_replica(session, system_id: int, store_id: int, **values) -> Replica:
    replica = session.scalar(sa.select(Replica).where(Replica.system_id == system_id,
                                                      Replica.store_id == store_id))
    if replica is None:
        replica = Replica(system_id=system_id, store_id=store_id)
        session.add(replica)
    for name, value in values.items():
        setattr(replica, name, value)
    return replica


def _mark_snapshots_present(session, system_id: int, store_id: int, at: dt.datetime,
                            holds: Callable[[str], bool]) -> int:
    """Copies on ``store_id`` of snapshots reported by ``at`` become ``present`` when the
    store holds their ``snapshots/`` object and every object their report named as
    missing. Returns how many changed."""
    rows = session.execute(
        sa.select(SnapshotCopy, Snapshot.restic_id).join(Snapshot).where(
            Snapshot.system_id == system_id, Snapshot.reported_at <= at,
            Snapshot.status == "active", SnapshotCopy.store_id == store_id,
            SnapshotCopy.state.in_(("pending", "missing")))).all()
    changed = 0
    for copy, restic_id in rows:
        if not holds(f"snapshots/{restic_id}"):
            continue
        if not all(holds(key) for key in copy.missing or ()):
            continue
        copy.state, copy.missing_objects, copy.missing = "present", 0, []
        changed += 1
    return changed


# --- one system ---------------------------------------------------------------------------


class _Progress:
    def __init__(self, callback: Callable[[ProgressEvent], None] | None, total_files: int,
                 total_bytes: int) -> None:
        self.callback = callback
        self.total_files, self.total_bytes = total_files, total_bytes
        self.files = self.bytes = 0
        self.started = time.monotonic()

    def advance(self, files: int, size: int) -> None:
        self.files += files
        self.bytes += size
        self.emit()

    def emit(self) -> None:
        if self.callback is None:
            return
        elapsed = time.monotonic() - self.started
        if self.total_bytes:
            done = self.bytes / self.total_bytes
        else:
            done = self.files / self.total_files if self.total_files else 1.0
        remaining = elapsed * (1 - done) / done if 0 < done < 1 else 0
        self.callback(ProgressEvent(percent_done=min(done, 1.0), files_done=self.files,
                                    total_files=self.total_files, bytes_done=self.bytes,
                                    total_bytes=self.total_bytes,
                                    seconds_elapsed=int(elapsed),
                                    seconds_remaining=int(remaining)))


def _replicate_system(catalog: Catalog, repository: SystemRepository,
                      targets: set[str] | None, parallel: int, memory: MemoryBudget,
                      progress, should_stop, now) -> tuple[list[StoreResult], bool]:
    listed_at = now()
    # every store is listed (each is a possible source); results are kept for targets
    results = {store.name: StoreResult(system=repository.system, store=store.name)
               for store in repository.stores}
    ids = {store.name: store.store_id for store in repository.stores}
    listings, list_errors = _list_all(repository.stores)
    for name, problem in list_errors.items():
        results[name].error(f"could not be listed: {problem}")
    for name, listing in listings.items():
        results[name].listed = listing is not None
    corrupt, tombstones = _sync_ledger(catalog, repository, listings, listed_at)
    records = _records(catalog, repository, listings, now)
    copier = _SystemCopier(repository, memory, now, records)
    plan = plan_replication(listings, order=[store.name for store in repository.stores],
                            corrupt=corrupt, tombstoned=tombstones,
                            copy_groups=copier.groups, targets=targets,
                            records={key: record.size for key, record in records.items()})
    for conflict in plan.conflicts:
        for name in conflict.corrupt:
            results[name].conflicts.append(conflict.key)
    _log_conflicts(repository, plan)

    copied: dict[str, set[str]] = {name: set() for name in results}
    to_copy = _bring_back_hidden(catalog, repository, plan, listings, records,
                                 copier.lock_days, results, copied, now)
    tracker = _Progress(progress, len(to_copy.copies), to_copy.total_bytes)
    tracker.emit()
    found_corrupt: dict[str, dict[str, int]] = {name: {} for name in results}
    stopped = _run_copies(catalog, repository, to_copy, copier, parallel, results, copied,
                          found_corrupt, tracker, should_stop, now)
    _raise_tampers(catalog, repository, plan, found_corrupt, copied, records, now())

    # Objects a store that could not be listed holds (by its ledger) and no listed store
    # has: without them the union is short, and no watermark may pass them.
    down_present = {name: _ledger_present(catalog, repository.system_id, ids[name])
                    for name in plan.down}
    unseen: dict[str, int] = {}
    for present in down_present.values():
        for key, size in present.items():
            if key not in plan.union and key not in tombstones:
                unseen[key] = size
    wanted = [store for store in repository.stores if targets is None or store.name in targets]
    with catalog.session() as session:
        for store in wanted:
            result = results[store.name]
            if listings[store.name] is None:
                present = down_present[store.name]
                lacking = {key: size for key, size in {**plan.union, **unseen}.items()
                           if present.get(key) != size}
                result.lag_objects, result.lag_bytes = len(lacking), sum(lacking.values())
                result.watermark_at = _update_replica(
                    session, repository.system_id, store.store_id,
                    lag_objects=result.lag_objects, lag_bytes=result.lag_bytes,
                    last_error=result.errors[0] if result.errors else None).watermark_at
                continue
            lag = plan.lag[store.name]
            done = [copy for copy in plan.copies_to(store.name)
                    if copy.key in copied[store.name]]
            # unsourced keys a store brought back from a version of its own
            done += [PlannedCopy(key, size, store.name, store.name)
                     for key, size in plan.unsourced.items() if key in copied[store.name]]
            # copies found corrupt here on the way (the next pass replaces them)
            found = {key: size for key, size in found_corrupt[store.name].items()
                     if key not in copied[store.name]}
            result.lag_objects = lag.objects - len(done) + len(unseen) + len(found)
            result.lag_bytes = (lag.bytes - sum(copy.size for copy in done)
                                + sum(unseen.values()) + sum(found.values()))
            if result.lag_objects == 0 and result.error_count == 0:
                result.watermark_at = listed_at
                holdings = listings[store.name]
                changed = _mark_snapshots_present(
                    session, repository.system_id, store.store_id, listed_at,
                    lambda key, holdings=holdings, mine=copied[store.name]:
                        key in holdings or key in mine or key in tombstones)
                _update_replica(session, repository.system_id, store.store_id,
                                watermark_at=listed_at, listed_at=listed_at,
                                lag_objects=0, lag_bytes=0, last_error=None)
                note = f"; {changed} snapshot copies now present" if changed else ""
                log.info("replicate %s -> %s: copied %d objects (%s), up to date, "
                         "watermark %s%s", repository.system, store.name,
                         result.objects_copied, human_bytes(result.bytes_copied),
                         listed_at.isoformat(timespec="seconds"), note)
                continue
            if result.errors:
                reason = result.errors[0]
            elif stopped:
                reason = "stopped before the copies were done"
            elif unseen:
                reason = (f"{len(unseen)} objects are only in a store that could not be "
                          f"listed ({', '.join(plan.down)})")
            elif found:
                reason = f"{len(found)} objects here are corrupt; the next pass replaces them"
            elif CONFIG in plan.unrecorded and CONFIG not in (listings[store.name] or {}):
                reason = ("config cannot be checked against a record (see the unverifiable "
                          "alert), so it is not copied here")
            else:
                reason = f"{len(plan.unsourced)} objects have no good copy in any store"
            if not result.errors:
                result.error(reason)
            result.watermark_at = _update_replica(
                session, repository.system_id, store.store_id, listed_at=listed_at,
                lag_objects=result.lag_objects, lag_bytes=result.lag_bytes,
                last_error=reason).watermark_at
            log.warning("replicate %s -> %s: copied %d objects (%s), %d still lacking "
                        "(%s): %s", repository.system, store.name, result.objects_copied,
                        human_bytes(result.bytes_copied), result.lag_objects,
                        human_bytes(result.lag_bytes or 0), reason)
    for name in plan.down:
        if targets is not None and name not in targets:
            log.warning("replicate %s: store %s could not be listed, so it served as no "
                        "source (%s)", repository.system, name, results[name].errors[0])
            continue
        result = results[name]
        log.warning("replicate %s -> %s: not reached (%s); lacking about %d objects (%s); "
                    "the next pass retries", repository.system, name,
                    result.errors[0] if result.errors else "?", result.lag_objects,
                    human_bytes(result.lag_bytes or 0))
    return [results[store.name] for store in wanted], stopped


def _bring_back_hidden(catalog: Catalog, repository: SystemRepository, plan: ReplicationPlan,
                       listings: dict[str, dict[str, int] | None],
                       records: dict[str, Record], lock_days: int,
                       results: dict[str, StoreResult], copied: dict[str, set[str]],
                       now: Callable[[], dt.datetime]) -> ReplicationPlan:
    """Bring back in place, from its own newest good version, each key a delete marker
    hides in a store with versions that lacks it: one the plan would copy there, or one
    no store holds a good copy of (step 3a of the module docstring); return the plan
    without those copies. The keys brought back join ``copied`` (they count as done for
    the store's lag). A store whose versions cannot be read, or a key without a good
    version of its own, keeps its planned copy."""
    wanted: dict[str, set[str]] = {}
    for copy in plan.copies:
        if not copy.replaces:
            wanted.setdefault(copy.target, set()).add(copy.key)
    for name in plan.lag:
        listed = listings.get(name)
        if listed is not None:
            lacking = {key for key in plan.unsourced if key not in listed}
            if lacking:
                wanted.setdefault(name, set()).update(lacking)
    holders = {holder.name: holder for holder in repository.stores}
    repaired: dict[str, set[str]] = {}
    for name, keys in wanted.items():
        holder = holders[name]
        try:
            if not holder.store.keeps_versions:
                continue
            hidden = [history for key, history in histories(
                entry for entry in holder.store.list_versions() if entry.key in keys).items()
                if history.hidden and history.older]
        except StoreError as error:
            log.warning("replicate %s -> %s: its versions could not be listed (%s); "
                        "missing objects are copied from the other stores", repository.system,
                        name, error)
            continue
        for history in sorted(hidden, key=lambda h: h.key):
            if _bring_back_one(catalog, repository, holder, history, records, lock_days,
                               now):
                repaired.setdefault(name, set()).add(history.key)
        results[name].objects_repaired += len(repaired.get(name, ()))
        copied[name] |= repaired.get(name, set())
    if not repaired:
        return plan
    return dataclasses.replace(plan, copies=tuple(
        copy for copy in plan.copies if copy.key not in repaired.get(copy.target, ())))


def _bring_back_one(catalog: Catalog, repository: SystemRepository, holder: RepositoryStore,
                    history: KeyHistory, records: dict[str, Record], lock_days: int,
                    now: Callable[[], dt.datetime]) -> bool:
    """One hidden key in ``holder``: brought back from its own newest good version (True),
    or noticed and alerted, its planned copy to go ahead (False)."""
    key = history.key
    expected = expected_for(key, records)
    if expected is None:
        return False  # the plan copies no recorded object without a record either
    outcome = "no version of its own is good: replication copies a good copy over it"
    try:
        found = find_good(holder.store, holder.name, history, expected)
        if found.choice.action == "restore":
            version = found.choice.version
            moment = now()
            retain_until = retain_until_for(holder, lock_days, moment)
            size = bring_back(holder.store, holder.store, key, version, expected,
                              retain_until)
            record_repair(catalog, system_id=repository.system_id, system=repository.system,
                          holder=holder, key=key, reason=HIDDEN, version=version.version_id,
                          size=size, source=holder.name, retain_until=retain_until,
                          actor="replicator", expected=expected, now=moment)
            return True
    except (VersionMismatch, StoreError, ValueError, OSError) as error:
        outcome = (f"bringing back its own version failed ({error}): replication copies a "
                   "good copy over it")
    with catalog.session() as session:
        raise_covered(session, system_id=repository.system_id, system=repository.system,
                      store_id=holder.store_id, store=holder.name, key=key, reason=HIDDEN,
                      expected=expected, outcome=outcome, now=now())
    return False


def _run_copies(catalog, repository, plan, copier, parallel, results, copied, found_corrupt,
                tracker, should_stop, now) -> bool:
    """Run the plan's copies (snapshots after the rest); checkpoint the ledger in
    batches. Returns True if ``should_stop`` ended it early."""
    ids = {store.name: store.store_id for store in repository.stores}
    by_key: dict[str, list[PlannedCopy]] = {}
    for copy in plan.copies:
        by_key.setdefault(copy.key, []).append(copy)
    first = [copies for key, copies in by_key.items() if phase(key) < SNAPSHOTS_PHASE]
    last = [copies for key, copies in by_key.items() if phase(key) >= SNAPSHOTS_PHASE]
    pending_ledger: list[_LedgerEntry] = []
    last_checkpoint = time.monotonic()
    failed_targets: set[str] = set()

    def record(outcomes: list[CopyOutcome]) -> None:
        nonlocal last_checkpoint
        for outcome in outcomes:
            copy = outcome.copy
            result = results[copy.target]
            for source in outcome.corrupt_sources:
                results[source].corrupt_sources += 1
                found_corrupt[source][copy.key] = copy.size
                pending_ledger.append(_LedgerEntry(ids[source], copy.key, copy.size,
                                                   "corrupt"))
            if outcome.ok:
                result.objects_copied += 1
                result.bytes_copied += copy.size
                copied[copy.target].add(copy.key)
                replaced = None
                if copy.replaces:
                    replaced = {"system": repository.system, "store": copy.target,
                                "source": outcome.source, "size": copy.size,
                                "checked": outcome.verified}
                pending_ledger.append(_LedgerEntry(ids[copy.target], copy.key, copy.size,
                                                   "present", replaced))
                if outcome.verified:
                    pending_ledger.append(_LedgerEntry(ids[outcome.source], copy.key,
                                                       copy.size, "verified"))
                tracker.advance(1, copy.size)
            else:
                failed_targets.add(copy.target)
                result.error(f"{copy.key}: {outcome.error}")
        if len(pending_ledger) >= CHECKPOINT_OBJECTS or \
                time.monotonic() - last_checkpoint >= CHECKPOINT_SECONDS:
            _commit_ledger(catalog, repository.system_id, pending_ledger, now())
            pending_ledger.clear()
            last_checkpoint = time.monotonic()

    def run(tasks: list[list[PlannedCopy]]) -> bool:
        queue = list(reversed(tasks))
        running: set[concurrent.futures.Future] = set()
        stop = False
        while queue or running:
            while queue and len(running) < parallel * 2:
                running.add(pool.submit(copier.copy_key, queue.pop()))
            done, running = concurrent.futures.wait(
                running, timeout=0.5, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                record(future.result())
            if not stop and should_stop is not None and should_stop():
                stop = True
                queue.clear()
        return stop

    with concurrent.futures.ThreadPoolExecutor(max_workers=parallel,
                                               thread_name_prefix="replicate") as pool:
        stopped = run(first)
        if not stopped:
            # a snapshot goes only where everything before it arrived
            ready = []
            for copies in last:
                for copy in copies:
                    if copy.target in failed_targets:
                        results[copy.target].error(
                            f"{copy.key}: not copied, as objects before it failed")
                copies = [copy for copy in copies if copy.target not in failed_targets]
                if copies:
                    ready.append(copies)
            stopped = run(ready)
    _commit_ledger(catalog, repository.system_id, pending_ledger, now())
    return stopped


# --- the entry point ----------------------------------------------------------------------


def replicate(catalog: Catalog, master_key: MasterKey, config: Config, *,
              systems: Iterable[str] | None = None, stores: Iterable[str] | None = None,
              progress: Callable[[ProgressEvent], None] | None = None,
              should_stop: Callable[[], bool] | None = None,
              now: Callable[[], dt.datetime] = utcnow) -> ReplicationReport:
    """One replication pass over ``systems`` (names; None: every enrolled system) and
    ``stores`` (names; None: all of each system's stores). Stores not named are still
    listed and copied from, never to.

    ``progress`` gets a :class:`~drd.restic.ProgressEvent` per object copied (objects as
    ``files_done``/``total_files``, with bytes), per system; ``should_stop()`` returning
    True ends the pass soon (between objects) with a partial report (``stopped``). A
    store's failure never raises: it is in the report (and ``Replica.last_error``).

    Raises:
        UserError: a system or store name the catalog does not know, or a system not
            kept in any of ``stores``.
        OperationError: the catalog cannot be reached.
    """
    wanted_systems = None if systems is None else list(systems)
    wanted_stores = None if stores is None else list(stores)
    report = ReplicationReport(started_at=now())
    targets = None if wanted_stores is None else set(wanted_stores)
    if targets is not None:
        # names checked (UserError for an unknown one); every store is opened below, as
        # the stores not named still serve as sources
        open_repositories(catalog, master_key, [], stores=wanted_stores)
    repositories = [repository for repository in open_repositories(
        catalog, master_key, wanted_systems, retry_attempts=RETRY_ATTEMPTS,
        retry_backoff=RETRY_BACKOFF)
        if targets is None or targets & {store.name for store in repository.stores}]
    if wanted_systems and targets and not repositories:
        raise UserError(f"{', '.join(wanted_systems)}: not kept in "
                        f"{', '.join(sorted(targets))} (see the policy's stores)")
    memory = MemoryBudget(max(MEMORY_BUDGET, BUFFER_LIMIT))
    parallel = max(1, int(config.replication_parallel))
    for repository in repositories:
        if should_stop is not None and should_stop():
            report.stopped = True
            break
        results, stopped = _replicate_system(catalog, repository, targets, parallel,
                                             memory, progress, should_stop, now)
        report.stores.extend(results)
        if stopped:
            report.stopped = True
            break
    report.finished_at = now()
    return report
