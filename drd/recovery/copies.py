"""Catalog copies in the stores: making one, writing it to every store, finding it again.

Layout, under each store's root (its bucket and prefix, beside the departments'
repositories; ``_`` cannot begin a department's name, so nothing collides)::

    _drd-centre/catalog-20261128T010203123456Z.bin   a copy (see drd.recovery.container)
    _drd-centre/latest                               JSON: the newest copy's key, size,
                                                     SHA-256 and time

A copy is written whole under a new key, then ``latest`` is pointed at it, then all but
the :data:`KEEP_GENERATIONS` newest copies are deleted. A put is atomic (the store
contract), so a reader never sees half a copy; recovery lists the copies and takes the
newest whose signature verifies, so even a ``latest`` left behind by a crash does no
harm.

On an Object Lock store each copy is written with a COMPLIANCE retention of
:func:`copy_lock_days` (the longest ``object_lock_days`` of the policies that name the
store; :data:`DEFAULT_LOCK_DAYS` when none does), so that no one -- a system's keys or
the store's own -- can delete its versions for good before then. Only ``latest`` is
written without one (it is rewritten every time, and recovery does without it). Old
generations are deleted for good (every version) only once their lock has ended: one
still locked is kept, listed, and deleted by a later write (:func:`prune_plan`), never
hidden behind a delete marker and never an error.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import sqlalchemy as sa

from drd.catalog import Catalog
from drd.catalog.models import Policy
from drd.catalog.models import Store as StoreRow
from drd.config import Config
from drd.crypto.errors import CryptoError
from drd.crypto.keystore import KeyStore
from drd.crypto.masterkey import MasterKey
from drd.errors import DrdError, UserError
from drd.recovery.container import ContainerWriter
from drd.recovery.dump import dump_lines
from drd.stores.base import Store
from drd.stores.errors import ObjectLocked, StoreError

log = logging.getLogger("drd.recovery")

PREFIX = "_drd-centre"
LATEST = f"{PREFIX}/latest"
COPY_PREFIX = f"{PREFIX}/catalog-"
COPY_SUFFIX = ".bin"
KEEP_GENERATIONS = 5
DEFAULT_LOCK_DAYS = 7
"""The lock of catalog copies in an Object Lock store that no policy locks."""
_SETTINGS_LEFT_OUT = frozenset({"home", "database_url"})
_COPY_TIME = "%Y%m%dT%H%M%S%fZ"


@dataclass
class BuiltCopy:
    """A copy made once, in a temporary file, to be written to every store."""

    file: BinaryIO
    key: str
    size: int
    sha256: str
    created_at: dt.datetime
    seconds: float

    def close(self) -> None:
        self.file.close()

    def pointer(self) -> bytes:
        return (json.dumps({"key": self.key, "size": self.size, "sha256": self.sha256,
                            "created_at": self.created_at.isoformat()}, indent=2)
                + "\n").encode()


@dataclass
class StoreResult:
    """How writing the copy to one store went: old generations ``deleted``, and those
    ``waiting`` for their Object Lock to end before they can be."""

    store: str
    ok: bool
    error: str | None = None
    deleted: int = 0
    needs_keys: bool = False
    waiting: int = 0
    lock_days: int = 0


@dataclass
class PublishResult:
    """A copy made and written: its key and size, and each store's outcome."""

    key: str
    size: int
    seconds: float
    stores: list[StoreResult] = field(default_factory=list)

    @property
    def failed(self) -> list[StoreResult]:
        return [result for result in self.stores if not result.ok]

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "bytes": self.size, "seconds": round(self.seconds, 3),
                "stores": [vars(result) for result in self.stores]}


def copy_key(created_at: dt.datetime) -> str:
    """The key of the copy made at ``created_at`` (UTC): names sort by time."""
    return f"{COPY_PREFIX}{created_at.astimezone(dt.UTC).strftime(_COPY_TIME)}{COPY_SUFFIX}"


def copy_time(key: str) -> dt.datetime | None:
    """When the copy ``key`` was made, from its name; None for a name not drd's."""
    stamp = key[len(COPY_PREFIX):-len(COPY_SUFFIX)] if key.startswith(COPY_PREFIX) \
        and key.endswith(COPY_SUFFIX) else ""
    try:
        return dt.datetime.strptime(stamp, _COPY_TIME).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def copy_lock_days(store: str, object_lock: bool, policies: Iterable[dict[str, Any]]) -> int:
    """How many days catalog copies are locked in ``store`` (pure): 0 without Object
    Lock; else the longest ``object_lock_days`` of the ``policies`` (documents) that name
    the store -- the copies that rebuild a centre stay as long as the data they describe
    -- or :data:`DEFAULT_LOCK_DAYS` when none locks it."""
    if not object_lock:
        return 0
    days = [int(document.get("object_lock_days") or 0) for document in policies
            if store in (document.get("stores") or ())]
    return max(days, default=0) or DEFAULT_LOCK_DAYS


def prune_plan(keys: Iterable[str], keep: int, lock_days: int, now: dt.datetime,
               newest: str) -> tuple[list[str], list[str]]:
    """Which old copies to delete now, and which wait for their lock to end (pure).

    All but the ``keep`` newest of ``keys`` go, never ``newest`` (the copy just
    written); with ``lock_days``, one made less than that long before ``now`` (by its
    name) is still locked, and waits. A name that tells no time is tried now (the store
    refuses it if it is locked).
    """
    ordered = sorted(key for key in keys if key.endswith(COPY_SUFFIX))
    old = [key for key in ordered[:-keep] if key != newest] if len(ordered) > keep else []
    now_, later = [], []
    for key in old:
        made = copy_time(key)
        locked = lock_days > 0 and made is not None and \
            made + dt.timedelta(days=lock_days) > now
        (later if locked else now_).append(key)
    return now_, later


def settings_of(config: Config) -> dict[str, Any]:
    """The settings a rebuilt centre takes over: ``drd.yaml`` without home and catalog."""
    import yaml

    document = yaml.safe_load(config.to_yaml()) or {}
    return {name: value for name, value in document.items() if name not in _SETTINGS_LEFT_OUT}


def build_copy(catalog: Catalog, keystore: KeyStore, settings: dict[str, Any], *,
               directory: Path | None = None, now: dt.datetime | None = None) -> BuiltCopy:
    """Dump the catalog, gzip it, seal and sign it into an anonymous temporary file.

    ``keystore`` needs the master key (the signing key signs). Memory stays bounded: rows
    are read in batches and the container is written in 1 MiB chunks. Raises
    :class:`~drd.errors.OperationError` if the catalog cannot be read.
    """
    started = time.monotonic()
    created = now or dt.datetime.now(dt.UTC)
    handle = tempfile.TemporaryFile(dir=directory)
    try:
        writer = ContainerWriter(handle, keystore.escrow_public_key(),
                                 keystore.signing_private_key(), created_at=created.isoformat(),
                                 meta={"ca_certificate_sha256": keystore.ca_fingerprint()})
        with gzip.GzipFile(fileobj=writer, mode="wb", compresslevel=6, mtime=0) as compressed:
            for line in dump_lines(catalog, settings, now=created):
                compressed.write(line)
        writer.close()
        size = handle.tell()
        handle.flush()
        handle.seek(0)
        digest = hashlib.sha256()
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
        handle.seek(0)
    except BaseException:
        handle.close()
        raise
    return BuiltCopy(file=handle, key=copy_key(created), size=size, sha256=digest.hexdigest(),
                     created_at=created, seconds=time.monotonic() - started)


def write_copy(store: Store, copy: BuiltCopy, keep: int = KEEP_GENERATIONS, *,
               lock_days: int = 0, now: dt.datetime | None = None) -> StoreResult:
    """Write ``copy`` to ``store`` (locked for ``lock_days`` from ``now``, on a store
    with Object Lock), point ``latest`` at it, delete the older generations whose lock
    has ended (:func:`prune_plan`).

    Raises :class:`~drd.stores.errors.StoreError` if the copy or the pointer cannot be
    written; an old generation still locked waits for a later write, and a failed
    deletion is logged only (the next write tries again).
    """
    now = now or dt.datetime.now(dt.UTC)
    retain_until = now + dt.timedelta(days=lock_days) if lock_days > 0 else None
    copy.file.seek(0)
    store.put(copy.key, copy.file, length=copy.size, retain_until=retain_until)
    store.put(LATEST, copy.pointer())
    result = StoreResult(store=store.name, ok=True, lock_days=lock_days)
    try:
        delete, later = prune_plan((info.key for info in store.list(COPY_PREFIX)), keep,
                                   lock_days, now, copy.key)
        result.waiting = len(later)
        for key in delete:
            try:
                _delete_for_good(store, key)
                result.deleted += 1
            except ObjectLocked:
                result.waiting += 1  # locked for longer than its name says: later
    except StoreError as error:
        log.warning("store %s: old catalog copies not deleted (tried again next time): %s",
                    store.name, error)
    return result


def _delete_for_good(store: Store, key: str) -> None:
    """Delete ``key``: on a versioned (Object Lock) store every version of it, so that
    nothing stays behind a delete marker. Raises ObjectLocked for a locked version."""
    inner = store.unwrap()
    if store.supports_object_lock and hasattr(inner, "list_versions"):
        for version in list(inner.list_versions(key)):
            if version.key == key:
                inner.delete_version(key, version.version_id)
        return
    store.delete(key)


def publish(catalog: Catalog, master_key: MasterKey, keystore: KeyStore, config: Config, *,
            store_names: list[str] | None = None,
            open_store: Callable[[StoreRow], Store] | None = None,
            now: dt.datetime | None = None) -> PublishResult:
    """Make one copy of the catalog and write it to every registered store (or those named).

    Each store on its own: one that fails (down, keys wrong, secret not re-entered after a
    recovery) is reported in the result and does not stop the others. Raises
    :class:`UserError` for an unknown store name or when there are no stores.
    """
    from drd.services.stores import open_registered, store_rows

    rows = store_rows(catalog, store_names or [])
    if not rows:
        raise UserError("no stores to write the catalog copy to: add one with 'drd store add'")
    opener = open_store or (lambda row: open_registered(row, master_key, retry_attempts=2,
                                                        retry_backoff=0.5))
    started = time.monotonic()
    with catalog.read_session() as session:
        policies = list(session.scalars(sa.select(Policy.document)))
    copy = build_copy(catalog, keystore, settings_of(config), directory=config.home, now=now)
    try:
        result = PublishResult(key=copy.key, size=copy.size, seconds=0.0)
        for row in rows:
            result.stores.append(_write_one(
                row, copy, opener, copy_lock_days(row.name, row.object_lock, policies)))
        result.seconds = time.monotonic() - started
        return result
    finally:
        copy.close()


def _write_one(row: StoreRow, copy: BuiltCopy, opener: Callable[[StoreRow], Store],
               lock_days: int) -> StoreResult:
    if row.kind == "s3" and row.secret_encrypted is None:
        return StoreResult(store=row.name, ok=False, needs_keys=True, error=(
            f"store {row.name!r} has no secret key (recovered centre): re-enter it with "
            f"'drd store set-keys {row.name}'"))
    try:
        return write_copy(opener(row), copy, lock_days=lock_days, now=copy.created_at)
    except CryptoError:
        return StoreResult(store=row.name, ok=False, error=(
            f"store {row.name!r}: its secret key cannot be decrypted with this centre's "
            "master key"))
    except (StoreError, DrdError, OSError) as error:
        return StoreResult(store=row.name, ok=False, error=" ".join(str(error).split()))


def list_copies(store: Store) -> list[str]:
    """The copies' keys in ``store``, newest first."""
    return sorted((info.key for info in store.list(COPY_PREFIX)
                   if info.key.endswith(COPY_SUFFIX)), reverse=True)


def fetch(store: Store, key: str, directory: Path | None = None) -> BinaryIO:
    """Download the copy ``key`` into an anonymous temporary file (streamed); return it,
    positioned at its start. Raises :class:`~drd.stores.errors.StoreError`."""
    handle = tempfile.TemporaryFile(dir=directory)
    try:
        for chunk in store.get(key):
            handle.write(chunk)
        handle.flush()
        handle.seek(0)
    except BaseException:
        handle.close()
        raise
    return handle


