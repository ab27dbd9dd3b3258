"""The fan-out writer and reader against in-memory stores: parallel writes, the answer
restic gets, retries, unhealthy stores, retention, lock deletes, reads with fallback."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from agents.fanout.budget import ByteBudget
from agents.fanout.durability import Decision
from agents.fanout.endpoint import FanoutEndpoint, _unwrapped
from agents.fanout.ledger import Ledger
from agents.fanout.protocol import RangeNotSatisfiable
from agents.fanout.reader import FanoutReader, NoStoreAnswered
from agents.fanout.report import build_report
from agents.fanout.writer import FanoutWriter, WriterClosed
from drd.secrets import Secret
from drd.stores import (
    ObjectInfo,
    ObjectNotFound,
    RetryingStore,
    Store,
    StoreAuthError,
    StoreCheck,
    StoreUnavailable,
)

NOW = datetime(2026, 11, 1, tzinfo=UTC)


class MemoryStore(Store):
    """A store in a dict. ``down``: every call raises StoreUnavailable; ``fail_puts``:
    errors the next puts raise; ``gate``: puts wait for it (a slow store)."""

    def __init__(self, name: str, *, object_lock: bool = False) -> None:
        self.name = name
        self.chunk_size = 4
        self.objects: dict[str, bytes] = {}
        self.retentions: dict[str, datetime | None] = {}
        self.object_lock = object_lock
        self.down = False
        self.fail_puts: list[Exception] = []
        self.gate: threading.Event | None = None
        self.puts: list[str] = []
        self.deletes: list[str] = []
        self.reads: list[str] = []
        self._lock = threading.Lock()

    def _check_up(self, key: str = "") -> None:
        if self.down:
            raise StoreUnavailable(self.name, "connection refused", key=key or None)

    def put(self, key, data, *, length=None, retain_until=None) -> None:
        if self.gate is not None:
            self.gate.wait(5)
        with self._lock:
            self.puts.append(key)
            failure = self.fail_puts.pop(0) if self.fail_puts else None
        self._check_up(key)
        if failure is not None:
            raise failure
        assert length == len(data)
        self.objects[key] = bytes(data)
        self.retentions[key] = retain_until

    def get(self, key, *, offset=0, length=None) -> Iterator[bytes]:
        self.reads.append(key)
        self._check_up(key)
        if key not in self.objects:
            raise ObjectNotFound(self.name, f"{key} not found", key=key)
        end = None if length is None else offset + length
        data = self.objects[key][offset:end]
        return iter([data[i:i + self.chunk_size] for i in range(0, len(data), self.chunk_size)])

    def head(self, key) -> ObjectInfo:
        self.reads.append(key)
        self._check_up(key)
        if key not in self.objects:
            raise ObjectNotFound(self.name, f"{key} not found", key=key)
        return ObjectInfo(key, len(self.objects[key]), NOW)

    def list(self, prefix="", *, start_after=None) -> Iterator[ObjectInfo]:
        self._check_up()
        for key in sorted(self.objects):
            if key.startswith(prefix):
                yield ObjectInfo(key, len(self.objects[key]), NOW)

    def delete(self, key) -> None:
        self._check_up(key)
        self.deletes.append(key)
        self.objects.pop(key, None)

    def check(self) -> StoreCheck:  # pragma: no cover -- not used here
        raise NotImplementedError

    def create_if_missing(self, *, object_lock=False) -> bool:  # pragma: no cover
        return False

    @property
    def supports_object_lock(self) -> bool:
        self._check_up()
        return self.object_lock

    @property
    def location(self) -> str:
        return f"memory:{self.name}"

    def restic_location(self, subpath=""):  # pragma: no cover
        return f"memory:{self.name}", {"X": Secret("x")}


def named(body: bytes, object_type: str = "data") -> str:
    digest = hashlib.sha256(body).hexdigest()
    return f"data/{digest[:2]}/{digest}" if object_type == "data" else f"{object_type}/{digest}"


def make(stores, *, min_copies=2, object_lock_days=0, attempts=3, budget=1 << 20):
    ledger = Ledger([store.name for store in stores])
    writer = FanoutWriter(
        stores, ledger, min_copies=min_copies, object_lock_days=object_lock_days,
        attempts=attempts, backoff=0.001, workers=3, budget=ByteBudget(budget),
        now=lambda: NOW,
    )
    reader = FanoutReader(stores, ledger, writer.give_up)
    return ledger, writer, reader


def put(writer: FanoutWriter, key: str, body: bytes) -> Decision:
    return writer.write(key, body, writer.reserve(len(body)))


@pytest.fixture
def three():
    return [MemoryStore("a"), MemoryStore("b"), MemoryStore("c")]


def test_every_store_gets_every_object(three):
    ledger, writer, _ = make(three)
    bodies = [bytes([n]) * (n + 1) for n in range(20)]
    for body in bodies:
        assert put(writer, named(body), body) is Decision.DURABLE
    writer.close()
    for store in three:
        assert store.objects == {named(body): body for body in bodies}
    report = build_report(ledger.store_names, ledger.snapshot(), min_copies=2)
    assert report.durable and report.objects == 20
    assert all(outcome.complete and outcome.healthy for outcome in report.stores.values())
    assert writer.budget.used == 0


def test_restic_is_answered_before_a_slow_store_finishes(three):
    ledger, writer, _ = make(three)
    three[2].gate = threading.Event()
    assert put(writer, "config", b"cfg") is Decision.DURABLE
    assert "config" not in three[2].objects  # still writing
    assert writer.budget.used == 3  # the body is held until c is done
    three[2].gate.set()
    writer.drain()
    assert three[2].objects["config"] == b"cfg" and writer.budget.used == 0
    assert ledger.holders("config") == ("a", "b", "c")


def test_transient_failures_are_retried(three):
    _, writer, _ = make(three)
    three[1].fail_puts = [StoreUnavailable("b", "timeout"), StoreUnavailable("b", "timeout")]
    assert put(writer, "config", b"cfg") is Decision.DURABLE
    writer.close()
    assert three[1].objects["config"] == b"cfg"
    assert three[1].puts == ["config"] * 3


def test_a_store_down_is_given_up_on_and_misses_everything_after(three):
    ledger, writer, _ = make(three)
    three[2].down = True
    bodies = [b"one", b"two", b"three"]
    assert put(writer, named(b"one"), b"one") is Decision.DURABLE
    writer.drain()
    for body in bodies[1:]:
        assert put(writer, named(body), body) is Decision.DURABLE
    writer.close()
    assert three[2].puts == [named(b"one")] * 3  # tried, retried, then never again
    report = build_report(ledger.store_names, ledger.snapshot(), min_copies=2)
    c = report.stores["c"]
    assert not c.healthy and "connection refused" in c.error
    assert set(c.missing) == {named(body) for body in bodies} and c.written == 0
    assert report.durable


def test_a_refusal_is_not_retried(three):
    ledger, writer, _ = make(three)
    three[0].fail_puts = [StoreAuthError("a", "AccessDenied")]
    assert put(writer, "config", b"cfg") is Decision.DURABLE
    writer.close()
    assert three[0].puts == ["config"]
    assert not ledger.is_healthy("a")


def test_too_few_copies_fail_the_upload(three):
    ledger, writer, _ = make(three, min_copies=3)
    three[1].down = True
    assert put(writer, "config", b"cfg") is Decision.FAILED
    writer.close()
    report = build_report(ledger.store_names, ledger.snapshot(), min_copies=3)
    assert not report.durable and report.under_replicated == ("config",)
    assert report.refused == ("config",)
    assert report.stores["b"].missing == ("config",)


def test_nothing_left_healthy_fails_at_once(three):
    _, writer, _ = make(three, min_copies=1)
    for store in three:
        writer.give_up(store.name, "down")
    assert put(writer, "config", b"cfg") is Decision.FAILED
    assert all(not store.puts for store in three)
    writer.close()


def test_retention_on_lock_stores_only_and_never_on_locks():
    stores = [MemoryStore("a", object_lock=True), MemoryStore("b")]
    _, writer, _ = make(stores, object_lock_days=7)
    assert put(writer, "config", b"cfg") is Decision.DURABLE
    assert put(writer, named(b"lock", "locks"), b"lock") is Decision.DURABLE
    writer.close()
    assert stores[0].retentions["config"] == NOW + timedelta(days=7)
    assert stores[0].retentions[named(b"lock", "locks")] is None
    assert stores[1].retentions["config"] is None


def test_no_retention_without_object_lock_days():
    stores = [MemoryStore("a", object_lock=True)]
    _, writer, _ = make(stores, min_copies=1)
    put(writer, "config", b"cfg")
    writer.close()
    assert stores[0].retentions["config"] is None


def test_deleting_a_lock_waits_for_its_writes_and_forgets_it(three):
    ledger, writer, _ = make(three)
    key = named(b"lock", "locks")
    three[2].gate = threading.Event()
    assert put(writer, key, b"lock") is Decision.DURABLE
    deleted = []
    deleter = threading.Thread(target=lambda: deleted.append(writer.delete(key)))
    deleter.start()
    deleter.join(0.1)
    assert deleter.is_alive()  # waits for c's write
    three[2].gate.set()
    deleter.join(5)
    assert deleted == [True]
    assert all(key not in store.objects for store in three)
    assert ledger.holders(key) is None
    writer.close()
    report = build_report(ledger.store_names, ledger.snapshot(), min_copies=2)
    assert report.objects == 0 and report.durable


def test_deleting_an_old_lock_asks_every_healthy_store(three):
    _, writer, _ = make(three)
    key = named(b"old", "locks")
    three[0].objects[key] = b"old"
    writer.give_up("c", "down")
    assert writer.delete(key)
    assert three[0].deletes == [key] and three[1].deletes == [key] and not three[2].deletes
    writer.close()


def test_closed_writer_refuses_work(three):
    _, writer, _ = make(three)
    writer.close()
    reservation = writer.reserve(3)
    with pytest.raises(WriterClosed):
        writer.write("config", b"cfg", reservation)
    assert writer.budget.used == 0
    with pytest.raises(WriterClosed):
        writer.delete("locks/x")


# --- reads ----------------------------------------------------------------------------------


def test_reads_prefer_a_store_that_acknowledged_the_object(three):
    _, writer, reader = make(three)
    three[0].gate = threading.Event()  # a is slow: b and c acknowledge first
    assert put(writer, "config", b"0123456789") is Decision.DURABLE
    opened = reader.open("config", "bytes=2-5")
    assert b"".join(opened.chunks) == b"2345" and opened.size == 10 and opened.range.partial
    assert "config" not in three[0].reads
    three[0].gate.set()
    writer.close()


def test_reads_fall_back_to_the_next_store(three):
    _, writer, reader = make(three)
    three[1].objects["keys/k"] = b"key!"
    assert reader.size("keys/k") == 4  # a: not found, b: found
    three[0].down = True
    three[2].objects["index/i"] = b"index"
    assert b"".join(reader.open("index/i", "bytes=0-").chunks) == b"index"
    # a store unreachable on a read is given up on for the whole run
    assert not writer.ledger.is_healthy("a")
    with pytest.raises(ObjectNotFound):
        reader.size("snapshots/none")
    with pytest.raises(RangeNotSatisfiable):
        reader.open("index/i", "bytes=9-")
    writer.close()


def test_reads_with_no_healthy_store_left(three):
    _, writer, reader = make(three)
    for store in three:
        writer.give_up(store.name, "down")
    with pytest.raises(NoStoreAnswered):
        reader.size("config")
    with pytest.raises(NoStoreAnswered):
        reader.listing("index")
    writer.close()


def test_listings_span_data_subdirectories_and_include_the_runs_objects(three):
    _, writer, reader = make(three)
    old = b"old pack"
    three[0].objects[named(old)] = old
    three[0].objects["data/README"] = b"stray"
    three[1].gate = three[0].gate = threading.Event()  # only c has the new pack, so far
    new = b"new pack!"
    writer.min_copies = 1
    assert put(writer, named(new), new) is Decision.DURABLE
    listing = reader.listing("data")
    assert sorted(listing) == sorted([(named(old).rsplit("/")[-1], len(old)),
                                      (named(new).rsplit("/")[-1], len(new))])
    three[0].gate.set()
    writer.close()


def test_listing_falls_back_when_the_first_store_is_down(three):
    _, writer, reader = make(three)
    three[0].down = True
    three[1].objects[named(b"s", "snapshots")] = b"s"
    assert reader.listing("snapshots") == [(named(b"s", "snapshots").split("/")[1], 1)]
    writer.close()


# --- the endpoint's own checks --------------------------------------------------------------


def test_endpoint_arguments_are_checked(three):
    with pytest.raises(ValueError):
        FanoutEndpoint([], min_copies=1)
    with pytest.raises(ValueError):
        FanoutEndpoint(three, min_copies=4)
    with pytest.raises(ValueError):
        FanoutEndpoint(three, min_copies=0)
    with pytest.raises(ValueError):
        FanoutEndpoint([three[0], MemoryStore("a")], min_copies=1)
    with pytest.raises(ValueError):
        FanoutEndpoint(three, min_copies=2, object_lock_days=-1)
    endpoint = FanoutEndpoint(three, min_copies=2)
    with pytest.raises(RuntimeError):
        _ = endpoint.restic_url
    assert endpoint.report().durable and endpoint.report().objects == 0
    assert endpoint.can_be_durable
    endpoint._ledger.mark_unhealthy("a", "down")
    assert endpoint.can_be_durable  # b and c remain
    endpoint._ledger.mark_unhealthy("c", "down")
    assert not endpoint.can_be_durable


def test_writes_bypass_an_outer_retry_layer(three):
    wrapped = RetryingStore(three[0], attempts=5)
    assert _unwrapped(wrapped) is three[0]
    assert _unwrapped(three[1]) is three[1]
