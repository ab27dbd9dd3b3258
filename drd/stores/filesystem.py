"""A store in a local (or mounted) directory: one file per object, ``<root>/<key>``.

Writes are atomic: a temporary file in the target's directory, fsynced, renamed over the
target, then the directory fsynced. There is no Object Lock: a put with ``retain_until``
is refused with :class:`ObjectLockUnsupported` rather than silently kept mutable.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from drd.fsutil import fsync_directory
from drd.secrets import Secret
from drd.stores.base import (
    TEMPORARY_MARKER,
    Data,
    ObjectInfo,
    Store,
    StoreCheck,
    validate_key,
    validate_range,
    validate_retain_until,
)
from drd.stores.errors import (
    ObjectExists,
    ObjectLockUnsupported,
    ObjectNotFound,
    StoreAuthError,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
)
from drd.stores.streams import LengthMismatch

# Errors that mean "the mount or disk is gone or failing", worth a retry.
_UNAVAILABLE_ERRNOS = {
    errno.EIO,
    errno.ENOTCONN,
    errno.ESTALE,
    errno.ETIMEDOUT,
    errno.EHOSTDOWN,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EAGAIN,
}
_WRITE_BLOCK = 1024 * 1024


class FilesystemStore(Store):
    """A store rooted at the absolute directory ``root``.

    Args:
        name: the store's name (starts every error message).
        root: an absolute directory; it must exist before use (see ``create_if_missing``).
        chunk_size: the largest chunk :meth:`get` yields.
        file_mode: permission bits of object files.
    """

    def __init__(
        self,
        name: str,
        root: str | Path,
        *,
        chunk_size: int = 1024 * 1024,
        file_mode: int = 0o600,
    ) -> None:
        root = Path(root)
        if not root.is_absolute():
            raise ValueError(f"store {name!r}: the directory {root} must be absolute")
        self.name = name
        self.root = root
        self.chunk_size = chunk_size
        self.file_mode = file_mode

    # --- helpers -----------------------------------------------------------------------

    @property
    def location(self) -> str:
        return f"file://{self.root}"

    @property
    def supports_object_lock(self) -> bool:
        return False

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _error(self, error: OSError, doing: str, key: str | None = None) -> StoreError:
        """Translate an ``OSError`` met while ``doing`` something into a store error."""
        what = f"{doing}: {error.strerror or error}"
        if isinstance(error, PermissionError):
            return StoreAuthError(self.name, f"permission denied {what}", key=key)
        if error.errno in _UNAVAILABLE_ERRNOS:
            return StoreUnavailable(self.name, f"{self.root} unavailable {what}", key=key)
        return StoreError(self.name, f"{what}", key=key)

    def _require_root(self) -> None:
        try:
            if self.root.is_dir():
                return
        except OSError as error:
            raise self._error(error, f"checking {self.root}") from error
        raise StoreNotFound(
            self.name,
            f"directory {self.root} does not exist (create it, or add the store again)",
        )

    def _not_found(self, key: str) -> ObjectNotFound:
        return ObjectNotFound(self.name, f"object {key!r} not found in {self.root}", key=key)

    # --- objects -----------------------------------------------------------------------

    def put(
        self,
        key: str,
        data: Data,
        *,
        length: int | None = None,
        retain_until: datetime | None = None,
        create_only: bool = False,
    ) -> None:
        """See :meth:`Store.put`. Always refuses ``retain_until`` (no Object Lock here). A
        create-only put links the finished file into place (``link`` fails on an existing
        name), where a plain put renames it over any file there."""
        path = self._path(key)
        validate_retain_until(retain_until)
        if retain_until is not None:
            raise ObjectLockUnsupported(
                self.name,
                f"a filesystem store has no Object Lock; cannot keep {key!r} "
                f"until {retain_until.isoformat()}",
                key=key,
            )
        if isinstance(data, bytes | bytearray | memoryview):
            if length is not None and length != len(data):
                raise LengthMismatch(f"{len(data)} bytes given with length={length}")
        self._require_root()
        temporary = path.with_name(f".{path.name}{TEMPORARY_MARKER}{secrets.token_hex(6)}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.file_mode)
            with os.fdopen(descriptor, "wb") as handle:
                written = self._write(handle, data, length)
                handle.flush()
                os.fsync(handle.fileno())
            if length is not None and written != length:
                raise LengthMismatch(f"{written} bytes read with length={length}")
            if create_only:
                try:
                    os.link(temporary, path)
                except FileExistsError:
                    raise ObjectExists(self.name, f"object {key!r} exists already",
                                       key=key) from None
            else:
                os.replace(temporary, path)
            fsync_directory(path.parent)
        except OSError as error:
            raise self._error(error, f"writing {key!r}", key) from error
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)

    @staticmethod
    def _write(handle, data: Data, length: int | None) -> int:
        if isinstance(data, bytes | bytearray | memoryview):
            handle.write(data)
            return len(data)
        written = 0
        while True:
            want = _WRITE_BLOCK if length is None else min(_WRITE_BLOCK, length - written)
            if want == 0:
                if length is not None and data.read(1):
                    raise LengthMismatch(f"the data is longer than its declared length {length}")
                return written
            block = data.read(want)
            if not block:
                return written
            handle.write(block)
            written += len(block)

    def get(self, key: str, *, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """See :meth:`Store.get`."""
        path = self._path(key)
        validate_range(offset, length)
        try:
            handle = open(path, "rb")  # closed by the generator below
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as error:
            self._require_root()
            raise self._not_found(key) from error
        except OSError as error:
            raise self._error(error, f"reading {key!r}", key) from error
        return self._chunks(handle, key, offset, length)

    def _chunks(self, handle, key: str, offset: int, length: int | None) -> Iterator[bytes]:
        with handle:
            try:
                handle.seek(offset)
                remaining = length
                while remaining is None or remaining > 0:
                    size = self.chunk_size if remaining is None else min(self.chunk_size, remaining)
                    chunk = handle.read(size)
                    if not chunk:
                        return
                    if remaining is not None:
                        remaining -= len(chunk)
                    yield chunk
            except OSError as error:
                raise self._error(error, f"reading {key!r}", key) from error

    def head(self, key: str) -> ObjectInfo:
        """See :meth:`Store.head`."""
        path = self._path(key)
        try:
            status = path.stat()
        except (FileNotFoundError, NotADirectoryError) as error:
            self._require_root()
            raise self._not_found(key) from error
        except OSError as error:
            raise self._error(error, f"reading {key!r}", key) from error
        if not path.is_file():
            raise self._not_found(key)
        return ObjectInfo(
            key=key,
            size=status.st_size,
            modified=datetime.fromtimestamp(status.st_mtime, UTC),
        )

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        """See :meth:`Store.list`: path order, as SeaweedFS. Temporary files of unfinished
        puts are never listed."""
        self._require_root()
        # Walk only the deepest directory that the prefix names entirely.
        directory_part = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / directory_part if directory_part else self.root
        after = tuple(start_after.split("/")) if start_after is not None else None
        return self._walk(start, directory_part, prefix, after)

    def _walk(
        self,
        directory: Path,
        relative: str,
        prefix: str,
        after: tuple[str, ...] | None,
    ) -> Iterator[ObjectInfo]:
        try:
            with os.scandir(directory) as scan:
                entries = sorted(
                    ((entry, entry.is_dir(follow_symlinks=False)) for entry in scan),
                    key=lambda item: item[0].name,
                )
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as error:
            raise self._error(error, f"listing {directory}") from error
        for entry, is_directory in entries:
            if TEMPORARY_MARKER in entry.name:
                continue
            key = f"{relative}/{entry.name}" if relative else entry.name
            parts = tuple(key.split("/"))
            if is_directory:
                below = key + "/"
                if not (below.startswith(prefix) or prefix.startswith(below)):
                    continue
                # Every key below is greater than ``parts``: skip the directory if they all
                # come before ``after``, i.e. ``after`` is neither below it nor after it.
                if after is not None and not (parts > after or after[: len(parts)] == parts):
                    continue
                yield from self._walk(Path(entry.path), key, prefix, after)
                continue
            if not key.startswith(prefix) or (after is not None and parts <= after):
                continue
            try:
                status = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # deleted while listing
            except OSError as error:
                raise self._error(error, f"listing {key!r}", key) from error
            yield ObjectInfo(
                key=key, size=status.st_size, modified=datetime.fromtimestamp(status.st_mtime, UTC)
            )

    def delete(self, key: str) -> None:
        """See :meth:`Store.delete`. Empty parent directories are left in place."""
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            self._require_root()
        except IsADirectoryError:
            return
        except OSError as error:
            raise self._error(error, f"deleting {key!r}", key) from error

    # --- the store as a whole ----------------------------------------------------------

    def check(self) -> StoreCheck:
        """See :meth:`Store.check`."""
        started = time.monotonic()
        self._require_root()
        probe_key = f"drd-probe-{secrets.token_hex(8)}"
        payload = secrets.token_bytes(64)
        self.put(probe_key, payload)
        try:
            if self.read(probe_key) != payload:
                raise StoreError(self.name, f"probe object read back differently in {self.root}")
        finally:
            self.delete(probe_key)
        return StoreCheck(
            name=self.name,
            location=self.location,
            object_lock=False,
            versioning=None,
            seconds=time.monotonic() - started,
        )

    def create_if_missing(self, *, object_lock: bool = False) -> bool:
        """See :meth:`Store.create_if_missing`; ``object_lock`` is refused."""
        if object_lock:
            raise ObjectLockUnsupported(self.name, "a filesystem store has no Object Lock")
        if self.root.is_dir():
            return False
        try:
            self.root.mkdir(parents=True, mode=0o700)
        except FileExistsError:
            return False
        except OSError as error:
            raise self._error(error, f"creating {self.root}") from error
        return True

    def restic_location(self, subpath: str = "") -> tuple[str, dict[str, Secret]]:
        """The local path of ``<root>/<subpath>``, and no environment."""
        path = self.root / validate_key(subpath) if subpath else self.root
        return str(path), {}
