"""The store interface's versions (drd/stores/base.py, "Versions") on real stores: an S3
bucket with Object Lock on SeaweedFS, a bucket without versioning, a directory; and a
version brought back as the current one (drd.repair.versions.bring_back)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from drd.repair.decide import Expected, histories
from drd.repair.versions import VersionMismatch, bring_back, key_history, newest_good
from drd.stores import FilesystemStore, ObjectNotFound, RetryingStore
from drd.stores.s3 import S3Store

pytestmark = pytest.mark.integration

KEY = "data/aa/aa" + "0" * 62


def s3_store(server, *, object_lock: bool) -> RetryingStore:
    store = S3Store("versions", endpoint=server.endpoint,
                    bucket=f"versions-{uuid.uuid4().hex[:12]}", prefix="city/parks/fs1",
                    access_key_id=server.access_key, secret_access_key=server.secret)
    store.ensure_bucket(object_lock=object_lock)
    return RetryingStore(store, attempts=2, backoff=0.01)


def test_a_locked_bucket_lists_versions_newest_first_and_reads_past_a_marker(seaweed_session):
    store = s3_store(seaweed_session, object_lock=True)
    until = datetime.now(UTC) + timedelta(days=1)
    store.put(KEY, b"the good bytes", retain_until=until)
    store.put(KEY, b"ransom")
    store.put("config", b"other key")
    store.delete(KEY)

    assert store.keeps_versions
    entries = [entry for entry in store.list_versions() if entry.key == KEY]
    history = histories(entries)[KEY]
    assert history.hidden and history.current is None
    assert [store.unwrap().head_version(KEY, v.version_id).size for v in history.versions] \
        == [len(b"ransom"), len(b"the good bytes")]
    (marker,) = history.markers
    assert marker.is_latest and marker.size == 0
    good = history.versions[1]
    assert b"".join(store.get_version(KEY, good.version_id)) == b"the good bytes"
    assert b"".join(store.get_version(KEY, good.version_id, offset=4, length=4)) == b"good"
    with pytest.raises(ObjectNotFound):
        store.get_version(KEY, None)  # the current entry is the marker
    with pytest.raises(ObjectNotFound):
        store.get_version(KEY, marker.version_id)
    assert key_history(store, KEY) == history


def test_a_version_comes_back_with_a_retention_of_its_own_and_the_marker_stays(
        seaweed_session):
    store = s3_store(seaweed_session, object_lock=True)
    soon = datetime.now(UTC) + timedelta(hours=1)
    data = b"the good bytes"
    name = "data/" + _sha(data)[:2] + "/" + _sha(data)
    store.put(name, data, retain_until=soon)
    store.delete(name)
    found = newest_good(store, "versions", name, Expected(_sha(data)))
    assert found.choice.action == "restore" and found.choice.reason == "hidden"

    later = datetime.now(UTC) + timedelta(days=2)
    assert bring_back(store, store, name, found.version, Expected(_sha(data)), later) \
        == len(data)

    assert store.read(name) == data
    # the copy's own retention, not the hour left to the version it came from (a
    # server-side copy on SeaweedFS would have kept that)
    assert store.head(name).retain_until >= later - timedelta(seconds=1)
    after = key_history(store, name)
    assert not after.hidden and len(after.versions) == 2 and len(after.markers) == 1
    # a second look finds the current version good: nothing to bring back
    assert newest_good(store, "versions", name, Expected(_sha(data))).choice.action == "keep"


def test_bytes_that_are_not_what_they_must_be_are_never_brought_back(seaweed_session):
    store = s3_store(seaweed_session, object_lock=True)
    store.put(KEY, b"not the bytes the name says")
    store.delete(KEY)
    (version,) = key_history(store, KEY).versions
    with pytest.raises(VersionMismatch):
        bring_back(store, store, KEY, version, Expected("a" * 64), None)
    assert not store.exists(KEY)  # nothing was committed


def test_stores_without_versions_have_one_version_per_object(seaweed_session, tmp_path):
    plain = s3_store(seaweed_session, object_lock=False)
    directory = FilesystemStore("dir", tmp_path)
    for store in (plain, directory):
        store.put(KEY, b"bytes")
        store.put(KEY, b"newer")
        assert not store.keeps_versions
        (entry,) = store.list_versions()
        assert (entry.key, entry.version_id, entry.size, entry.is_latest,
                entry.is_delete_marker) == (KEY, None, 5, True, False)
        assert b"".join(store.get_version(KEY, None)) == b"newer"
        assert not key_history(store, KEY).needs_look


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
