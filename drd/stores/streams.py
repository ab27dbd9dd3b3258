"""File-like adaptors the stores use to stream without holding whole objects in memory."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import BinaryIO


class IteratorReader(io.RawIOBase):
    """A read-only binary file over an iterator of byte chunks (one chunk held at a time).

    Lets the output of :meth:`Store.get` feed :meth:`Store.put` (a streamed copy).
    ``read(n)`` returns ``n`` bytes unless the data ends first: boto3 takes a short read
    for the end of the data (and would then hold the rest in memory in one PUT).
    ``close()`` closes the iterator if it is a generator, releasing its connection or file.
    """

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        while not self._buffer:
            try:
                self._buffer = memoryview(next(self._chunks))
            except StopIteration:
                return False
        return True

    def readinto(self, target) -> int:
        if not self._fill():
            return 0
        count = min(len(target), len(self._buffer))
        target[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        return count

    def read(self, size: int | None = -1) -> bytes:
        pieces = []
        wanted = -1 if size is None or size < 0 else size
        while wanted != 0 and self._fill():
            piece = self._buffer if wanted < 0 else self._buffer[:wanted]
            pieces.append(bytes(piece))
            self._buffer = self._buffer[len(piece) :]
            if wanted > 0:
                wanted -= len(piece)
        return b"".join(pieces)

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        super().close()


class LengthMismatch(ValueError):
    """The data given to a put was not as long as its declared ``length``."""


class FullReader(io.RawIOBase):
    """Wraps a binary file so that ``read(n)`` returns ``n`` bytes unless the data ends,
    and, if ``length`` is given, checks that the data holds exactly that many bytes.

    A mismatch raises :class:`LengthMismatch` from inside a read, which makes the upload
    fail before it is committed: a put with a wrong ``length`` leaves nothing behind (the
    all-or-nothing rule). Short reads (pipes, sockets, HTTP bodies) are joined up because
    boto3 takes a short read for the end of the data.
    """

    def __init__(self, source: BinaryIO, length: int | None = None) -> None:
        super().__init__()
        self._source = source
        self._length = length
        self._done = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        unbounded = size is None or size < 0
        if self._length is not None:
            left = self._length - self._done
            size = left if unbounded else min(size, left)
            unbounded = False
        pieces = []
        got = 0
        while unbounded or got < size:
            piece = self._source.read(-1 if unbounded else size - got)
            if not piece:
                break
            pieces.append(piece)
            got += len(piece)
        self._done += got
        if self._length is not None and got < size:
            raise LengthMismatch(
                f"the data ended {self._length - self._done} bytes short of its declared "
                f"length {self._length}"
            )
        if self._length is not None and self._done == self._length and self._source.read(1):
            raise LengthMismatch(f"the data is longer than its declared length {self._length}")
        return b"".join(pieces)
