"""The replication plan: what to copy where (pure; no I/O)."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from drd.replication.plan import PlannedCopy, StoreLag, plan_replication


def data_key(seed: str) -> str:
    digest = hashlib.sha256(seed.encode()).hexdigest()
    return f"data/{digest[:2]}/{digest}"


def index_key(seed: str) -> str:
    return f"index/{hashlib.sha256(seed.encode()).hexdigest()}"


A, B, C = data_key("a"), data_key("b"), index_key("c")
LOCK = f"locks/{hashlib.sha256(b'lock').hexdigest()}"


def apply(plan, listings):
    """The stores' contents after the plan's copies, applied in order; each copy checks
    that its source holds the key at the planned size (as a real copy would)."""
    state = {name: dict(listing) for name, listing in listings.items() if listing is not None}
    for copy in plan.copies:
        assert state[copy.source].get(copy.key) == copy.size, copy
        state[copy.target][copy.key] = copy.size
    return state


def test_a_store_that_lacks_objects_gets_them_from_the_first_store_in_order():
    listings = {"a": {A: 10, B: 20, "config": 5}, "b": {A: 10, B: 20, "config": 5},
                "c": {A: 10}}
    plan = plan_replication(listings, order=["a", "b", "c"], records={"config": 5})
    assert plan.copies == (
        PlannedCopy(B, 20, "a", "c", alternatives=("b",)),
        PlannedCopy("config", 5, "a", "c", alternatives=("b",)),
    )
    assert plan.lag == {"a": StoreLag(0, 0), "b": StoreLag(0, 0), "c": StoreLag(2, 25)}
    assert plan.union == {A: 10, B: 20, "config": 5}
    assert plan.total_bytes == 25


def test_snapshots_come_last_and_packs_first():
    snapshot = f"snapshots/{hashlib.sha256(b's').hexdigest()}"
    key = f"keys/{hashlib.sha256(b'k').hexdigest()}"
    listings = {"a": {snapshot: 1, "config": 1, key: 1, C: 1, A: 1}, "b": {}}
    plan = plan_replication(listings, order=["a", "b"], records={"config": 1})
    assert [copy.key for copy in plan.copies] == [A, C, key, "config", snapshot]


def test_the_policy_order_decides_the_source():
    plan = plan_replication({"a": {A: 1}, "b": {A: 1}, "c": {}}, order=["b", "a", "c"])
    assert [(c.source, c.target) for c in plan.copies] == [("b", "c")]


def test_a_down_store_is_neither_source_nor_target():
    plan = plan_replication({"a": {A: 1}, "b": {}, "c": None}, order=["c", "a", "b"])
    assert [(c.source, c.target) for c in plan.copies] == [("a", "b")]
    assert plan.down == ("c",)
    assert "c" not in plan.lag


def test_only_the_targets_receive_copies_the_others_are_sources():
    plan = plan_replication({"a": {A: 1}, "b": {}, "c": {}}, order=["a", "b", "c"],
                            targets={"c"})
    assert [(c.source, c.target) for c in plan.copies] == [("a", "c")]
    assert set(plan.lag) == {"c"}


def test_locks_untracked_and_tombstoned_keys_are_never_copied():
    listings = {"a": {A: 1, B: 2, LOCK: 3, "stray.txt": 4, "data/zz/nothex": 5}, "b": {}}
    plan = plan_replication(listings, order=["a", "b"], tombstoned={B})
    assert [c.key for c in plan.copies] == [A]
    assert plan.union == {A: 1}
    assert plan.lag["b"] == StoreLag(1, 1)


def test_a_store_in_the_same_copy_group_is_preferred_even_if_it_gets_the_key_first():
    # a and b share an endpoint; c (elsewhere) holds the key: one streamed copy to a,
    # then a server-side copy from a to b
    plan = plan_replication({"a": {}, "b": {}, "c": {A: 7}}, order=["a", "b", "c"],
                            copy_groups={"a": "s1", "b": "s1", "c": "s2"})
    assert plan.copies == (
        PlannedCopy(A, 7, "c", "a"),
        PlannedCopy(A, 7, "a", "b", alternatives=("c",), server_side=True),
    )


def test_a_source_in_the_same_group_wins_over_the_policy_order():
    plan = plan_replication({"a": {A: 7}, "b": {A: 7}, "c": {}}, order=["a", "b", "c"],
                            copy_groups={"a": "s1", "b": "s2", "c": "s2"})
    assert plan.copies == (PlannedCopy(A, 7, "b", "c", alternatives=("a",),
                                       server_side=True),)


def test_the_minority_size_is_a_conflict_and_is_replaced():
    plan = plan_replication({"a": {A: 5}, "b": {A: 9}, "c": {A: 9}}, order=["a", "b", "c"])
    (conflict,) = plan.conflicts
    assert conflict.key == A and conflict.size == 9 and conflict.corrupt == ("a",)
    assert plan.copies == (PlannedCopy(A, 9, "b", "a", alternatives=("c",), replaces=True),)
    assert plan.lag["a"] == StoreLag(1, 9)


def test_a_copy_known_corrupt_is_no_source_and_is_replaced():
    plan = plan_replication({"a": {A: 5}, "b": {A: 5}}, order=["a", "b"],
                            corrupt={"a": {A}})
    assert plan.copies == (PlannedCopy(A, 5, "b", "a", replaces=True),)
    assert not plan.conflicts


def test_corrupt_copies_do_not_vote_on_the_size():
    plan = plan_replication({"a": {A: 5}, "b": {A: 5}, "c": {A: 9}}, order=["a", "b", "c"],
                            corrupt={"a": {A}, "b": {A}})
    assert plan.union[A] == 9
    assert {(c.source, c.target) for c in plan.copies} == {("c", "a"), ("c", "b")}


def test_a_key_with_no_good_copy_is_unsourced_but_counted_as_lag():
    plan = plan_replication({"a": {A: 5}, "b": {}}, order=["a", "b"], corrupt={"a": {A}})
    assert plan.copies == ()
    assert plan.unsourced == {A: 5}
    assert plan.lag == {"a": StoreLag(1, 5), "b": StoreLag(1, 5)}


def test_a_tie_in_sizes_goes_to_the_first_store_in_order():
    plan = plan_replication({"a": {A: 5}, "b": {A: 9}}, order=["b", "a"])
    assert plan.union[A] == 9
    assert plan.copies == (PlannedCopy(A, 9, "b", "a", replaces=True),)


def test_no_store_listed_means_nothing_to_do():
    plan = plan_replication({"a": None, "b": None}, order=["a", "b"])
    assert plan.copies == () and plan.union == {} and plan.down == ("a", "b")


# --- objects not named by their hash: the record decides, never the copies ---------------

MANIFEST = f"drd/manifests/{hashlib.sha256(b'm').hexdigest()}.json"


def test_a_recorded_size_outweighs_any_number_of_forged_copies():
    listings = {"a": {"config": 7, A: 1}, "b": {"config": 7, A: 1}, "vault": {"config": 5}}
    plan = plan_replication(listings, order=["a", "b", "vault"], records={"config": 5})
    assert [(c.key, c.source, c.target, c.replaces) for c in plan.copies] == [
        (A, "a", "vault", False), ("config", "vault", "a", True),
        ("config", "vault", "b", True)]
    (conflict,) = plan.conflicts
    assert conflict.size == 5 and conflict.corrupt == ("a", "b")
    assert plan.union["config"] == 5


def test_copies_all_of_one_wrong_size_are_a_conflict_with_no_source():
    plan = plan_replication({"a": {"config": 7}, "b": {"config": 7}, "c": {}},
                            order=["a", "b", "c"], records={"config": 5})
    assert plan.copies == () and plan.unsourced == {"config": 5}
    assert plan.conflicts[0].corrupt == ("a", "b")
    assert plan.lag["c"] == StoreLag(1, 5)


def test_a_key_not_named_by_its_hash_without_a_record_is_never_copied():
    listings = {"a": {"config": 5, MANIFEST: 9, A: 1}, "b": {"config": 5, MANIFEST: 9},
                "c": {}}
    plan = plan_replication(listings, order=["a", "b", "c"])
    assert [c.key for c in plan.copies] == [A, A]
    assert plan.unrecorded == {"config": ("a", "b"), MANIFEST: ("a", "b")}
    assert "config" not in plan.union and MANIFEST not in plan.union
    # a store without config is no repository: it lags; a manifest is drd's own
    assert plan.lag["c"] == StoreLag(2, 1) and plan.lag["b"] == StoreLag(1, 1)


def test_a_recorded_manifest_is_copied_from_a_copy_of_its_recorded_size():
    listings = {"a": {MANIFEST: 3}, "b": {MANIFEST: 9}, "c": {}}
    plan = plan_replication(listings, order=["a", "b", "c"], records={MANIFEST: 9})
    assert [(c.source, c.target, c.replaces) for c in plan.copies] == [
        ("b", "a", True), ("b", "c", False)]


# --- properties ------------------------------------------------------------------------

STORES = ["s0", "s1", "s2", "s3"]
KEYS = [data_key(str(n)) for n in range(6)] + [index_key("i"), "config", LOCK]
RECORDS = {"config": 2}
listing = st.dictionaries(st.sampled_from(KEYS), st.integers(0, 3), max_size=len(KEYS))
listings_strategy = st.fixed_dictionaries(
    {name: st.one_of(st.none(), listing) for name in STORES})
groups_strategy = st.fixed_dictionaries(
    {name: st.sampled_from([None, "g1", "g2"]) for name in STORES})


@settings(max_examples=300, deadline=None)
@given(listings_strategy, groups_strategy, st.permutations(STORES),
       st.sets(st.sampled_from(KEYS), max_size=3))
def test_applied_in_order_every_listed_store_holds_the_union(listings, groups, order,
                                                            tombstoned):
    plan = plan_replication(listings, order=order, copy_groups=groups, tombstoned=tombstoned,
                            records=RECORDS)
    after = apply(plan, listings)
    for name, content in after.items():
        for key, size in plan.union.items():
            # config with no copy of its recorded size: nowhere to copy it from
            assert content.get(key) == size or key in plan.unsourced, (name, key)
    assert set(plan.unsourced) <= {"config"}
    assert all(key not in tombstoned and not key.startswith("locks/") for key in plan.union)
    assert all(copy.source != copy.target for copy in plan.copies)
    assert all(listings[copy.target] is not None for copy in plan.copies)
    for name in plan.lag:
        copies = plan.copies_to(name)
        stuck = [key for key, size in plan.unsourced.items()
                 if listings[name].get(key) != size]
        assert plan.lag[name] == StoreLag(len(copies) + len(stuck),
                                          sum(c.size for c in copies)
                                          + sum(plan.unsourced[key] for key in stuck))
    # a second pass over the result has nothing left to do
    again = plan_replication({name: after.get(name) for name in listings}, order=order,
                             copy_groups=groups, tombstoned=tombstoned, records=RECORDS)
    assert again.copies == () and {c.key for c in again.conflicts} <= set(plan.unsourced)


@settings(max_examples=200, deadline=None)
@given(listings_strategy, st.permutations(STORES),
       st.fixed_dictionaries({name: st.sets(st.sampled_from(KEYS), max_size=4)
                              for name in STORES}))
def test_no_copy_comes_from_a_copy_known_corrupt(listings, order, corrupt):
    plan = plan_replication(listings, order=order, corrupt=corrupt, records=RECORDS)
    for copy in plan.copies:
        if copy.source in corrupt and copy.key in corrupt[copy.source]:
            # only a store this plan copied good bytes to first may serve (same group)
            assert copy.server_side
    for copy in plan.copies:
        for name in copy.alternatives:
            assert copy.key not in corrupt.get(name, ())
    for key in plan.unsourced:
        assert all(key in corrupt.get(name, ()) or listing.get(key) != plan.union[key]
                   for name, listing in listings.items() if listing and key in listing)
