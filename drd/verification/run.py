"""Keyless verification of every stored copy, and self-heal from a good copy.

Restic names each object under ``data/``, ``index/``, ``snapshots/`` and ``keys/`` by
the SHA-256 of its bytes (:func:`drd.ledger.expected_sha256`): reading an object back
and hashing it proves the copy intact, without the repository password. ``config``, the
sealed password and the manifests have fixed names: a copy of one is right when it has
the SHA-256 and size the catalog recorded when it was written (:mod:`drd.recorded`) --
never because most stores agree. A copy that does not match is damaged: it is healed
from a copy that matches (a locked one first, else the catalog's own bytes where it
holds them: the sealed password, a manifest). Every copy found with wrong bytes, of
either kind, raises a ``tamper`` alert naming the system and the store: someone who can
write there changed it (or the medium failed); the alert stays open until an operator
resolves it (``drd alerts resolve``), since whoever changed the copy may still hold the
keys that did. ``config`` of a system the
catalog holds no record of is learned from a locked copy
(:func:`drd.recorded.copies.learn_config`), or left unchecked with an ``unverifiable``
alert: it is then neither judged nor healed.

:func:`verify` runs, for each system and each of its stores:

1. *List* the store and bring the ledger in line (:func:`drd.ledger.sync_listing`): new
   objects join it unverified, objects that vanished become ``missing``.
2. *Select* within the run's byte budget (:mod:`drd.verification.select`): objects left
   ``corrupt`` by an earlier run, then never verified ones, then the least recently
   verified. The budget is the ``budget_bytes`` argument, else the store's
   ``verify_budget_bytes`` (shared among its systems by size), else the default that
   re-reads every byte within the policy's ``verification.period``.
3. *Read* each selected object back, streaming, a few at a time, and record
   ``verified_at`` in the ledger in small batches: a run killed at any point loses at
   most a batch, and a rerun does the same work again harmlessly.
4. *Heal* each object found corrupt or missing (:meth:`_Verifier.heal` gives the order
   of sources): a missing object that a delete marker hides in a store with versions is
   reported ``hidden`` (with a ``tamper`` alert) and brought back from that store's own
   newest good version; otherwise another store of the system whose current copy
   verifies (against its name, or its record) is the source, then the catalog's own
   bytes, then the newest good *version* beneath a bad current copy, this store's first
   (:mod:`drd.repair`: an overwrite in every store leaves the locked versions beneath
   it). The good bytes are written onto the bad store (a new version where the bucket
   is versioned or locked, with the policy's Object Lock retention), read back and
   checked again, and the audit entry ``object.heal`` names the source (and the version,
   where one was brought back).

When no store holds a good copy or version, the object is **lost**: its ledger rows say so, the
copies of the snapshots that may need it are marked ``damaged`` and a ``damage`` alert
names the system, the store and the key. A ``snapshots/<id>`` object belongs to one
snapshot; for any other object (a pack, an index, a key) drd cannot tell which
snapshots use it without the repository password, so it marks every active snapshot of
the system, conservatively: a ``restic check`` or a drill tells more (a lost sealed
password or manifest marks none: restic needs neither to restore). The alert is
resolved when a later run finds that store's copy good again (healed or restored); the
snapshot copies stay ``damaged`` until an operator or a keyed check says otherwise.

What verification never touches: ``locks/`` (not tracked), tombstoned keys (on their way
out after a prune, :func:`drd.ledger.tombstoned_keys`), and the ``snapshots/`` file of a
snapshot retention forgot (it is not healed back).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drd.catalog import Catalog, audit
from drd.catalog.models import (
    Alert,
    Policy,
    Replica,
    Snapshot,
    SnapshotCopy,
    StoreObject,
    Tombstone,
)
from drd.catalog.models import Store as StoreRow
from drd.catalog.models import System as SystemRow
from drd.catalog.types import UTCDateTime, utcnow
from drd.config import Config
from drd.crypto.keystore import KeyStore
from drd.crypto.masterkey import MasterKey
from drd.ledger import CONFIG, expected_sha256, sync_listing, tombstoned_keys
from drd.recorded.catalog import catalog_bytes
from drd.recorded.copies import (
    digest_of,
    learn_config,
    load_records,
    raise_tamper,
    survey,
)
from drd.recorded.judge import Record, judge_copies
from drd.recorded.keys import is_drd_object, is_recorded_kind
from drd.repair.decide import Expected, KeyHistory
from drd.repair.repository import raise_covered, retain_until_for
from drd.repair.versions import VersionMismatch, bring_back, find_good, key_history
from drd.restic import ProgressEvent
from drd.services import alerts
from drd.services.repositories import RepositoryStore, SystemRepository, open_repositories
from drd.services.stores import store_rows
from drd.stores.base import Store
from drd.stores.errors import ObjectNotFound, StoreError
from drd.verification.select import (
    DEFAULT_PERIOD,
    DEFAULT_SCHEDULE,
    Coverage,
    CoverageCounts,
    LedgerEntry,
    budget_for,
    coverage_from_counts,
    select_for_verification,
)
from policies import parse_duration

log = logging.getLogger("drd.verification")

ACTOR = "verifier"
# ledger writes are committed after this many objects, or this many seconds
BATCH_OBJECTS = 64
BATCH_SECONDS = 2.0
DEFAULT_PARALLEL = 8


@dataclass(frozen=True)
class Finding:
    """One object found wrong on one store, and what became of it.

    ``reason`` is ``corrupt`` (its bytes do not hash to its name, or differ from the
    catalog's record), ``missing`` (the store lacks it), ``hidden`` (a delete marker
    hides it: the store lacks it as restic sees it, but keeps its versions) or
    ``unchecked`` (no record to judge it by); ``source`` is the store a good copy came
    from (healed; ``catalog``: the catalog's own bytes), ``version`` the version of it
    brought back (None: its current copy), ``detail`` why it could not be healed or
    checked.
    """

    system: str
    store: str
    key: str
    reason: str
    size: int | None = None
    source: str | None = None
    detail: str = ""
    version: str | None = None

    @property
    def target(self) -> str:
        return f"{self.store}:{self.system}/{self.key}"

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "store": self.store, "key": self.key,
                "reason": self.reason, "size": self.size, "source": self.source,
                "version": self.version, "detail": self.detail}


@dataclass
class StoreVerification:
    """The outcome of verifying one system's repository on one store.

    ``missing`` holds the objects the store lacks, ``hidden`` those it lacks as restic
    sees them but keeps beneath a delete marker; ``unhealed`` holds objects found wrong
    that could not be healed now, though they may not be lost (another store did not
    answer, or the write failed); ``unchecked`` the
    objects not named by their hash that no record judges (``config`` of a system whose
    digest is unknown, a manifest not yet uploaded to the centre); ``errors`` the
    failures that stopped some of the work (the store could not be listed, an object
    could not be read).
    """

    system: str
    store: str
    budget_bytes: int | None = None
    objects_selected: int = 0
    bytes_selected: int = 0
    objects_verified: int = 0
    bytes_read: int = 0
    corrupt: list[Finding] = field(default_factory=list)
    missing: list[Finding] = field(default_factory=list)
    hidden: list[Finding] = field(default_factory=list)
    healed: list[Finding] = field(default_factory=list)
    lost: list[Finding] = field(default_factory=list)
    unhealed: list[Finding] = field(default_factory=list)
    unchecked: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    coverage: Coverage | None = None
    stopped: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing is lost, nothing awaits healing and nothing failed."""
        return not (self.lost or self.unhealed or self.errors)

    def as_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "store": self.store,
            "ok": self.ok,
            "budget_bytes": self.budget_bytes,
            "objects_selected": self.objects_selected,
            "bytes_selected": self.bytes_selected,
            "objects_verified": self.objects_verified,
            "bytes_read": self.bytes_read,
            "corrupt": [finding.as_dict() for finding in self.corrupt],
            "missing": [finding.as_dict() for finding in self.missing],
            "hidden": [finding.as_dict() for finding in self.hidden],
            "healed": [finding.as_dict() for finding in self.healed],
            "lost": [finding.as_dict() for finding in self.lost],
            "unhealed": [finding.as_dict() for finding in self.unhealed],
            "unchecked": [finding.as_dict() for finding in self.unchecked],
            "errors": list(self.errors),
            "coverage": self.coverage.as_dict() if self.coverage else None,
            "stopped": self.stopped,
        }


@dataclass
class VerificationReport:
    """What :func:`verify` did: one :class:`StoreVerification` per system and store, and
    the coverage of each store touched afterwards (all its systems, by store name)."""

    runs: list[StoreVerification] = field(default_factory=list)
    coverage: dict[str, Coverage] = field(default_factory=dict)
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None

    def _all(self, name: str) -> list[Finding]:
        return [finding for run in self.runs for finding in getattr(run, name)]

    @property
    def bytes_read(self) -> int:
        return sum(run.bytes_read for run in self.runs)

    @property
    def objects_verified(self) -> int:
        return sum(run.objects_verified for run in self.runs)

    @property
    def corrupt(self) -> list[Finding]:
        return self._all("corrupt")

    @property
    def missing(self) -> list[Finding]:
        return self._all("missing")

    @property
    def hidden(self) -> list[Finding]:
        return self._all("hidden")

    @property
    def healed(self) -> list[Finding]:
        return self._all("healed")

    @property
    def lost(self) -> list[Finding]:
        return self._all("lost")

    @property
    def unhealed(self) -> list[Finding]:
        return self._all("unhealed")

    @property
    def unchecked(self) -> list[Finding]:
        return self._all("unchecked")

    @property
    def errors(self) -> list[str]:
        return [f"{run.store}/{run.system}: {error}" for run in self.runs
                for error in run.errors]

    @property
    def stopped(self) -> bool:
        return any(run.stopped for run in self.runs)

    @property
    def problems(self) -> list[str]:
        """One line per thing that makes the report not ``ok``, for logs and job runs."""
        lines = [f"{f.target} lost: {f.detail}" for f in self.lost]
        lines += [f"{f.target} not healed ({f.reason}): {f.detail}" for f in self.unhealed]
        return lines + self.errors

    @property
    def ok(self) -> bool:
        return all(run.ok for run in self.runs)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "bytes_read": self.bytes_read,
            "objects_verified": self.objects_verified,
            "corrupt": len(self.corrupt),
            "missing": len(self.missing),
            "hidden": len(self.hidden),
            "healed": len(self.healed),
            "lost": len(self.lost),
            "unhealed": len(self.unhealed),
            "unchecked": len(self.unchecked),
            "errors": self.errors,
            "problems": self.problems,
            "stopped": self.stopped,
            "runs": [run.as_dict() for run in self.runs],
            "stores": [{"store": name} | value.as_dict()
                       for name, value in sorted(self.coverage.items())],
        }


# --- reading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Read:
    """The outcome of reading one object back: its digest and size, or why not."""

    key: str
    row_id: int | None
    outcome: str  # ok, corrupt, missing, unchecked, error
    size: int = 0
    digest: str | None = None
    at: dt.datetime | None = None
    error: str = ""


@dataclass(frozen=True)
class _Expected:
    """What one object's bytes must be: its SHA-256 (from its name or its record) and,
    for a recorded object, its size; ``sha256`` None: nothing judges it (``why``)."""

    sha256: str | None
    size: int | None = None
    why: str = ""


def _read(store: Store, key: str, row_id: int | None, expected: _Expected,
          now: Callable[[], dt.datetime]) -> _Read:
    try:
        digest, size = digest_of(store, key)
    except ObjectNotFound:
        return _Read(key, row_id, "missing")
    except StoreError as error:
        return _Read(key, row_id, "error", error=str(error))
    if expected.sha256 is None:
        return _Read(key, row_id, "unchecked", size, digest, now(), error=expected.why)
    right = digest == expected.sha256 and expected.size in (None, size)
    return _Read(key, row_id, "ok" if right else "corrupt", size, digest, now())


# --- the run ----------------------------------------------------------------------------


@dataclass
class _Attempt:
    """What one heal learned of the other stores on the way: ``bad`` copies (store ->
    ``corrupt`` or ``missing``), and the stores that did not answer (``silent``)."""

    bad: dict[str, str] = field(default_factory=dict)
    silent: list[str] = field(default_factory=list)


@dataclass
class _Pair:
    """One system's repository on one store, planned for this run."""

    repository: SystemRepository
    target: RepositoryStore
    result: StoreVerification
    selected: list[LedgerEntry] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # key -> StoreObject id
    # (key, reason, size, already lost)
    to_heal: list[tuple[str, str, int | None, bool]] = field(default_factory=list)
    open_alerts: set[str] = field(default_factory=set)
    tombstoned: set[str] = field(default_factory=set)
    previously_lost: set[str] = field(default_factory=set)
    period: dt.timedelta = DEFAULT_PERIOD


class _Verifier:
    def __init__(self, catalog: Catalog, *, full: bool, budget_bytes: int | None,
                 progress, should_stop, now, parallel: int,
                 keystore: KeyStore | None = None) -> None:
        self.catalog = catalog
        self.full = full
        self.budget_bytes = budget_bytes
        self.progress = progress
        self.should_stop = should_stop or (lambda: False)
        self.now = now
        self.parallel = max(1, parallel)
        # per system: the catalog's records of objects not named by their hash, and, once
        # config's record was looked for in locked copies this run, why none was found
        self.records: dict[int, dict[str, Record]] = {}
        self.learned: dict[int, str] = {}
        self.tamper_raised: set[tuple[int, int, str]] = set()
        # seals a kept manifest again to heal a sealed copy from the catalog
        self.keystore = keystore
        self.total_objects = self.total_bytes = 0
        self.done_objects = self.done_bytes = 0

    # -- planning

    def plan(self, repository: SystemRepository, target: RepositoryStore) -> _Pair:
        document = repository.policy.get("verification") or {}
        period = _duration(document.get("period"), DEFAULT_PERIOD)
        schedule = document.get("schedule") or DEFAULT_SCHEDULE
        pair = _Pair(repository, target, StoreVerification(repository.system, target.name),
                     period=period)
        self.records_of(repository)
        try:
            listing = [(info.key, info.size) for info in target.store.list()]
        except StoreError as error:
            pair.result.errors.append(f"cannot list the store: {error}")
            return pair
        now = self.now()
        with self.catalog.session() as session:
            # a lost object still listed is 'present' again after the sync; if it is
            # still bad, it is not news
            pair.previously_lost = set(session.scalars(sa.select(StoreObject.key).where(
                StoreObject.system_id == repository.system_id,
                StoreObject.store_id == target.store_id, StoreObject.state == "lost")))
        for attempt in (1, 2):
            try:
                with self.catalog.session() as session:
                    sync_listing(session, repository.system_id, target.store_id, listing, now)
                break
            except sa.exc.IntegrityError:
                # another process added the same keys at the same moment: its rows stand
                if attempt == 2:
                    raise
        with self.catalog.session() as session:
            pair.tombstoned = tombstoned_keys(session, repository.system_id)
            rows = session.execute(sa.select(
                StoreObject.id, StoreObject.key, StoreObject.size, StoreObject.state,
                StoreObject.first_seen_at, StoreObject.verified_at).where(
                StoreObject.system_id == repository.system_id,
                StoreObject.store_id == target.store_id))
            entries = []
            for row in rows:
                if row.key in pair.tombstoned:
                    continue
                pair.rows[row.key] = row.id
                entries.append(LedgerEntry(key=row.key, size=row.size,
                                           first_seen_at=row.first_seen_at,
                                           verified_at=row.verified_at, period=period,
                                           state=row.state))
                if row.state in ("missing", "lost"):
                    pair.to_heal.append((row.key, "missing", row.size, row.state == "lost"))
                if row.state == "missing":
                    pair.result.missing.append(Finding(repository.system, target.name,
                                                       row.key, "missing", row.size))
            configured = session.scalar(sa.select(StoreRow.verify_budget_bytes).where(
                StoreRow.id == target.store_id))
            store_bytes = None
            if configured is not None and self.budget_bytes is None:
                store_bytes = session.scalar(sa.select(
                    sa.func.coalesce(sa.func.sum(StoreObject.size), 0)).where(
                    StoreObject.store_id == target.store_id)) or 0
            pair.open_alerts = _open_damage_keys(session, repository.system_id,
                                                 target.store_id)
        readable_bytes = sum(e.size for e in entries if e.state in ("present", "corrupt"))
        if self.full:
            budget = None
        elif self.budget_bytes is not None:
            budget = self.budget_bytes
        else:
            budget = budget_for(readable_bytes, configured=configured,
                                store_bytes=store_bytes, schedule=schedule, period=period)
        pair.result.budget_bytes = budget
        pair.selected = select_for_verification(entries, budget)
        pair.result.objects_selected = len(pair.selected)
        pair.result.bytes_selected = sum(entry.size for entry in pair.selected)
        self.total_objects += pair.result.objects_selected
        self.total_bytes += pair.result.bytes_selected
        return pair

    # -- reading

    def read_all(self, pair: _Pair) -> None:
        if not pair.selected or pair.result.errors:
            return
        store = pair.target.store
        pending: list[_Read] = []
        last_flush = time.monotonic()
        queue = iter(pair.selected)
        with concurrent.futures.ThreadPoolExecutor(
                max_workers=self.parallel, thread_name_prefix="drd-verify") as pool:
            running: set[concurrent.futures.Future] = set()

            def submit_more() -> None:
                while len(running) < self.parallel * 2 and not pair.result.stopped:
                    if self.should_stop():
                        pair.result.stopped = True
                        return
                    entry = next(queue, None)
                    if entry is None:
                        return
                    expected = self.expected(pair.repository, entry.key)
                    running.add(pool.submit(_read, store, entry.key, pair.rows.get(entry.key),
                                            expected, self.now))

            try:
                submit_more()
                while running:
                    done, _ = concurrent.futures.wait(
                        running, return_when=concurrent.futures.FIRST_COMPLETED)
                    for future in done:
                        running.discard(future)
                        read = future.result()
                        self.account(pair, read)
                        pending.append(read)
                    if (len(pending) >= BATCH_OBJECTS
                            or time.monotonic() - last_flush >= BATCH_SECONDS):
                        self.flush(pair, pending)
                        pending = []
                        last_flush = time.monotonic()
                    submit_more()
            finally:
                # whatever stops the run, what was read stays recorded
                self.flush(pair, pending)

    def records_of(self, repository: SystemRepository) -> dict[str, Record]:
        """The system's records (read once a run, after the catalog's own are filled in)."""
        if repository.system_id not in self.records:
            self.records[repository.system_id] = load_records(
                self.catalog, repository.system_id, self.now())
        return self.records[repository.system_id]

    def record_for(self, repository: SystemRepository, key: str) -> Record | None:
        """The record ``key``'s copies are judged by, or None. ``config`` without one is
        learned from a locked copy, once a run (or the ``unverifiable`` alert raised)."""
        records = self.records_of(repository)
        if key == CONFIG and key not in records and repository.system_id not in self.learned:
            judgement = learn_config(self.catalog, repository.system_id, repository.system,
                                     repository.stores, self.now)
            self.learned[repository.system_id] = judgement.problem
            if judgement.expected is not None:
                records[CONFIG] = judgement.expected
        return records.get(key)

    def expected(self, repository: SystemRepository, key: str) -> _Expected:
        named = expected_sha256(key)
        if named is not None:
            return _Expected(named)
        record = self.record_for(repository, key)
        if record is not None:
            return _Expected(record.sha256, record.size)
        why = self.learned.get(repository.system_id, "") if key == CONFIG else \
            "the catalog holds no record of it yet (its manifest has not reached the centre)"
        return _Expected(None, why=why or "the catalog holds no record of its digest")

    def account(self, pair: _Pair, read: _Read) -> None:
        result = pair.result
        if read.outcome in ("ok", "corrupt"):
            result.bytes_read += read.size
        if read.outcome == "ok":
            result.objects_verified += 1
        elif read.outcome == "corrupt":
            log.warning("%s: %s/%s is corrupt (its bytes hash to %s)", pair.target.name,
                        pair.repository.system, read.key, read.digest)
            result.corrupt.append(Finding(result.system, result.store, read.key, "corrupt",
                                          read.size))
            pair.to_heal.append((read.key, "corrupt", read.size, False))
        elif read.outcome == "missing":
            result.missing.append(Finding(result.system, result.store, read.key, "missing"))
            pair.to_heal.append((read.key, "missing", None, False))
        elif read.outcome == "unchecked":
            result.unchecked.append(Finding(result.system, result.store, read.key,
                                            "unchecked", read.size, detail=read.error))
        else:
            result.errors.append(f"{read.key}: {read.error}")
        self.done_objects += 1
        self.done_bytes += read.size
        if self.progress is not None:
            self.progress(ProgressEvent(
                percent_done=self.done_bytes / self.total_bytes if self.total_bytes else 1.0,
                files_done=self.done_objects, total_files=self.total_objects,
                bytes_done=self.done_bytes, total_bytes=self.total_bytes))

    def flush(self, pair: _Pair, reads: Sequence[_Read]) -> None:
        """Write a batch of reads to the ledger, in one transaction."""
        if not reads:
            return
        repository, target = pair.repository, pair.target
        system_id, store_id = repository.system_id, target.store_id
        with self.catalog.session() as session:
            for read in reads:
                if read.row_id is None:
                    continue
                if read.outcome == "ok":
                    session.execute(sa.update(StoreObject).where(
                        StoreObject.id == read.row_id).values(
                        state="present", verified_at=read.at, size=read.size))
                    if read.key in pair.open_alerts:
                        alerts.resolve_alert(session, "damage", system_id=system_id,
                                             store_id=store_id, subject=read.key)
                        pair.open_alerts.discard(read.key)
                elif read.outcome in ("corrupt", "missing"):
                    session.execute(sa.update(StoreObject).where(
                        StoreObject.id == read.row_id).values(
                        state=read.outcome, failed_at=read.at or self.now()))
                    if read.outcome == "corrupt":
                        self.tamper(session, repository, target, read.key, read.digest)

    # -- healing

    def heal_all(self, pair: _Pair) -> None:
        seen: set[str] = set()
        for key, reason, size, was_lost in pair.to_heal:
            if key in seen or key in pair.tombstoned:
                continue
            seen.add(key)
            if self.should_stop():
                pair.result.stopped = True
                return
            if key.startswith("snapshots/") and self.forgotten(pair, key):
                continue
            self.heal(pair, key, reason, size, was_lost or key in pair.previously_lost)

    def forgotten(self, pair: _Pair, key: str) -> bool:
        with self.catalog.session() as session:
            status = session.scalar(sa.select(Snapshot.status).where(
                Snapshot.system_id == pair.repository.system_id,
                Snapshot.restic_id == key.split("/", 1)[1]))
        return status == "forgotten"

    def tamper(self, session: Session, repository: SystemRepository,
               holder: RepositoryStore, key: str, found: str | None) -> None:
        """Raise the ``tamper`` alert of ``key`` on ``holder`` (its bytes are not those of
        its name or its record), once a run."""
        mark = (repository.system_id, holder.store_id, key)
        # read in plan(): never here, inside the caller's write transaction
        record = self.records.get(repository.system_id, {}).get(key)
        if mark in self.tamper_raised or (record is None and is_recorded_kind(key)):
            return
        self.tamper_raised.add(mark)
        raise_tamper(session, system_id=repository.system_id, system=repository.system,
                     store_id=holder.store_id, store=holder.name, key=key, found=found,
                     expected=record, now=self.now(),
                     outcome="verification heals it from a good copy where one exists "
                             "(see its report and the audit entry object.heal)")

    def heal(self, pair: _Pair, key: str, reason: str, size: int | None,
             was_lost: bool = False) -> None:
        """Heal ``key`` on the pair's store from the first good source, in this order:

        1. an object *hidden* by a delete marker: its own newest good version, in place
           (the bytes are still in this store, only covered: bringing them back is the
           undo, needs no other store, and leaves the marker in the history);
        2. another store's current copy that verifies (a locked one first, for a recorded
           object), then, for a recorded object, the catalog's own bytes;
        3. the newest good *version* beneath a bad or missing current copy: this store's
           own first, then the other stores' (an overwrite in every store leaves the
           locked versions beneath it);

        and only then is the object lost (or unhealed, when a store did not answer).
        """
        result, target, repository = pair.result, pair.target, pair.repository
        recorded = is_recorded_kind(key)
        if recorded:
            record = self.record_for(repository, key)
            if record is None:
                if key == CONFIG:
                    result.unhealed.append(Finding(
                        result.system, result.store, key, reason, size,
                        detail="config cannot be checked ("
                               + (self.learned.get(repository.system_id) or "no record")
                               + "), so no copy of it is taken for the right one"))
                # a manifest not uploaded to the centre yet: nothing to judge a source by
                return
            expected = Expected(record.sha256, record.size, "the catalog's record")
        else:
            expected = Expected(expected_sha256(key))
        attempt = _Attempt()
        history = None
        if reason == "missing":
            history = self.own_history(pair, key, attempt)
            if history is not None and history.hidden:
                reason = "hidden"
                self.found_hidden(pair, key, size, expected)
        if reason == "hidden" and self.heal_from_version(
                pair, key, reason, target, expected, attempt, history=history):
            return
        others = [holder for holder in repository.stores if holder.store_id != target.store_id]
        if recorded:
            done = self.heal_recorded(pair, key, reason, others, record, expected, attempt)
        else:
            done = self.heal_from_current(pair, key, reason, others, expected, attempt)
        if done:
            return
        holders = ([] if reason == "hidden" else [target]) + others
        for holder in holders:
            known_bad = (holder is target and reason == "corrupt") or \
                attempt.bad.get(holder.name) == "corrupt"
            if self.heal_from_version(pair, key, reason, holder, expected, attempt,
                                      history=history if holder is target else None,
                                      current_known_bad=known_bad):
                return
        self.mark_sources(repository, key, attempt.bad)
        if attempt.silent:
            what = ("no copy matching the catalog's record" if recorded
                    else "no good copy or version")
            result.unhealed.append(Finding(
                result.system, result.store, key, reason, size,
                detail=f"{what} among the stores that answered; "
                       + "; ".join(attempt.silent)))
            return
        self.record_loss(pair, key, reason, size, was_lost)

    def own_history(self, pair: _Pair, key: str, attempt: _Attempt) -> KeyHistory | None:
        """``key``'s versions in the pair's store, None where it keeps none (or did not
        answer: noted in ``attempt``)."""
        store = pair.target.store
        try:
            if not store.keeps_versions:
                return None
            return key_history(store, key)
        except StoreError as error:
            attempt.silent.append(f"{pair.target.name} (versions): {error}")
            return None

    def found_hidden(self, pair: _Pair, key: str, size: int | None,
                     expected: Expected) -> None:
        """A missing object turned out hidden by a delete marker: reported as ``hidden``
        (not ``missing``), with a ``tamper`` alert naming the system."""
        result = pair.result
        result.missing = [f for f in result.missing if f.key != key]
        result.hidden.append(Finding(result.system, result.store, key, "hidden", size))
        mark = (pair.repository.system_id, pair.target.store_id, key)
        if mark in self.tamper_raised:
            return
        self.tamper_raised.add(mark)
        log.warning("%s: %s/%s is hidden by a delete marker", pair.target.name,
                    pair.repository.system, key)
        with self.catalog.session() as session:
            raise_covered(session, system_id=pair.repository.system_id,
                          system=pair.repository.system, store_id=pair.target.store_id,
                          store=pair.target.name, key=key, reason="hidden",
                          expected=expected,
                          outcome="verification brings back a good version where one "
                                  "exists (see its report and the audit entry object.heal)",
                          now=self.now())

    def heal_from_current(self, pair: _Pair, key: str, reason: str,
                          others: list[RepositoryStore], expected: Expected,
                          attempt: _Attempt) -> bool:
        """Copy a named object from the first other store whose current copy hashes to
        its name. True when it is done with (healed, or the write failed)."""
        repository = pair.repository
        for source in others:
            try:
                digest, _ = digest_of(source.store, key)
            except ObjectNotFound:
                attempt.bad[source.name] = "missing"
                continue
            except StoreError as error:
                attempt.silent.append(f"{source.name}: {error}")
                continue
            if digest != expected.sha256:
                attempt.bad[source.name] = "corrupt"
                with self.catalog.session() as session:
                    self.tamper(session, repository, source, key, digest)
                continue
            self.mark_sources(repository, key, attempt.bad)
            self.copy_good(pair, key, reason, source, expected)
            return True
        return False

    def heal_recorded(self, pair: _Pair, key: str, reason: str,
                      others: list[RepositoryStore], record: Record, expected: Expected,
                      attempt: _Attempt) -> bool:
        """Heal an object not named by its hash from a current copy that matches its
        record: a locked one first, then the others in the policy's order, then the
        catalog's own bytes where it holds them. Never from a copy that merely agrees
        with others. True when it is done with (healed, or the write failed)."""
        repository = pair.repository
        copies, failed = survey(others, key, self.now())
        judgement = judge_copies(copies, record)
        attempt.bad |= {name: "corrupt" for name in judgement.damaged}
        attempt.bad |= {name: "missing" for name in judgement.missing}
        attempt.silent += [f"{name}: {error}" for name, error in sorted(failed.items())]
        if judgement.damaged:
            by_name = {holder.name: holder for holder in others}
            digests = {copy.store: copy.sha256 for copy in copies}
            with self.catalog.session() as session:
                for name in judgement.damaged:
                    self.tamper(session, repository, by_name[name], key, digests[name])
        for name in judgement.good:
            self.mark_sources(repository, key, attempt.bad)
            source = next(holder for holder in others if holder.name == name)
            self.copy_good(pair, key, reason, source, expected)
            return True
        with self.catalog.session() as session:
            data = catalog_bytes(session, repository.system_id, key, self.keystore)
        if data is not None and hashlib.sha256(data).hexdigest() == record.sha256 \
                and len(data) == record.size:
            self.mark_sources(repository, key, attempt.bad)
            self.copy_good(pair, key, reason, None, expected, data=data)
            return True
        return False

    def heal_from_version(self, pair: _Pair, key: str, reason: str,
                          holder: RepositoryStore, expected: Expected, attempt: _Attempt,
                          *, history: KeyHistory | None = None,
                          current_known_bad: bool = False) -> bool:
        """Bring ``holder``'s newest good version of ``key`` (its current one, if good)
        back as the current version on the pair's store. True when it is done with
        (healed, or the write failed); False when ``holder`` keeps no good version."""
        result, target, repository = pair.result, pair.target, pair.repository
        try:
            if history is None:
                if not holder.store.keeps_versions:
                    return False
                history = key_history(holder.store, key)
            found = find_good(holder.store, holder.name, history, expected,
                              current_known_bad=current_known_bad)
        except StoreError as error:
            attempt.silent.append(f"{holder.name} (versions): {error}")
            return False
        if holder is target and found.choice.action == "keep":
            # its current copy is good after all (written meanwhile): the next run
            # verifies it; nothing to bring back, nothing lost
            log.info("%s: %s/%s is good again; not healed", target.name,
                     repository.system, key)
            return True
        version = found.version if found.choice.action == "restore" else (
            history.current if found.choice.action == "keep" else None)
        if version is None:
            return False
        self.mark_sources(repository, key, attempt.bad)
        retain_until = self.retain_until(pair)
        try:
            size = bring_back(target.store, holder.store, key, version, expected,
                              retain_until)
        except (VersionMismatch, StoreError, ValueError, OSError) as error:
            result.unhealed.append(Finding(
                result.system, result.store, key, reason, version.size, source=holder.name,
                version=version.version_id,
                detail=f"bringing back version {version.version_id} failed: {error}"))
            return True
        self.healed(pair, key, reason, holder, size, retain_until, version.version_id)
        return True

    def mark_sources(self, repository: SystemRepository, key: str,
                     bad: dict[str, str]) -> None:
        """Mark other stores' copies found bad while looking for a good one, so that
        their own runs heal them first."""
        if not bad:
            return
        ids = {holder.name: holder.store_id for holder in repository.stores}
        now = self.now()
        with self.catalog.session() as session:
            for name, state in bad.items():
                session.execute(sa.update(StoreObject).where(
                    StoreObject.system_id == repository.system_id,
                    StoreObject.store_id == ids[name], StoreObject.key == key,
                    StoreObject.state.in_(("present", "corrupt", "missing"))).values(
                    state=state, failed_at=now))

    def retain_until(self, pair: _Pair) -> dt.datetime | None:
        lock_days = int(pair.repository.policy.get("object_lock_days") or 0)
        return retain_until_for(pair.target, lock_days, self.now())

    def copy_good(self, pair: _Pair, key: str, reason: str, source: RepositoryStore | None,
                  expected: Expected, data: bytes | None = None) -> None:
        """Copy ``key`` from ``source`` (or write ``data``, the catalog's own bytes, when
        ``source`` is None) onto the pair's store, read it back and check it."""
        result, target = pair.result, pair.target
        source_name = source.name if source is not None else "catalog"
        retain_until = self.retain_until(pair)
        try:
            if source is not None:
                target.store.copy_from(source.store, key, retain_until=retain_until)
            else:
                target.store.put(key, data, length=len(data), retain_until=retain_until)
            digest, size = digest_of(target.store, key)
        except StoreError as error:
            result.unhealed.append(Finding(result.system, result.store, key, reason,
                                           source=source_name,
                                           detail=f"writing the good copy failed: {error}"))
            return
        if not expected.matches(digest, size):
            result.unhealed.append(Finding(
                result.system, result.store, key, reason, size, source=source_name,
                detail="the copy written from the good one reads back wrong"))
            return
        self.healed(pair, key, reason, source, size, retain_until)

    def healed(self, pair: _Pair, key: str, reason: str, source: RepositoryStore | None,
               size: int, retain_until: dt.datetime | None, version: str | None = None
               ) -> None:
        """The bookkeeping of a healed copy: the ledger rows (the target's, and the
        source's current copy when that was read whole), the audit entry
        ``object.heal``, the ``damage`` alert resolved."""
        result, target, repository = pair.result, pair.target, pair.repository
        source_name = source.name if source is not None else "catalog"
        now = self.now()
        # a source's current copy was proven only when it was copied, not a version of it
        proven = [target.store_id] + ([source.store_id] if source is not None
                                      and version is None else [])
        with self.catalog.session() as session:
            for store_id in proven:
                row = session.scalar(sa.select(StoreObject).where(
                    StoreObject.system_id == repository.system_id,
                    StoreObject.store_id == store_id, StoreObject.key == key))
                if row is None:
                    row = StoreObject(store_id=store_id, system_id=repository.system_id,
                                      key=key, size=size, first_seen_at=now)
                    session.add(row)
                row.state, row.size, row.verified_at = "present", size, now
            details = {"source": source_name, "reason": reason, "size": size,
                       "retain_until": retain_until.isoformat() if retain_until else None}
            if version is not None:
                details["version"] = version
            audit.record(session, ACTOR, "object.heal",
                         target=f"{target.name}:{repository.system}/{key}", **details)
            alerts.resolve_alert(session, "damage", system_id=repository.system_id,
                                 store_id=target.store_id, subject=key, now=now)
        pair.open_alerts.discard(key)
        where = source_name if version is None else f"{source_name} version {version}"
        log.warning("%s: healed %s/%s (%s) from %s", target.name, repository.system, key,
                    reason, where)
        result.healed.append(Finding(result.system, result.store, key, reason, size,
                                     source=source_name, version=version))

    def record_loss(self, pair: _Pair, key: str, reason: str, size: int | None,
                    was_lost: bool = False) -> None:
        """No store holds a good copy: ledger rows ``lost``, snapshot copies ``damaged``,
        a ``damage`` alert (see the module docstring for which snapshots).

        An object already known lost is only reported again (the alert counts it), with
        no new audit entry: nothing changed.
        """
        result, target, repository = pair.result, pair.target, pair.repository
        now = self.now()
        if was_lost:
            with self.catalog.session() as session:
                alerts.raise_alert(
                    session, "damage",
                    f"{repository.system}: {key} is still lost on store {target.name}: no "
                    "store holds a good copy",
                    system_id=repository.system_id, store_id=target.store_id, subject=key,
                    details={"system": repository.system, "store": target.name, "key": key,
                             "reason": reason}, now=now)
            result.lost.append(Finding(result.system, result.store, key, reason, size,
                                       detail="still lost: no store holds a good copy"))
            return
        store_ids = [holder.store_id for holder in repository.stores]
        with self.catalog.session() as session:
            session.execute(sa.update(StoreObject).where(
                StoreObject.system_id == repository.system_id,
                StoreObject.store_id.in_(store_ids), StoreObject.key == key).values(
                state="lost", failed_at=now))
            snapshots = sa.select(Snapshot.id).where(
                Snapshot.system_id == repository.system_id, Snapshot.status == "active")
            if key.startswith("snapshots/"):
                snapshots = snapshots.where(Snapshot.restic_id == key.split("/", 1)[1])
            # restic needs no drd object (the sealed password, a manifest) to restore
            snapshot_ids = [] if is_drd_object(key) else list(session.scalars(snapshots))
            damaged = 0
            if snapshot_ids:
                damaged = session.execute(sa.update(SnapshotCopy).where(
                    SnapshotCopy.snapshot_id.in_(snapshot_ids),
                    SnapshotCopy.store_id.in_(store_ids),
                    SnapshotCopy.state.in_(("pending", "present", "missing"))).values(
                    state="damaged")).rowcount
            alerts.raise_alert(
                session, "damage",
                f"{repository.system}: {key} is lost on store {target.name} and no other "
                f"store holds a good copy ({reason}); {len(snapshot_ids)} snapshot(s) "
                "may be damaged",
                system_id=repository.system_id, store_id=target.store_id, subject=key,
                details={"system": repository.system, "store": target.name, "key": key,
                         "reason": reason, "snapshots": len(snapshot_ids)}, now=now)
            audit.record(session, ACTOR, "object.lost",
                         target=f"{target.name}:{repository.system}/{key}", reason=reason,
                         snapshots=len(snapshot_ids), copies_damaged=damaged)
        result.lost.append(Finding(result.system, result.store, key, reason, size,
                                   detail=f"no store holds a good copy; {len(snapshot_ids)} "
                                          "snapshot(s) marked damaged"))

    def finish(self, pair: _Pair) -> None:
        undamage(self.catalog, pair.repository.system_id)
        pair.result.coverage = pair_coverage(self.catalog, pair.repository.system_id,
                                             pair.target.store_id, pair.period,
                                             self.now())


def undamage(catalog: Catalog, system_id: int) -> int:
    """Once no object of the system is lost any more, its ``damaged`` snapshot copies
    are sound again: ``present`` where the store's replication watermark covers the
    snapshot, else ``missing`` (replication's next pass promotes them). Returns how many
    copies changed."""
    with catalog.session() as session:
        lost = session.scalar(sa.select(sa.func.count()).select_from(StoreObject).where(
            StoreObject.system_id == system_id, StoreObject.state == "lost"))
        if lost:
            return 0
        copies = list(session.execute(
            sa.select(SnapshotCopy, Snapshot.reported_at, Replica.watermark_at)
            .join(Snapshot, SnapshotCopy.snapshot_id == Snapshot.id)
            .outerjoin(Replica, (Replica.system_id == Snapshot.system_id)
                       & (Replica.store_id == SnapshotCopy.store_id))
            .where(Snapshot.system_id == system_id, SnapshotCopy.state == "damaged")))
        for copy, reported_at, watermark_at in copies:
            covered = watermark_at is not None and reported_at <= watermark_at
            copy.state = "present" if covered else "missing"
        if copies:
            log.info("system %d: nothing is lost any more; %d damaged snapshot copies "
                     "restored", system_id, len(copies))
        return len(copies)


def _duration(text: str | None, default: dt.timedelta) -> dt.timedelta:
    if not text:
        return default
    try:
        return parse_duration(text)
    except ValueError:
        return default


def _open_damage_keys(session: Session, system_id: int, store_id: int) -> set[str]:
    prefix = alerts.open_key("damage", system_id, store_id, "")
    return {key[len(prefix):] for key in session.scalars(sa.select(Alert.open_key).where(
        Alert.open_key.is_not(None), Alert.kind == "damage",
        Alert.system_id == system_id, Alert.store_id == store_id))
        if key.startswith(prefix)}


def verify(catalog: Catalog, master_key: MasterKey, config: Config | None = None, *,
           systems: Iterable[str] | None = None, stores: Iterable[str] | None = None,
           full: bool = False, budget_bytes: int | None = None,
           progress: Callable[[ProgressEvent], None] | None = None,
           should_stop: Callable[[], bool] | None = None,
           now: Callable[[], dt.datetime] = utcnow,
           parallel: int | None = None) -> VerificationReport:
    """Verify (and heal) the copies of ``systems`` (default: every enrolled system) on
    ``stores`` (default: each system's stores), as the module docstring describes.

    Args:
        full: read everything, whatever the budget.
        budget_bytes: the bytes each (system, store) run reads, instead of the store's
            configured or the default budget.
        progress: called with a :class:`~drd.restic.ProgressEvent` (objects as files)
            after each object.
        should_stop: asked between objects; when it answers True the run ends early,
            its work so far recorded (``report.stopped``).
        now: the clock (for tests).
        parallel: objects read at once per store (default ``config.replication_parallel``).

    Per-store failures (a store that cannot be listed or read) are reported in the
    result, never raised: the other stores are verified all the same.

    Raises:
        UserError: an unknown system or store, or a system not kept in a named store.
    """
    wanted_stores = None if stores is None else list(stores)
    if wanted_stores:
        store_rows(catalog, wanted_stores)  # unknown names are a UserError
    repositories = open_repositories(catalog, master_key,
                                     None if systems is None else list(systems))
    if systems is not None and wanted_stores:
        for repository in repositories:
            for name in wanted_stores:
                repository.store(name)  # UserError: the system is not kept there
    workers = parallel or (config.replication_parallel if config is not None
                           else DEFAULT_PARALLEL)
    verifier = _Verifier(catalog, full=full, budget_bytes=budget_bytes,
                         progress=progress, should_stop=should_stop, now=now,
                         parallel=workers,
                         keystore=KeyStore(config.keys_dir, master_key) if config else None)
    report = VerificationReport(started_at=now())
    pairs = [verifier.plan(repository, target)
             for repository in repositories for target in repository.stores
             if wanted_stores is None or target.name in wanted_stores]
    for pair in pairs:
        if not verifier.should_stop():
            verifier.read_all(pair)
        elif pair.selected:
            pair.result.stopped = True
        verifier.heal_all(pair)
        verifier.finish(pair)
        report.runs.append(pair.result)
    touched = sorted({pair.target.name for pair in pairs})
    report.coverage = {name: value for name, value in coverage_report(catalog, now=now()).items()
                       if name in touched}
    report.finished_at = now()
    return report


# --- coverage ---------------------------------------------------------------------------


def _counts(session: Session, system_id: int, period: dt.timedelta, now: dt.datetime,
            store_id: int | None = None) -> dict[int, CoverageCounts]:
    """One system's ledger summed up per store by the database, tombstoned keys left out
    (what :func:`~drd.verification.select.coverage` counts, without loading the rows)."""
    tombstoned = sa.exists().where(Tombstone.system_id == StoreObject.system_id,
                                   Tombstone.key == StoreObject.key)
    covered = sa.and_(StoreObject.state == "present", StoreObject.verified_at.is_not(None),
                      StoreObject.verified_at >= now - period)
    query = (sa.select(
        StoreObject.store_id, sa.func.count(),
        sa.func.coalesce(sa.func.sum(StoreObject.size), 0),
        sa.func.coalesce(sa.func.sum(sa.case((covered, 1), else_=0)), 0),
        sa.func.coalesce(sa.func.sum(sa.case((covered, StoreObject.size), else_=0)), 0),
        sa.func.min(sa.func.coalesce(StoreObject.verified_at, StoreObject.first_seen_at),
                    type_=UTCDateTime()))
        .where(StoreObject.system_id == system_id, ~tombstoned)
        .group_by(StoreObject.store_id))
    if store_id is not None:
        query = query.where(StoreObject.store_id == store_id)
    return {row[0]: CoverageCounts(objects=int(row[1]), bytes=int(row[2]),
                                   objects_verified=int(row[3]), bytes_verified=int(row[4]),
                                   oldest_anchor=row[5])
            for row in session.execute(query)}


def pair_coverage(catalog: Catalog, system_id: int, store_id: int, period: dt.timedelta,
                  now: dt.datetime) -> Coverage:
    """The coverage of one system's repository on one store."""
    with catalog.session() as session:
        counts = _counts(session, system_id, period, now, store_id)
    return coverage_from_counts(counts.values(), now)


def coverage_report(catalog: Catalog, now: dt.datetime | None = None) -> dict[str, Coverage]:
    """Per store name, over all systems: the share of bytes verified within their
    system's period, the age of the oldest unverified byte, and what is tracked.

    Every registered store is listed; one the ledger knows nothing of has a ratio of None.
    The database sums the ledger up (per system, as periods differ), so this stays cheap
    for large ledgers.
    """
    now = now or utcnow()
    with catalog.session() as session:
        names = {store_id: name for store_id, name in session.execute(
            sa.select(StoreRow.id, StoreRow.name))}
        per_store: dict[int, list[CoverageCounts]] = {store_id: [] for store_id in names}
        systems = session.execute(
            sa.select(SystemRow.id, SystemRow.policy_id).where(
                sa.exists().where(StoreObject.system_id == SystemRow.id))).all()
        documents = {policy_id: document for policy_id, document in session.execute(
            sa.select(Policy.id, Policy.document))}
        for system_id, policy_id in systems:
            document = (documents.get(policy_id) or {}).get("verification") or {}
            period = _duration(document.get("period"), DEFAULT_PERIOD)
            for store_id, counts in _counts(session, system_id, period, now).items():
                per_store.setdefault(store_id, []).append(counts)
    return {names[store_id]: coverage_from_counts(parts, now)
            for store_id, parts in per_store.items() if store_id in names}
