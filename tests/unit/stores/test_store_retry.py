"""RetryingStore: what is retried, how long it waits, how reads and listings resume."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from drd.secrets import Secret
from drd.stores import (
    ObjectInfo,
    ObjectLocked,
    ObjectNotFound,
    RetryingStore,
    Store,
    StoreAuthError,
    StoreCheck,
    StoreUnavailable,
)

MOMENT = datetime(2026, 1, 1, tzinfo=UTC)


class InMemoryFakeStore(Store):
    """A fake store in a dict. ``failures[operation]`` lists errors the next calls raise;
    ``break_read_after`` makes the next read fail after that many bytes (once)."""

    def __init__(self, name: str = "fake", chunk_size: int = 4) -> None:
        self.name = name
        self.chunk_size = chunk_size
        self.objects: dict[str, bytes] = {}
        self.failures: dict[str, list[Exception]] = {}
        self.calls: list[tuple] = []
        self.break_read_after: int | None = None
        self.break_list_after: int | None = None

    def _maybe_fail(self, operation: str, *details) -> None:
        self.calls.append((operation, *details))
        pending = self.failures.get(operation)
        if pending:
            raise pending.pop(0)

    def put(self, key, data, *, length=None, retain_until=None) -> None:
        self._maybe_fail("put", key)
        self.objects[key] = bytes(data) if isinstance(data, bytes) else data.read()

    def get(self, key, *, offset=0, length=None) -> Iterator[bytes]:
        self._maybe_fail("get", key, offset, length)
        if key not in self.objects:
            raise ObjectNotFound(self.name, f"object {key!r} not found", key=key)
        end = None if length is None else offset + length
        data = self.objects[key][offset:end]
        return self._chunks(data)

    def _chunks(self, data: bytes) -> Iterator[bytes]:
        sent = 0
        for start in range(0, len(data), self.chunk_size):
            if self.break_read_after is not None and sent >= self.break_read_after:
                self.break_read_after = None
                raise StoreUnavailable(self.name, "connection reset while reading")
            chunk = data[start : start + self.chunk_size]
            sent += len(chunk)
            yield chunk

    def head(self, key) -> ObjectInfo:
        self._maybe_fail("head", key)
        if key not in self.objects:
            raise ObjectNotFound(self.name, f"object {key!r} not found", key=key)
        return ObjectInfo(key, len(self.objects[key]), MOMENT)

    def list(self, prefix="", *, start_after=None) -> Iterator[ObjectInfo]:
        self._maybe_fail("list", prefix, start_after)
        return self._list(prefix, start_after)

    def _list(self, prefix, start_after) -> Iterator[ObjectInfo]:
        yielded = 0
        for key in sorted(self.objects):
            if key.startswith(prefix) and (start_after is None or key > start_after):
                if self.break_list_after is not None and yielded >= self.break_list_after:
                    self.break_list_after = None
                    raise StoreUnavailable(self.name, "listing broke off")
                yielded += 1
                yield ObjectInfo(key, len(self.objects[key]), MOMENT)

    def delete(self, key) -> None:
        self._maybe_fail("delete", key)
        self.objects.pop(key, None)

    def check(self) -> StoreCheck:
        self._maybe_fail("check")
        return StoreCheck(self.name, "memory:", False, None, 0.0)

    def create_if_missing(self, *, object_lock=False) -> bool:
        self._maybe_fail("create")
        return False

    @property
    def supports_object_lock(self) -> bool:
        return False

    @property
    def location(self) -> str:
        return "memory:"

    def restic_location(self, subpath=""):
        return f"/memory/{subpath}", {"X": Secret("y")}


def unavailable(store: str = "fake") -> StoreUnavailable:
    return StoreUnavailable(store, "connection refused")


@pytest.fixture
def fake() -> InMemoryFakeStore:
    return InMemoryFakeStore()


@pytest.fixture
def pauses() -> list[float]:
    return []


@pytest.fixture
def retrying(fake, pauses) -> RetryingStore:
    return RetryingStore(fake, attempts=4, backoff=1.0, sleep=pauses.append, jitter=lambda: 1.0)


def test_transient_failures_are_retried_until_success(fake, retrying, pauses):
    fake.objects["k"] = b"value"
    fake.failures["head"] = [unavailable(), unavailable()]
    assert retrying.head("k").size == 5
    assert pauses == [1.0, 2.0]
    assert len([c for c in fake.calls if c[0] == "head"]) == 3


def test_the_last_failure_is_raised_after_all_attempts(fake, retrying, pauses):
    fake.failures["check"] = [unavailable() for _ in range(10)]
    with pytest.raises(StoreUnavailable, match="fake"):
        retrying.check()
    assert len(fake.calls) == 4
    assert pauses == [1.0, 2.0, 4.0]


@pytest.mark.parametrize(
    "error",
    [
        ObjectNotFound("fake", "not found"),
        StoreAuthError("fake", "SignatureDoesNotMatch"),
        ObjectLocked("fake", "locked"),
        ValueError("a bug"),
    ],
)
def test_answers_are_not_retried(fake, retrying, pauses, error):
    fake.failures["delete"] = [error]
    with pytest.raises(type(error)):
        retrying.delete("k")
    assert len(fake.calls) == 1
    assert pauses == []


def test_a_missing_object_is_not_retried(fake, retrying, pauses):
    with pytest.raises(ObjectNotFound):
        retrying.read("missing")
    assert len(fake.calls) == 1 and pauses == []


def test_backoff_doubles_up_to_a_ceiling_with_jitter():
    store = RetryingStore(
        InMemoryFakeStore(), attempts=10, backoff=0.5, max_backoff=3.0, jitter=lambda: 0.0
    )
    assert [store.delay(n) for n in range(1, 6)] == [0.25, 0.5, 1.0, 1.5, 1.5]
    store = RetryingStore(
        InMemoryFakeStore(), attempts=10, backoff=0.5, max_backoff=3.0, jitter=lambda: 1.0
    )
    assert [store.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_one_attempt_means_no_retry(fake, pauses):
    store = RetryingStore(fake, attempts=1, sleep=pauses.append)
    fake.failures["head"] = [unavailable()]
    with pytest.raises(StoreUnavailable):
        store.head("k")
    assert pauses == []
    with pytest.raises(ValueError):
        RetryingStore(fake, attempts=0)


def test_put_of_bytes_and_of_a_seekable_file_is_retried_from_the_start(fake, retrying):
    fake.failures["put"] = [unavailable()]
    retrying.put("a", b"bytes")
    assert fake.objects["a"] == b"bytes"

    source = io.BytesIO(b"skip:file content")
    source.seek(5)
    original_put = fake.put
    attempts = []

    def consume_then_fail(key, data, *, length=None, retain_until=None):
        attempts.append(data.tell())
        if len(attempts) == 1:
            data.read()  # the failed attempt had consumed the stream
            raise unavailable()
        original_put(key, data, length=length, retain_until=retain_until)

    fake.put = consume_then_fail
    retrying.put("b", source)
    assert attempts == [5, 5]
    assert fake.objects["b"] == b"file content"


def test_put_of_a_one_way_stream_is_not_retried(fake, retrying, pauses):
    class OneWay(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, buffer):
            return 0

    fake.failures["put"] = [unavailable()]
    with pytest.raises(StoreUnavailable):
        retrying.put("c", OneWay())
    assert pauses == []


def test_a_read_that_breaks_off_resumes_where_it_stopped(fake, retrying, pauses):
    fake.objects["pack"] = bytes(range(40))
    fake.break_read_after = 12
    chunks = list(retrying.get("pack", offset=2, length=30))
    assert b"".join(chunks) == bytes(range(2, 32))
    gets = [call for call in fake.calls if call[0] == "get"]
    assert gets == [("get", "pack", 2, 30), ("get", "pack", 14, 18)]
    assert pauses == [1.0]


def test_a_read_to_the_end_resumes_to_the_end(fake, retrying):
    fake.objects["pack"] = bytes(range(40))
    fake.break_read_after = 8
    assert retrying.read("pack") == bytes(range(40))
    assert [c for c in fake.calls if c[0] == "get"][-1] == ("get", "pack", 8, None)


def test_opening_a_read_is_retried(fake, retrying):
    fake.objects["k"] = b"abc"
    fake.failures["get"] = [unavailable()]
    assert retrying.read("k") == b"abc"


def test_a_listing_that_breaks_off_resumes_after_the_last_key(fake, retrying, pauses):
    for key in ("a", "b", "c", "d", "e"):
        fake.objects[key] = b"x"
    fake.break_list_after = 2
    assert [info.key for info in retrying.list()] == ["a", "b", "c", "d", "e"]
    lists = [call for call in fake.calls if call[0] == "list"]
    assert lists == [("list", "", None), ("list", "", "b")]
    assert pauses == [1.0]


def test_copy_is_retried_whole(fake, retrying):
    source = InMemoryFakeStore("source")
    source.objects["k"] = b"content"
    fake.failures["put"] = [unavailable()]
    assert retrying.copy_from(source, "k") == 7
    assert fake.objects["k"] == b"content"


def test_the_wrapper_is_transparent(fake, retrying):
    assert retrying.name == "fake"
    assert retrying.location == "memory:"
    assert retrying.unwrap() is fake
    assert RetryingStore(retrying).unwrap() is fake
    assert retrying.restic_location("x")[0] == "/memory/x"
    assert retrying.supports_object_lock is False
    assert retrying.create_if_missing() is False
    assert "fake" in repr(retrying)
