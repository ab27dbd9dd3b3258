"""A wrapper that retries a store's operations on transient failures (restic's
``internal/backend/retry``).

Only :class:`StoreUnavailable` is retried, with exponential backoff and jitter; every
other error (not found, auth, locked, a bad key) is an answer and passes through at
once. Interrupted reads resume at the byte where they stopped (of the current object or of
one version), interrupted listings after the last key they yielded, and interrupted
listings of versions start again and skip what they yielded already, so a caller never
sees a chunk, a key or a version twice. A put is retried
only when its data can be replayed (bytes, or a seekable file).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TypeVar

from drd.secrets import Secret
from drd.stores.base import (
    Data,
    ObjectInfo,
    ObjectVersion,
    Store,
    StoreCheck,
    validate_range,
)
from drd.stores.errors import StoreUnavailable

logger = logging.getLogger(__name__)

Result = TypeVar("Result")


class RetryingStore(Store):
    """``store`` with each operation tried up to ``attempts`` times.

    Args:
        store: the store doing the work.
        attempts: tries per operation (1: no retries).
        backoff: seconds before the first retry; doubled for each next one, capped at
            ``max_backoff``, and each delay drawn between half and all of that.
        sleep, jitter: injectable for tests (``time.sleep`` and ``random.random``).
    """

    def __init__(
        self,
        store: Store,
        attempts: int = 5,
        backoff: float = 0.5,
        *,
        max_backoff: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.inner = store
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._jitter = jitter

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name

    @property
    def chunk_size(self) -> int:  # type: ignore[override]
        return self.inner.chunk_size

    @property
    def location(self) -> str:
        return self.inner.location

    @property
    def supports_object_lock(self) -> bool:
        return self._call("checking Object Lock", lambda: self.inner.supports_object_lock)

    def unwrap(self) -> Store:
        return self.inner.unwrap()

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** (retry - 1))
        return ceiling * (0.5 + 0.5 * self._jitter())

    def _wait(self, error: StoreUnavailable, doing: str, retry: int) -> None:
        pause = self.delay(retry)
        logger.warning(
            "%s while %s; retry %d of %d in %.1fs", error, doing, retry, self.attempts - 1, pause
        )
        self._sleep(pause)

    def _call(self, doing: str, operation: Callable[[], Result]) -> Result:
        for attempt in range(1, self.attempts + 1):
            try:
                return operation()
            except StoreUnavailable as error:
                if attempt == self.attempts:
                    raise
                self._wait(error, doing, attempt)
        raise AssertionError("unreachable")  # pragma: no cover

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
        """See :meth:`Store.put`; retried when ``data`` is bytes or a seekable file (a
        create-only put retried after its first try did land raises ObjectExists: the
        caller decides what an existing object means)."""
        extra = {"create_only": True} if create_only else {}
        if isinstance(data, bytes | bytearray | memoryview):
            return self._call(
                f"writing {key!r}",
                lambda: self.inner.put(key, data, length=length, retain_until=retain_until,
                                       **extra),
            )
        seekable = getattr(data, "seekable", None)
        if seekable is None or not seekable():
            return self.inner.put(key, data, length=length, retain_until=retain_until, **extra)
        start = data.tell()

        def put_from_start() -> None:
            data.seek(start)
            self.inner.put(key, data, length=length, retain_until=retain_until, **extra)

        return self._call(f"writing {key!r}", put_from_start)

    def get(self, key: str, *, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """See :meth:`Store.get`; a read that breaks off resumes where it stopped."""
        return self._read(key, offset, length, self.inner.get)

    def get_version(self, key: str, version_id: str | None, *, offset: int = 0,
                    length: int | None = None) -> Iterator[bytes]:
        """See :meth:`Store.get_version`; a read that breaks off resumes where it stopped
        (the bytes of a version never change)."""
        def fetch(key: str, *, offset: int, length: int | None) -> Iterator[bytes]:
            return self.inner.get_version(key, version_id, offset=offset, length=length)

        return self._read(key, offset, length, fetch)

    def _read(self, key: str, offset: int, length: int | None,
              fetch: Callable[..., Iterator[bytes]]) -> Iterator[bytes]:
        validate_range(offset, length)
        chunks = self._call(f"reading {key!r}",
                            lambda: fetch(key, offset=offset, length=length))
        return self._resuming(key, offset, length, chunks, fetch)

    def _resuming(
        self, key: str, offset: int, length: int | None, chunks: Iterator[bytes],
        fetch: Callable[..., Iterator[bytes]],
    ) -> Iterator[bytes]:
        done = 0
        failures = 0
        try:
            while True:
                try:
                    for chunk in chunks:
                        done += len(chunk)
                        failures = 0
                        yield chunk
                    return
                except StoreUnavailable as error:
                    failures += 1
                    _close(chunks)
                    if failures >= self.attempts:
                        raise
                    self._wait(error, f"reading {key!r} at byte {offset + done}", failures)
                    remaining = None if length is None else length - done
                    if remaining == 0:
                        return
                    chunks = self._call(
                        f"reading {key!r}",
                        lambda at=offset + done, remaining=remaining: fetch(
                            key, offset=at, length=remaining
                        ),
                    )
        finally:
            _close(chunks)

    def head(self, key: str) -> ObjectInfo:
        return self._call(f"reading {key!r}", lambda: self.inner.head(key))

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        """See :meth:`Store.list`; a listing that breaks off resumes after the last key."""
        return self._resuming_list(prefix, start_after)

    def _resuming_list(self, prefix: str, start_after: str | None) -> Iterator[ObjectInfo]:
        last = start_after
        failures = 0
        while True:
            try:
                for info in self.inner.list(prefix, start_after=last):
                    last = info.key
                    failures = 0
                    yield info
                return
            except StoreUnavailable as error:
                failures += 1
                if failures >= self.attempts:
                    raise
                self._wait(error, f"listing {prefix!r}", failures)

    def delete(self, key: str) -> None:
        return self._call(f"deleting {key!r}", lambda: self.inner.delete(key))

    # --- versions ------------------------------------------------------------------------

    @property
    def keeps_versions(self) -> bool:
        return self._call("asking whether the store keeps versions",
                          lambda: self.inner.keeps_versions)

    def list_versions(self, prefix: str = "") -> Iterator[ObjectVersion]:
        """See :meth:`Store.list_versions`; a listing that breaks off starts again and
        skips the entries it yielded already (a version listing has no resumable order
        common to every store)."""
        yielded: set[tuple[str, str | None, bool]] = set()
        failures = 0
        while True:
            try:
                for version in self.inner.list_versions(prefix):
                    mark = (version.key, version.version_id, version.is_delete_marker)
                    if mark in yielded:
                        continue
                    yielded.add(mark)
                    failures = 0
                    yield version
                return
            except StoreUnavailable as error:
                failures += 1
                if failures >= self.attempts:
                    raise
                self._wait(error, f"listing versions of {prefix!r}", failures)

    def copy_from(self, source: Store, key: str, *, retain_until: datetime | None = None) -> int:
        """See :meth:`Store.copy_from`; the whole copy is retried (the put is atomic)."""
        return self._call(
            f"copying {key!r} from {source.name!r}",
            lambda: self.inner.copy_from(source, key, retain_until=retain_until),
        )

    # --- the store as a whole ----------------------------------------------------------

    def check(self) -> StoreCheck:
        return self._call("checking the store", self.inner.check)

    def create_if_missing(self, *, object_lock: bool = False) -> bool:
        return self._call(
            "creating the store", lambda: self.inner.create_if_missing(object_lock=object_lock)
        )

    def restic_location(self, subpath: str = "") -> tuple[str, dict[str, Secret]]:
        return self.inner.restic_location(subpath)


def _close(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()
