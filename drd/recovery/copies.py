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
harm. On an Object Lock store each copy is a new key, so nothing is ever overwritten but
``latest`` (a new version) and deleted copies stay as locked versions.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from drd.catalog import Catalog
from drd.catalog.models import Store as StoreRow
from drd.config import Config
from drd.crypto.errors import CryptoError
from drd.crypto.keystore import KeyStore
from drd.crypto.masterkey import MasterKey
from drd.errors import DrdError, UserError
from drd.recovery.container import ContainerWriter
from drd.recovery.dump import dump_lines
from drd.stores.base import Store
from drd.stores.errors import StoreError

log = logging.getLogger("drd.recovery")

PREFIX = "_drd-centre"
LATEST = f"{PREFIX}/latest"
COPY_PREFIX = f"{PREFIX}/catalog-"
COPY_SUFFIX = ".bin"
KEEP_GENERATIONS = 5
_SETTINGS_LEFT_OUT = frozenset({"home", "database_url"})


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
    """How writing the copy to one store went."""

    store: str
    ok: bool
    error: str | None = None
    deleted: int = 0
    needs_keys: bool = False


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
    return f"{COPY_PREFIX}{created_at.astimezone(dt.UTC):%Y%m%dT%H%M%S%fZ}{COPY_SUFFIX}"


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


def write_copy(store: Store, copy: BuiltCopy, keep: int = KEEP_GENERATIONS) -> StoreResult:
    """Write ``copy`` to ``store``, point ``latest`` at it, delete the older generations.

    Raises :class:`~drd.stores.errors.StoreError` if the copy or the pointer cannot be
    written; a failed deletion of an old generation is logged only (the next write tries
    again).
    """
    copy.file.seek(0)
    store.put(copy.key, copy.file, length=copy.size)
    store.put(LATEST, copy.pointer())
    deleted = 0
    try:
        keys = sorted(info.key for info in store.list(COPY_PREFIX)
                      if info.key.endswith(COPY_SUFFIX))
        for key in keys[:-keep] if len(keys) > keep else []:
            if key != copy.key:
                store.delete(key)
                deleted += 1
    except StoreError as error:
        log.warning("store %s: old catalog copies not deleted (tried again next time): %s",
                    store.name, error)
    return StoreResult(store=store.name, ok=True, deleted=deleted)


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
    copy = build_copy(catalog, keystore, settings_of(config), directory=config.home, now=now)
    try:
        result = PublishResult(key=copy.key, size=copy.size, seconds=0.0)
        for row in rows:
            result.stores.append(_write_one(row, copy, opener))
        result.seconds = time.monotonic() - started
        return result
    finally:
        copy.close()


def _write_one(row: StoreRow, copy: BuiltCopy,
               opener: Callable[[StoreRow], Store]) -> StoreResult:
    if row.kind == "s3" and row.secret_encrypted is None:
        return StoreResult(store=row.name, ok=False, needs_keys=True, error=(
            f"store {row.name!r} has no secret key (recovered centre): re-enter it with "
            f"'drd store set-keys {row.name}'"))
    try:
        return write_copy(opener(row), copy)
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


