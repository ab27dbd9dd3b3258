"""The store interface: where repositories' objects live, and the contract every store keeps.

A *store* is a flat namespace of objects under keys (``data/ab/abcd...``, ``config``),
rooted at a bucket and prefix (S3) or a directory (filesystem). Keys are relative to that
root, use ``/`` as separator and are validated by :func:`validate_key`.

The contract (after restic's ``internal/backend/backend.go``):

Atomicity
    A put is all-or-nothing: a reader sees the previous object or the complete new one,
    never a partial object, also when the writer dies half-way (S3 commits a single PUT or
    a completed multipart upload; the filesystem renames a fsynced temporary file). A put
    over an existing key replaces it. A put whose data is shorter or longer than its
    declared ``length`` fails and leaves nothing behind.

Retries
    The stores here do **not** retry at the operation level; an S3 store lets botocore
    retry single HTTP requests (standard mode, a few attempts with backoff). Whole
    operations are retried by wrapping a store in :class:`drd.stores.retry.RetryingStore`,
    which retries :class:`StoreUnavailable` only, with exponential backoff and jitter, and
    resumes interrupted reads and listings where they stopped.

Errors (all :class:`drd.stores.errors.StoreError`, messages name the store, never a secret)
    - :class:`ObjectNotFound`: no object under the key (get, read, head, copy source).
    - :class:`StoreNotFound`: the bucket or directory does not exist.
    - :class:`StoreAuthError`: wrong credentials, or no right to do this.
    - :class:`StoreUnavailable`: unreachable, timed out or failed transiently; may be retried.
    - :class:`ObjectLocked`: deleting a version that is under Object Lock retention.
    - :class:`ObjectLockUnsupported`: a retention asked of a store without Object Lock.
    Invalid keys raise :class:`InvalidKey` (a ``ValueError``): they are programming errors.

Deletion
    ``delete(key)`` is idempotent (deleting a missing key is not an error) and makes the
    key disappear from get, head and list. On a store with Object Lock (an S3 bucket with
    versioning) it adds a *delete marker*: the locked versions stay in the bucket until
    their retention ends, which is the point of immutability. Removing a locked version
    itself (``S3Store.delete_version``) raises :class:`ObjectLocked`.

Versions
    A store that keeps versions (:attr:`Store.keeps_versions`: an S3 bucket with
    versioning, which Object Lock implies) keeps every object's earlier bytes: a put over
    a key adds a version, a delete adds a delete marker, and the older versions stay
    readable by their id (:meth:`Store.list_versions`, :meth:`Store.get_version`). Restic
    reads only the current version, so drd brings a good older one back by putting its
    bytes again as the newest (:mod:`drd.repair`); it never removes a delete marker or a
    version to do so. A store without versions has exactly one version per object, its
    current one, whose ``version_id`` is None: callers need no second code path.

Reads
    ``get`` sends its request at once (so a missing object raises on the call, not on the
    first iteration) and then yields chunks of at most ``chunk_size`` bytes. A range that
    runs past the end yields the bytes that exist; an offset at or past the end yields
    nothing.

Listing
    ``list`` yields :class:`ObjectInfo` page by page (never the whole listing in memory),
    in ascending order, the same order every time for a given store, and
    ``start_after=K`` yields exactly what followed key ``K``, so a broken listing resumes
    after its last key. The order is *path order* (keys compared part by part, the parts
    between ``/``) on the filesystem and SeaweedFS, and byte order on AWS S3; the two agree
    unless a part continues a sibling's name with a character below ``/`` (``data-x``
    next to ``data/``), which restic's keys never do. Do not merge listings of stores of
    different kinds by order on other keys.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from drd.secrets import Secret
from drd.stores.errors import InvalidKey, ObjectNotFound
from drd.stores.streams import IteratorReader

DEFAULT_CHUNK_SIZE = 1024 * 1024
# Names of temporary files the filesystem store writes; no key may contain it.
TEMPORARY_MARKER = ".drd-tmp-"

Data = bytes | bytearray | memoryview | BinaryIO


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object.

    ``key`` is relative to the store's root; ``modified`` is timezone-aware (UTC);
    ``retain_until`` is the Object Lock retention (None without one, and always None in
    listings, which do not carry it); ``version_id`` is set by versioned S3 buckets.
    """

    key: str
    size: int
    modified: datetime
    retain_until: datetime | None = None
    version_id: str | None = None


@dataclass(frozen=True)
class ObjectVersion:
    """One version of an object, or a delete marker, as :meth:`Store.list_versions` sees
    it.

    ``version_id`` is the store's id of the version (None in a store that keeps no
    versions: the current object); ``size`` is 0 for a delete marker; ``modified`` is
    timezone-aware (UTC, to the second on S3); ``is_latest`` marks the key's current
    entry (a delete marker that is latest hides the object from get, head and list).
    """

    key: str
    version_id: str | None
    size: int
    modified: datetime
    is_latest: bool
    is_delete_marker: bool = False


@dataclass(frozen=True)
class StoreCheck:
    """The result of a successful :meth:`Store.check`.

    ``location`` describes the store without secrets; ``object_lock`` says whether new
    objects can be given a retention; ``versioning`` is None where it does not apply;
    ``seconds`` is how long the probe round trip took.
    """

    name: str
    location: str
    object_lock: bool
    versioning: bool | None
    seconds: float


def validate_key(key: str) -> str:
    """Return ``key`` if every store can hold it, else raise :class:`InvalidKey`.

    A key is a non-empty relative path of ``/``-separated parts, none empty, ``.`` or
    ``..``, without NUL or backslash, and without drd's temporary-file marker.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey(f"invalid object key {key!r}: must be a non-empty string")
    if key.startswith("/") or key.endswith("/"):
        raise InvalidKey(f"invalid object key {key!r}: must not start or end with '/'")
    if "\x00" in key or "\\" in key:
        raise InvalidKey(f"invalid object key {key!r}: NUL and backslash are not allowed")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidKey(f"invalid object key {key!r}: empty, '.' or '..' part")
    if TEMPORARY_MARKER in key:
        raise InvalidKey(f"invalid object key {key!r}: contains {TEMPORARY_MARKER!r}")
    return key


def validate_range(offset: int, length: int | None) -> None:
    """Raise ``ValueError`` for a negative offset or length."""
    if offset < 0:
        raise ValueError(f"offset must be >= 0, not {offset}")
    if length is not None and length < 0:
        raise ValueError(f"length must be >= 0 or None, not {length}")


def validate_retain_until(retain_until: datetime | None) -> None:
    """Raise ``ValueError`` for a naive datetime: a retention must be unambiguous."""
    if retain_until is not None and retain_until.utcoffset() is None:
        raise ValueError("retain_until must be a timezone-aware datetime")


class Store(abc.ABC):
    """One store. See the module docstring for the contract every method keeps.

    ``name`` is the store's name in drd's configuration; it starts every error message.
    Implementations are safe to use from several threads at once.
    """

    name: str
    chunk_size: int = DEFAULT_CHUNK_SIZE

    # --- objects -----------------------------------------------------------------------

    @abc.abstractmethod
    def put(
        self,
        key: str,
        data: Data,
        *,
        length: int | None = None,
        retain_until: datetime | None = None,
        create_only: bool = False,
    ) -> None:
        """Store ``data`` under ``key``, atomically, replacing any object there.

        Args:
            key: the object's key (see :func:`validate_key`).
            data: bytes, or a binary file-like object read until EOF (or ``length``).
                A file-like object is streamed, never read whole into memory.
            length: the number of bytes ``data`` holds; when given and wrong, the put
                fails and leaves nothing behind.
            retain_until: keep the object under COMPLIANCE Object Lock until then
                (timezone-aware).
            create_only: never replace an object: the put fails if the key holds one,
                decided atomically by the store (S3: ``If-None-Match: *``, which stores
                that refuse overwrites require of systems' keys).

        Raises:
            ObjectExists: ``create_only`` and the key holds an object.
            ObjectLockUnsupported: ``retain_until`` on a store without Object Lock.
            StoreNotFound, StoreAuthError, StoreUnavailable.
            ValueError: a naive ``retain_until``, or ``length`` not matching ``data``.
        """

    @abc.abstractmethod
    def get(self, key: str, *, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Read ``length`` bytes (None: to the end) of ``key`` from ``offset``, as chunks.

        The request is made before returning; the chunks (each at most ``chunk_size``
        bytes) come as the caller iterates. Close the iterator to abandon a read early.

        Raises:
            ObjectNotFound: no object under ``key``.
            StoreNotFound, StoreAuthError, StoreUnavailable (also while iterating).
            ValueError: a negative ``offset`` or ``length``.
        """

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Describe the object under ``key`` (size, modification time, retention).

        Raises:
            ObjectNotFound, StoreNotFound, StoreAuthError, StoreUnavailable.
        """

    @abc.abstractmethod
    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with ``prefix``, in the store's order.

        ``prefix`` is a plain string prefix (``"data/"``, ``"data/a"``), not a directory.
        ``start_after`` skips keys up to and including it, in the store's order (see the
        module docstring). Listings are fetched page by page.

        Raises:
            StoreNotFound, StoreAuthError, StoreUnavailable (while iterating).
        """

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Make ``key`` disappear; idempotent (a missing key is not an error).

        On a store with Object Lock this hides the object behind a delete marker and
        locked versions remain (see the module docstring).

        Raises:
            StoreNotFound, StoreAuthError, StoreUnavailable.
        """

    # --- versions -----------------------------------------------------------------------

    @property
    def keeps_versions(self) -> bool:
        """True when a put or a delete leaves the earlier bytes readable as a version
        (an S3 bucket with versioning or Object Lock). False here: the default for a
        store without versions, where :meth:`list_versions` yields the current objects.

        Raises: StoreAuthError, StoreUnavailable, StoreNotFound (where it has to ask).
        """
        return False

    def list_versions(self, prefix: str = "") -> Iterator[ObjectVersion]:
        """Yield every version and delete marker of the keys starting with ``prefix``.

        Keys come in the store's listing order; each key's versions that hold bytes come
        newest first, its delete markers beside them (their place among the versions is
        not promised: ``is_latest`` says which entry is current). Fetched page by page.
        A store without versions (this default) yields one version per object, its
        current one (``version_id`` None, ``is_latest``).

        Raises:
            StoreNotFound, StoreAuthError, StoreUnavailable (while iterating).
        """
        for info in self.list(prefix):
            yield ObjectVersion(key=info.key, version_id=None, size=info.size,
                                modified=info.modified, is_latest=True)

    def get_version(self, key: str, version_id: str | None, *, offset: int = 0,
                    length: int | None = None) -> Iterator[bytes]:
        """Read one version of ``key`` as :meth:`get` reads the current one (``version_id``
        None: the current one). The bytes of a version never change.

        Raises:
            ObjectNotFound: no such key or version (or the id names a delete marker; a
                store without versions has none but the current one).
            StoreNotFound, StoreAuthError, StoreUnavailable (also while iterating).
            ValueError: a negative ``offset`` or ``length``.
        """
        if version_id is None:
            return self.get(key, offset=offset, length=length)
        raise ObjectNotFound(self.name, f"{key!r} has no version {version_id} (the store "
                                        "keeps no versions)", key=key)

    # --- the store as a whole ------------------------------------------------------------

    @abc.abstractmethod
    def check(self) -> StoreCheck:
        """Prove the store works: reachable, credentials right, bucket or directory present,
        and a probe object can be written, read back and deleted.

        Raises:
            StoreNotFound, StoreAuthError, StoreUnavailable, StoreError (the probe read back
            different bytes).
        """

    @abc.abstractmethod
    def create_if_missing(self, *, object_lock: bool = False) -> bool:
        """Create the bucket or directory if it does not exist; True if it was created.

        Raises:
            ObjectLockUnsupported: ``object_lock`` on a store kind without it.
            StoreAuthError, StoreUnavailable.
        """

    @property
    @abc.abstractmethod
    def supports_object_lock(self) -> bool:
        """True if objects can be put with a ``retain_until`` here."""

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the store is, for humans and logs; never contains a secret."""

    @abc.abstractmethod
    def restic_location(self, subpath: str = "") -> tuple[str, dict[str, Secret]]:
        """What restic needs to open the repository stored at ``<root>/<subpath>``.

        Returns:
            ``(repository, environment)``: the value for ``-r``/``RESTIC_REPOSITORY`` and the
            environment variables to set (S3 keys and region; empty for a filesystem).
        """

    # --- conveniences built on the above ------------------------------------------------

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """The bytes of :meth:`get` joined; for small objects and ranges. Raises as get."""
        return b"".join(self.get(key, offset=offset, length=length))

    def exists(self, key: str) -> bool:
        """True if an object is under ``key``. Raises as :meth:`head`, except ObjectNotFound."""
        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    def copy_from(self, source: Store, key: str, *, retain_until: datetime | None = None) -> int:
        """Copy ``key`` from ``source`` into this store under the same key; returns its size.

        Streamed with bounded memory (one chunk of the source, one part of the upload) unless
        an implementation can do better (S3 to S3 on one endpoint: a server-side copy).
        The put is atomic as ever: a failed copy leaves no partial object.

        Raises:
            ObjectNotFound: ``key`` is not in ``source``.
            as :meth:`put` for this store, as :meth:`get` for ``source``.
        """
        size = source.head(key).size
        reader = IteratorReader(source.get(key))
        try:
            self.put(key, reader, length=size, retain_until=retain_until)
        finally:
            reader.close()
        return size

    def unwrap(self) -> Store:
        """The store that does the work, beneath any wrappers (:class:`RetryingStore`)."""
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.location!r})"
