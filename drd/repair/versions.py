"""A store's versions of an object, read and judged, and a good one brought back.

The effects beside :mod:`drd.repair.decide`: reading the versions of one key (or of a
whole repository), hashing a version, and writing a good version's bytes back as the
key's newest version -- in the same store, or into another store. Nothing here touches
the catalog; the callers (verification, replication, ``drd repair``, restores and drills,
through :mod:`drd.repair.repository`) record what they did.

Bringing a version back is a *put of its bytes* (streamed, checked against what they must
be on the way, with the policy's Object Lock retention), never a removal of the delete
marker or of the bad version above it:

- it works the same for a delete and for an overwrite, whose bad version may itself be
  locked (a store's own keys, or a system's, can put with a retention);
- the marker or bad version stays in the store's history, as evidence of what happened;
- the copy gets a retention of its own, from now, where the covered version's may be
  about to end;
- the centre's key needs no right to delete versions (``s3:DeleteObjectVersion``).

A server-side copy of the version would save the transfer, but SeaweedFS gives a copy
within one bucket the retention of its source, not the one asked (seen with 4.48), and a
streamed put is checked as it is written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from drd.repair.decide import Choice, Expected, KeyHistory, choose_version, histories
from drd.stores.base import ObjectVersion, Store
from drd.stores.errors import ObjectNotFound, StoreError
from drd.stores.streams import IteratorReader


class VersionMismatch(StoreError):
    """A version's bytes, read to be written back, are not what they must be (they
    changed between two reads, or the copy written reads back wrong): nothing good was
    written."""


@dataclass(frozen=True)
class Found:
    """A key's choice in one store (:class:`~drd.repair.decide.Choice`), with where it
    was looked for."""

    store: str
    choice: Choice

    @property
    def version(self) -> ObjectVersion | None:
        return self.choice.version


def key_history(store: Store, key: str) -> KeyHistory:
    """``key``'s versions and delete markers in ``store`` (one listing request for a key
    named by its hash). Raises :class:`StoreError`."""
    entries = [entry for entry in store.list_versions(key) if entry.key == key]
    return histories(entries).get(key, KeyHistory(key))


def version_digest(store: Store, key: str, version_id: str | None) -> tuple[str, int]:
    """SHA-256 (hex) and size of one version's bytes, streamed. Raises ObjectNotFound and
    the store's other errors."""
    hasher = hashlib.sha256()
    size = 0
    for chunk in store.get_version(key, version_id):
        hasher.update(chunk)
        size += len(chunk)
    return hasher.hexdigest(), size


def judge_version(store: Store, key: str, version: ObjectVersion, expected: Expected) -> bool:
    """True when ``version``'s bytes are what ``expected`` says (a size that cannot match
    is not read). A version gone meanwhile (its retention ended) is not good."""
    if expected.size is not None and version.size != expected.size:
        return False
    try:
        sha256, size = version_digest(store, key, version.version_id)
    except ObjectNotFound:
        return False
    return expected.matches(sha256, size)


def find_good(store: Store, name: str, history: KeyHistory, expected: Expected, *,
              current_known_bad: bool = False) -> Found:
    """Judge ``history`` in ``store`` newest first (:func:`choose_version`).
    Raises :class:`StoreError` for a store that cannot be read."""
    choice = choose_version(history, lambda version: judge_version(
        store, history.key, version, expected), current_known_bad=current_known_bad)
    return Found(name, choice)


def newest_good(store: Store, name: str, key: str, expected: Expected, *,
                current_known_bad: bool = False) -> Found:
    """:func:`find_good` for ``key`` after listing its versions (:func:`key_history`)."""
    return find_good(store, name, key_history(store, key), expected,
                     current_known_bad=current_known_bad)


class _CheckedReader(IteratorReader):
    """A version's chunks as a file, checked against ``expected`` on the way: the read
    that would hand over the last byte raises :class:`VersionMismatch` instead when the
    bytes are wrong, so an upload reading from it fails before it is committed."""

    def __init__(self, chunks, store: str, key: str, size: int, expected: Expected) -> None:
        super().__init__(chunks)
        self._store, self._key, self._size, self._expected = store, key, size, expected
        self._digest = hashlib.sha256()
        self._done = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self._digest.update(data)
        self._done += len(data)
        if self._done > self._size or ((not data or self._done == self._size) and not
                                       self._expected.matches(self._digest.hexdigest(),
                                                              self._done)):
            raise VersionMismatch(self._store, f"{self._key}: the version read back is not "
                                               f"what {self._expected.against} says",
                                  key=self._key)
        return data

    def readinto(self, target) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)


def bring_back(target: Store, source: Store, key: str, version: ObjectVersion,
               expected: Expected, retain_until: dt.datetime | None) -> int:
    """Write ``version`` of ``key`` (in ``source``, which may be ``target`` itself) as
    the newest version of ``key`` in ``target``, with ``retain_until``; read the copy
    back and check it. Returns its size.

    Raises:
        VersionMismatch: the bytes were not what ``expected`` says, on the way or read
            back (nothing wrong was committed on the way; a wrong read-back is reported).
        StoreError: either store failed (the put is atomic: nothing half-written).
    """
    reader = _CheckedReader(source.get_version(key, version.version_id), source.name, key,
                            version.size, expected)
    try:
        target.put(key, reader, length=version.size, retain_until=retain_until)
    finally:
        reader.close()
    hasher = hashlib.sha256()
    size = 0
    for chunk in target.get(key):
        hasher.update(chunk)
        size += len(chunk)
    if not expected.matches(hasher.hexdigest(), size):
        raise VersionMismatch(target.name, f"{key}: the copy written from version "
                                           f"{version.version_id} reads back wrong", key=key)
    return size
