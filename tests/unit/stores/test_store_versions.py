"""The store interface's versions: the default for stores without them, and RetryingStore
resuming version listings and reads of a version."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from drd.stores import ObjectNotFound, RetryingStore, StoreUnavailable
from drd.stores.base import ObjectVersion
from tests.unit.stores.test_store_retry import MOMENT, InMemoryFakeStore


class VersionedFakeStore(InMemoryFakeStore):
    """The fake store with a version history per key: ``history[key]`` lists
    ``(version_id, bytes or None for a delete marker)``, newest first."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[tuple[str, bytes | None]]] = {}
        self.break_versions_after: int | None = None

    @property
    def keeps_versions(self) -> bool:
        self._maybe_fail("keeps_versions")
        return True

    def list_versions(self, prefix: str = "") -> Iterator[ObjectVersion]:
        self._maybe_fail("list_versions", prefix)
        yielded = 0
        for key in sorted(self.history):
            if not key.startswith(prefix):
                continue
            for index, (vid, data) in enumerate(self.history[key]):
                if self.break_versions_after is not None \
                        and yielded >= self.break_versions_after:
                    self.break_versions_after = None
                    raise StoreUnavailable(self.name, "listing broke off")
                yielded += 1
                yield ObjectVersion(key, vid, len(data or b""), MOMENT, index == 0,
                                    data is None)

    def get_version(self, key, version_id, *, offset=0, length=None) -> Iterator[bytes]:
        self._maybe_fail("get_version", key, version_id, offset, length)
        for vid, data in self.history.get(key, []):
            if vid == version_id and data is not None:
                end = None if length is None else offset + length
                return self._chunks(data[offset:end])
        raise ObjectNotFound(self.name, f"{key!r} has no version {version_id}", key=key)


def retrying(store, attempts: int = 3) -> RetryingStore:
    return RetryingStore(store, attempts=attempts, backoff=0.01, sleep=lambda _: None)


def test_a_store_without_versions_has_one_version_per_object_its_current_one():
    store = InMemoryFakeStore()
    store.objects = {"data/aa/x": b"one", "config": b"two"}
    assert not store.keeps_versions
    versions = list(store.list_versions("data/"))
    assert [(v.key, v.version_id, v.size, v.is_latest, v.is_delete_marker)
            for v in versions] == [("data/aa/x", None, 3, True, False)]
    assert b"".join(store.get_version("config", None)) == b"two"
    with pytest.raises(ObjectNotFound, match="keeps no versions"):
        store.get_version("config", "v1")


def test_retrying_store_resumes_a_broken_version_listing_without_repeats():
    store = VersionedFakeStore()
    store.history = {"a": [("a2", None), ("a1", b"x")], "b": [("b1", b"yy")],
                     "c": [("c2", b"new"), ("c1", b"old")]}
    store.break_versions_after = 3
    store.failures["list_versions"] = [StoreUnavailable("fake", "refused")]
    listed = [(v.key, v.version_id) for v in retrying(store).list_versions()]
    assert listed == [("a", "a2"), ("a", "a1"), ("b", "b1"), ("c", "c2"), ("c", "c1")]


def test_retrying_store_gives_up_a_version_listing_after_its_attempts():
    store = VersionedFakeStore()
    store.history = {"a": [("a1", b"x")]}
    store.failures["list_versions"] = [StoreUnavailable("fake", "refused")] * 3
    with pytest.raises(StoreUnavailable):
        list(retrying(store).list_versions())


def test_retrying_store_resumes_a_broken_read_of_a_version_where_it_stopped():
    store = VersionedFakeStore()
    store.history = {"k": [("v2", b"bad!"), ("v1", b"the good bytes")]}
    store.break_read_after = 4
    chunks = list(retrying(store).get_version("k", "v1"))
    assert b"".join(chunks) == b"the good bytes"
    reads = [call for call in store.calls if call[0] == "get_version"]
    assert reads == [("get_version", "k", "v1", 0, None), ("get_version", "k", "v1", 4, None)]


def test_retrying_store_passes_answers_through_and_asks_keeps_versions_again():
    store = VersionedFakeStore()
    with pytest.raises(ObjectNotFound):
        retrying(store).get_version("k", "nope")
    store.failures["keeps_versions"] = [StoreUnavailable("fake", "refused")]
    assert retrying(store).keeps_versions
