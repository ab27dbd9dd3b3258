"""The store contract (drd/stores/base.py), run against every kind of store.

Like restic's shared backend tests: the same tests run on a real S3 server (SeaweedFS,
one shared for the session, a fresh bucket per test) and on a filesystem directory.
S3-only behaviour (credentials, reachability, Object Lock) follows at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from drd.errors import UserError
from drd.secrets import Secret
from drd.stores import (
    FilesystemStore,
    InvalidKey,
    ObjectExists,
    ObjectLocked,
    ObjectLockUnsupported,
    ObjectNotFound,
    RetryingStore,
    Store,
    StoreAuthError,
    StoreError,
    StoreNotFound,
    StoreSpec,
    StoreUnavailable,
    open_store,
)
from drd.stores.s3 import S3Store
from drd.stores.streams import LengthMismatch

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


def _bucket_name() -> str:
    return f"contract-{uuid.uuid4().hex[:16]}"


def _s3_store(server, name: str = "contract", *, bucket: str | None = None, **options) -> S3Store:
    options.setdefault("max_attempts", 2)
    options.setdefault("connect_timeout", 2)
    options.setdefault("read_timeout", 20)
    return S3Store(
        name,
        endpoint=server.endpoint,
        bucket=bucket or _bucket_name(),
        prefix=options.pop("prefix", "drd/tests"),
        access_key_id=server.access_key,
        secret_access_key=server.secret,
        **options,
    )


@pytest.fixture(params=["s3", "filesystem"])
def store_kind(request) -> str:
    return request.param


@pytest.fixture
def make_store(store_kind, request, tmp_path) -> Callable[..., Store]:
    """``make_store(name="contract", object_lock=False, **options) -> Store``: a new, empty
    store of the kind under test. Options (``chunk_size``; for S3 also ``list_page_size``,
    ``multipart_threshold``, ...) that a kind does not know are dropped."""
    server = request.getfixturevalue("seaweed_session") if store_kind == "s3" else None

    def make(name: str = "contract", *, object_lock: bool = False, **options) -> Store:
        if store_kind == "s3":
            store = _s3_store(server, name, **options)
        else:
            known = {k: v for k, v in options.items() if k in ("chunk_size",)}
            store = FilesystemStore(name, tmp_path / f"store-{uuid.uuid4().hex[:8]}", **known)
        assert store.create_if_missing(object_lock=object_lock) is True
        return store

    return make


@pytest.fixture
def store(make_store) -> Store:
    return make_store()


# --- put, get, read, head ------------------------------------------------------------


def test_put_then_read_whole_and_ranges(store):
    data = os.urandom(10_000)
    store.put("data/ab/object", data)
    assert store.read("data/ab/object") == data
    assert store.read("data/ab/object", 100, 50) == data[100:150]
    assert store.read("data/ab/object", 9_990) == data[9_990:]
    assert store.read("data/ab/object", offset=0, length=1) == data[:1]


def test_a_range_past_the_end_yields_what_exists(store):
    data = b"0123456789"
    store.put("k", data)
    assert store.read("k", 8, 100) == b"89"
    assert store.read("k", 10) == b""
    assert store.read("k", 50, 5) == b""
    assert store.read("k", 3, 0) == b""


def test_an_empty_object(store):
    store.put("empty", b"")
    assert store.read("empty") == b""
    assert store.head("empty").size == 0


def test_head_gives_size_and_an_aware_modification_time(store):
    before = datetime.now(UTC) - timedelta(seconds=5)
    store.put("config", b"x" * 1234)
    info = store.head("config")
    assert (info.key, info.size) == ("config", 1234)
    assert info.modified.tzinfo is not None
    assert before <= info.modified <= datetime.now(UTC) + timedelta(seconds=5)
    assert info.retain_until is None


def test_overwrite_replaces_the_object(store):
    store.put("config", b"first version, longer")
    store.put("config", b"second")
    assert store.read("config") == b"second"
    assert store.head("config").size == 6
    assert [info.key for info in store.list()] == ["config"]


def test_put_from_a_binary_file(store, tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(300_000))
    with open(source, "rb") as handle:
        store.put("from-file", handle)
    assert store.read("from-file") == source.read_bytes()


@pytest.mark.parametrize("declared", [99, 101])
def test_a_put_with_the_wrong_length_leaves_nothing(store, declared):
    store.put("kept", b"old")
    with pytest.raises(LengthMismatch):
        store.put("kept", io.BytesIO(b"n" * 100), length=declared)
    with pytest.raises(LengthMismatch):
        store.put("fresh", b"n" * 100, length=declared)
    assert store.read("kept") == b"old"
    assert not store.exists("fresh")
    assert [info.key for info in store.list()] == ["kept"]


def test_missing_objects_raise_object_not_found_naming_the_store(make_store):
    store = make_store("dc-missing")
    with pytest.raises(ObjectNotFound, match="dc-missing") as caught:
        store.get("data/00/nothing")  # raises on the call, before any iteration
    assert caught.value.key == "data/00/nothing"
    with pytest.raises(ObjectNotFound):
        store.head("data/00/nothing")
    with pytest.raises(ObjectNotFound):
        store.read("data/00/nothing", 5, 5)
    with pytest.raises(ObjectNotFound):
        store.read("data/00/nothing", 0, 0)
    assert store.exists("data/00/nothing") is False


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "./a", "trailing/", "a\\b"])
def test_invalid_keys_are_refused(store, key):
    with pytest.raises(InvalidKey):
        store.put(key, b"x")
    with pytest.raises(InvalidKey):
        store.head(key)


# --- streaming and large objects -------------------------------------------------------


def test_get_streams_in_bounded_chunks(make_store):
    store = make_store(chunk_size=64 * 1024)
    data = os.urandom(MIB + 123)
    store.put("pack", data)
    chunks = list(store.get("pack"))
    assert len(chunks) > 1
    assert max(len(chunk) for chunk in chunks) <= 64 * 1024
    assert b"".join(chunks) == data
    ranged = list(store.get("pack", offset=1000, length=200_000))
    assert max(len(chunk) for chunk in ranged) <= 64 * 1024
    assert b"".join(ranged) == data[1000:201_000]


def test_an_abandoned_read_can_be_closed(store):
    store.put("pack", os.urandom(3 * MIB))
    chunks = store.get("pack")
    next(iter(chunks))
    chunks.close()
    assert store.head("pack").size == 3 * MIB


def test_a_large_object_goes_in_parts_and_reads_back(make_store, store_kind, tmp_path):
    store = make_store(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    source = tmp_path / "large.bin"
    digest = hashlib.sha256()
    with open(source, "wb") as handle:
        for _ in range(20):
            block = os.urandom(MIB)
            digest.update(block)
            handle.write(block)
    with open(source, "rb") as handle:
        store.put("data/ff/large", handle, length=20 * MIB)
    assert store.head("data/ff/large").size == 20 * MIB
    read_back = hashlib.sha256()
    for chunk in store.get("data/ff/large"):
        read_back.update(chunk)
    assert read_back.hexdigest() == digest.hexdigest()
    if store_kind == "s3":
        etag = store.client.head_object(Bucket=store.bucket, Key=store._full_key("data/ff/large"))
        assert etag["ETag"].strip('"').endswith("-4")  # a multipart upload of four parts


# --- listing -------------------------------------------------------------------------

KEYS = [  # in the order every store lists them (see the listing rules in drd/stores/base.py)
    "config",
    "data/00/aa",
    "data/00/ab",
    "data/01/ba",
    "data0",
    "index/11",
    "keys/k1",
    "snapshots/s1",
]


def test_list_gives_every_key_in_order_with_sizes(store):
    for index, key in enumerate(reversed(KEYS)):
        store.put(key, b"x" * index)
    listed = list(store.list())
    assert [info.key for info in listed] == KEYS
    sizes = {info.key: info.size for info in listed}
    assert sizes == {key: index for index, key in enumerate(reversed(KEYS))}
    assert all(info.modified.tzinfo is not None for info in listed)


def test_list_by_prefix_is_a_string_prefix(store):
    for key in KEYS:
        store.put(key, b"x")
    assert [i.key for i in store.list("data/")] == ["data/00/aa", "data/00/ab", "data/01/ba"]
    assert [i.key for i in store.list("data")] == [
        "data/00/aa",
        "data/00/ab",
        "data/01/ba",
        "data0",
    ]
    assert [i.key for i in store.list("data/00/a")] == ["data/00/aa", "data/00/ab"]
    assert [i.key for i in store.list("nothing/")] == []
    assert [i.key for i in store.list("conf")] == ["config"]


def test_list_resumes_after_a_key(store):
    for key in KEYS:
        store.put(key, b"x")
    assert [i.key for i in store.list(start_after="data/00/ab")] == KEYS[3:]
    assert [i.key for i in store.list(start_after="data0")] == KEYS[5:]
    assert [i.key for i in store.list("data/", start_after="data/00/aa")] == [
        "data/00/ab",
        "data/01/ba",
    ]
    assert [i.key for i in store.list(start_after="zzz")] == []


def test_listing_resumes_consistently_whatever_the_order(make_store):
    # Where byte order and path order differ (a part continuing a sibling's name with a
    # character below '/'), each store keeps its own order, and resuming follows it.
    store = make_store(list_page_size=2)
    keys = ["a/b", "a!", "a-b", "a.c", "a0", "data/00/aa", "data-x", "data.y", "z"]
    for key in keys:
        store.put(key, b"")
    listed = [info.key for info in store.list()]
    assert sorted(listed) == sorted(keys)
    for position, key in enumerate(listed):
        assert [info.key for info in store.list(start_after=key)] == listed[position + 1 :]


def test_list_of_an_empty_store_is_empty(store):
    assert list(store.list()) == []


def test_list_pages_through_many_keys(make_store, store_kind, monkeypatch):
    store = make_store(list_page_size=7)
    keys = sorted(f"data/{n % 3:02x}/{n:04d}" for n in range(40))
    for key in keys:
        store.put(key, b"")
    if store_kind == "s3":
        pages = []
        list_page = store.client.list_objects_v2
        monkeypatch.setattr(
            store.client, "list_objects_v2", lambda **kw: pages.append(kw) or list_page(**kw)
        )
    assert [info.key for info in store.list()] == keys
    if store_kind == "s3":
        assert len(pages) == 6  # 40 keys, 7 a page
    assert [info.key for info in store.list("data/01/")] == [k for k in keys if "/01/" in k]


def test_the_store_prefix_hides_neighbours(seaweed_session):
    bucket = _bucket_name()
    inside = _s3_store(seaweed_session, bucket=bucket, prefix="department/system")
    neighbour = _s3_store(seaweed_session, bucket=bucket, prefix="department/system-2")
    inside.ensure_bucket()
    inside.put("config", b"mine")
    neighbour.put("config", b"theirs")
    assert [info.key for info in inside.list()] == ["config"]
    assert inside.read("config") == b"mine"


# --- delete --------------------------------------------------------------------------


def test_delete_removes_and_is_idempotent(store):
    store.put("locks/l1", b"lock")
    store.put("locks/l2", b"lock")
    store.delete("locks/l1")
    assert not store.exists("locks/l1")
    with pytest.raises(ObjectNotFound):
        store.read("locks/l1")
    store.delete("locks/l1")
    store.delete("never/there")
    assert [info.key for info in store.list()] == ["locks/l2"]


# --- copies --------------------------------------------------------------------------


def test_copy_between_stores_of_the_same_kind(make_store):
    source, target = make_store("source"), make_store("target")
    data = os.urandom(200_000)
    source.put("data/aa/obj", data)
    assert target.copy_from(source, "data/aa/obj") == len(data)
    assert target.read("data/aa/obj") == data
    with pytest.raises(ObjectNotFound):
        target.copy_from(source, "data/aa/missing")


def test_s3_to_s3_on_one_server_copies_server_side(seaweed_session, monkeypatch):
    source, target = _s3_store(seaweed_session, "src"), _s3_store(seaweed_session, "dst")
    source.ensure_bucket()
    target.ensure_bucket()
    data = os.urandom(100_000)
    source.put("index/abc", data)

    def no_streaming(*args, **kwargs):
        raise AssertionError("a copy on one S3 server must not stream through drd")

    monkeypatch.setattr(source, "get", no_streaming)
    assert RetryingStore(target).copy_from(RetryingStore(source), "index/abc") == len(data)
    monkeypatch.undo()
    assert target.read("index/abc") == data


def test_copy_s3_to_filesystem_and_back(seaweed_session, tmp_path):
    s3 = _s3_store(seaweed_session, "s3", multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    s3.ensure_bucket()
    directory = FilesystemStore("dir", tmp_path / "dir")
    directory.create_if_missing()
    data = os.urandom(6 * MIB)
    s3.put("data/01/one", data)
    assert directory.copy_from(s3, "data/01/one") == len(data)
    assert directory.read("data/01/one") == data
    directory.put("data/02/two", data[::-1])
    assert s3.copy_from(directory, "data/02/two") == len(data)
    assert s3.read("data/02/two") == data[::-1]
    # streamed in parts, not gathered into one PUT in memory
    head = s3.client.head_object(Bucket=s3.bucket, Key=s3._full_key("data/02/two"))
    assert head["ETag"].strip('"').endswith("-2")


def test_copy_between_two_s3_servers_streams(seaweed_session, seaweed):
    (other_server,) = seaweed(1)
    source = _s3_store(seaweed_session, "here")
    target = _s3_store(other_server, "there")
    source.ensure_bucket()
    target.ensure_bucket()
    source.put("snapshots/s", b"snapshot")
    assert target.copy_from(source, "snapshots/s") == 8
    assert target.read("snapshots/s") == b"snapshot"


# --- the store as a whole ------------------------------------------------------------


def test_check_passes_and_leaves_no_probe(make_store, store_kind):
    store = make_store("dc-check")
    result = store.check()
    assert result.name == "dc-check"
    assert result.object_lock is False
    assert result.seconds >= 0
    assert list(store.list()) == []
    if store_kind == "s3":
        assert list(store.list_versions()) == []


def test_missing_bucket_or_directory_raises_store_not_found(store_kind, seaweed_session, tmp_path):
    if store_kind == "s3":
        store = _s3_store(seaweed_session, "dc-gone")
    else:
        store = FilesystemStore("dc-gone", tmp_path / "not-there")
    for operation in (store.check, lambda: store.read("x"), lambda: store.head("x")):
        with pytest.raises(StoreNotFound, match="dc-gone"):
            operation()
    with pytest.raises(StoreNotFound):
        list(store.list())
    assert store.create_if_missing() is True
    assert store.create_if_missing() is False
    store.check()


def test_restic_location(make_store, store_kind, seaweed_session):
    store = make_store()
    repository, environment = store.restic_location("city/fileserver")
    if store_kind == "s3":
        assert repository == (
            f"s3:{seaweed_session.endpoint}/{store.bucket}/drd/tests/city/fileserver"
        )
        assert environment["AWS_ACCESS_KEY_ID"].reveal() == seaweed_session.access_key
        assert environment["AWS_SECRET_ACCESS_KEY"].reveal() == seaweed_session.secret_key
        assert environment["AWS_DEFAULT_REGION"].reveal() == "us-east-1"
        assert all(isinstance(value, Secret) for value in environment.values())
        assert seaweed_session.secret_key not in repr(store) + store.location
    else:
        assert repository == str(store.root / "city" / "fileserver")
        assert environment == {}


def test_open_store_opens_both_kinds(seaweed_session, tmp_path):
    bucket = _bucket_name()
    s3 = open_store(
        StoreSpec("dc-a", f"s3://{bucket}/prefix", endpoint=seaweed_session.endpoint),
        seaweed_session.access_key,
        seaweed_session.secret,
    )
    directory = open_store(StoreSpec("dc-b", (tmp_path / "b").as_uri()), None, None)
    for store in (s3, directory):
        assert isinstance(store, RetryingStore)
        store.create_if_missing()
        store.put("config", b"c")
        assert store.check().name == store.name
    assert s3.unwrap().prefix == "prefix"
    with pytest.raises(UserError, match="AWS_ACCESS_KEY_ID"):
        open_store(StoreSpec("dc-a", f"s3://{bucket}", endpoint=s3.unwrap().endpoint), None, None)


# --- S3: credentials, reachability --------------------------------------------------------


def test_a_wrong_secret_is_an_auth_error_naming_the_store_not_the_secret(seaweed_session):
    good = _s3_store(seaweed_session)
    good.ensure_bucket()
    wrong_secret = "wrong-" + seaweed_session.secret_key[:20]
    bad = S3Store(
        "dc-wrong-key",
        endpoint=seaweed_session.endpoint,
        bucket=good.bucket,
        access_key_id=seaweed_session.access_key,
        secret_access_key=Secret(wrong_secret),
        max_attempts=1,
    )
    with pytest.raises(StoreAuthError) as caught:
        bad.check()
    message = str(caught.value)
    assert "dc-wrong-key" in message and "\n" not in message
    assert wrong_secret not in message and seaweed_session.secret_key not in message
    with pytest.raises(StoreAuthError):
        bad.read("config")
    with pytest.raises(StoreAuthError):
        bad.put("config", b"x")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_endpoint_is_unavailable_quickly():
    port = _closed_port()
    spec = StoreSpec("dc-down", "s3://some-bucket/p", endpoint=f"http://127.0.0.1:{port}")
    store = open_store(
        spec,
        "AKIDEXAMPLE",
        Secret("not-a-real-secret"),
        retry_attempts=2,
        retry_backoff=0.01,
        connect_timeout=1,
        read_timeout=2,
    )
    started = time.monotonic()
    for operation in (store.check, lambda: store.read("config"), lambda: store.put("k", b"x")):
        with pytest.raises(StoreUnavailable) as caught:
            operation()
        assert str(caught.value) == (
            f"store 'dc-down': cannot reach http://127.0.0.1:{port} (connection refused)"
        )
    with pytest.raises(StoreUnavailable):
        list(store.list())
    assert time.monotonic() - started < 10


@contextlib.contextmanager
def _silent_server() -> Iterator[str]:
    """An endpoint on 127.0.0.1 that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(connection)

    thread = threading.Thread(target=accept, name="silent-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for connection in held:
            connection.close()
        listener.close()


def test_a_server_that_never_answers_fails_the_check_in_bounded_time():
    # As drd store check opens a store: the default timeouts, retries of its own.
    with _silent_server() as endpoint:
        spec = StoreSpec("dc-mute", "s3://some-bucket/p", endpoint=endpoint)
        store = open_store(
            spec, "AKIDEXAMPLE", Secret("not-a-real-secret"), retry_attempts=2, retry_backoff=0.5
        )
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="dc-mute") as caught:
            store.check()
        assert time.monotonic() - started < 40
    assert f"no answer within 10 s from {endpoint}" in str(caught.value)


def test_a_wrong_endpoint_is_hinted_at_not_reported_as_a_missing_object(seaweed_session):
    # The filer's port is no S3 server: it answers a bare 404, or JSON instead of XML.
    endpoint = f"http://127.0.0.1:{seaweed_session.port_base + 2}"
    store = S3Store(
        "dc-wrong-port",
        endpoint=endpoint,
        bucket=_bucket_name(),
        access_key_id=seaweed_session.access_key,
        secret_access_key=seaweed_session.secret,
        max_attempts=1,
    )
    for operation in (store.check, lambda: list(store.list()), lambda: store.head("config")):
        with pytest.raises(StoreNotFound) as caught:
            operation()
        message = str(caught.value)
        assert "None" not in message and "object" not in message
        assert f"bucket {store.bucket!r} not found at {endpoint}" in message
        assert "endpoint is not the right server" in message
    with pytest.raises(StoreError, match="not as an S3 server"):
        store.ensure_bucket()


# --- Object Lock ---------------------------------------------------------------------


def test_object_lock_refuses_deleting_a_locked_version(seaweed_session):
    store = _s3_store(seaweed_session, "dc-immutable")
    assert store.ensure_bucket(object_lock=True) is True
    assert store.supports_object_lock is True
    assert store.check().object_lock is True
    until = datetime.now(UTC) + timedelta(days=1)
    store.put("data/aa/locked", b"immutable bytes", retain_until=until)
    info = store.head("data/aa/locked")
    assert info.version_id is not None
    assert info.retain_until is not None and info.retain_until >= until - timedelta(seconds=1)

    with pytest.raises(ObjectLocked, match="dc-immutable"):
        store.delete_version("data/aa/locked", info.version_id)
    assert store.read("data/aa/locked") == b"immutable bytes"

    # a plain delete only hides the object behind a delete marker; the version stays locked
    store.delete("data/aa/locked")
    assert not store.exists("data/aa/locked")
    versions = [v for v in store.list_versions() if not v.is_delete_marker]
    assert [v.version_id for v in versions] == [info.version_id]
    with pytest.raises(ObjectLocked):
        store.delete_version("data/aa/locked", info.version_id)
    assert store.head_version("data/aa/locked", info.version_id).size == len(b"immutable bytes")


def test_an_unlocked_version_on_a_lock_bucket_can_be_deleted(seaweed_session):
    store = _s3_store(seaweed_session)
    store.ensure_bucket(object_lock=True)
    store.put("locks/l1", b"restic lock")
    store.delete_version("locks/l1", store.head("locks/l1").version_id)
    assert list(store.list_versions()) == []


def test_object_lock_cannot_be_asked_where_there_is_none(store, seaweed_session, store_kind):
    until = datetime.now(UTC) + timedelta(days=1)
    with pytest.raises(ObjectLockUnsupported):
        store.put("k", b"x", retain_until=until)
    assert not store.exists("k")
    with pytest.raises(ValueError, match="timezone-aware"):
        store.put("k", b"x", retain_until=datetime.now() + timedelta(days=1))  # noqa: DTZ005
    if store_kind == "s3":
        with pytest.raises(ObjectLockUnsupported, match="only be enabled when a bucket is created"):
            store.ensure_bucket(object_lock=True)
    else:
        with pytest.raises(ObjectLockUnsupported):
            store.create_if_missing(object_lock=True)


def test_copy_into_a_lock_bucket_keeps_a_retention(seaweed_session, tmp_path):
    locked = _s3_store(seaweed_session, "locked")
    locked.ensure_bucket(object_lock=True)
    directory = FilesystemStore("dir", tmp_path)
    directory.put("data/bb/x", b"payload")
    until = datetime.now(UTC) + timedelta(hours=2)
    locked.copy_from(directory, "data/bb/x", retain_until=until)
    assert locked.head("data/bb/x").retain_until is not None
    plain = _s3_store(seaweed_session, "plain", bucket=locked.bucket, prefix="other")
    plain.copy_from(locked, "data/bb/x", retain_until=until)  # server-side, same server
    copied = plain.head("data/bb/x")
    assert copied.retain_until is not None
    with pytest.raises(ObjectLocked):
        plain.delete_version("data/bb/x", copied.version_id)
    # between buckets SeaweedFS drops the lock headers of a server-side copy: drd streams
    other = _s3_store(seaweed_session, "other")
    other.ensure_bucket()
    other.put("data/bb/y", b"payload")
    locked.copy_from(other, "data/bb/y", retain_until=until)
    assert locked.head("data/bb/y").retain_until is not None


# --- create-only puts (systems' keys on stores that refuse overwrites) ----------------


def test_a_create_only_put_never_replaces_an_object(store):
    store.put("data/ab/one", b"first", create_only=True)
    with pytest.raises(ObjectExists):
        store.put("data/ab/one", b"second", create_only=True)
    with pytest.raises(ObjectExists):  # even the same bytes: the caller asked to create
        store.put("data/ab/one", b"first", create_only=True)
    assert store.read("data/ab/one") == b"first"
    store.put("data/ab/one", b"replaced")  # a plain put still replaces
    assert store.read("data/ab/one") == b"replaced"


def test_a_create_only_stream_put_never_replaces_an_object(store):
    store.put("index/big", io.BytesIO(b"x" * 3000), length=3000, create_only=True)
    with pytest.raises(ObjectExists):
        store.put("index/big", io.BytesIO(b"y" * 3000), length=3000, create_only=True)
    assert store.read("index/big") == b"x" * 3000


@pytest.mark.parametrize("store_kind", ["s3"], indirect=True)
def test_a_write_once_store_counts_the_same_bytes_as_written_and_refuses_others(
        make_store, store_kind):
    plain = make_store()
    once = S3Store("once", endpoint=plain.endpoint, bucket=plain.bucket, prefix=plain.prefix,
                   access_key_id=plain.access_key_id, secret_access_key=plain._secret,
                   overwritable=("locks/",), multipart_threshold=5 * MIB,
                   multipart_chunksize=5 * MIB)
    once.put("data/cd/pack", b"pack bytes")
    once.put("data/cd/pack", b"pack bytes")  # a retry after the first put landed
    with pytest.raises(ObjectExists):
        once.put("data/cd/pack", b"other bytes")
    once.put("locks/l1", b"a")
    once.put("locks/l1", b"b")  # restic's locks may be replaced
    assert once.read("locks/l1") == b"b"
    large = os.urandom(11 * MIB)  # create-only through its own multipart upload
    once.put("data/ef/large", large)
    once.put("data/ef/large", large)
    with pytest.raises(ObjectExists):
        once.put("data/ef/large", io.BytesIO(large), length=len(large))
    assert once.read("data/ef/large") == large
