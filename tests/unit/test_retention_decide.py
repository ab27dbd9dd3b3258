"""The retention decision: restic's rules, and the protections that always win."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from drd.retention.decide import (
    LOCK_SAFETY_MARGIN,
    NEWEST_GOOD_REASON,
    UNCONFIRMED_REASON,
    UNREPORTED_REASON,
    SnapshotFacts,
    check_found_missing,
    decide,
    deletion_order,
    fresh_locks,
    lacking,
    lock_until,
    pick_store,
    resurrection,
    rules_text,
    snapshot_ids,
    snapshots_since,
)
from policies.schema import Retention

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


def snap(name: str, days_ago: float, **facts) -> SnapshotFacts:
    return SnapshotFacts(id=name.ljust(64, "0"), time=NOW - dt.timedelta(days=days_ago),
                         **facts)


def ids(snapshots) -> list[str]:
    return [s.id[:2] for s in snapshots]


def test_rules_alone_keep_last_one():
    snapshots = [snap("a1", 3), snap("b2", 2), snap("c3", 1, good=True)]
    decision = decide(snapshots, Retention(keep_last=1), NOW)
    assert ids(decision.keep) == ["c3"]
    assert ids(decision.remove) == ["b2", "a1"]
    assert decision.reasons[snapshots[2].id] == ["last snapshot", NEWEST_GOOD_REASON]
    assert decision.reasons[snapshots[0].id] == ["no rule keeps it (keep_last 1)"]
    assert decision.remove_ids == [snapshots[1].id, snapshots[0].id]


def test_object_lock_protects_young_snapshots():
    snapshots = [snap("a1", 30), snap("b2", 6), snap("c3", 1, good=True)]
    decision = decide(snapshots, Retention(keep_last=1), NOW, object_lock_days=7)
    assert ids(decision.keep) == ["c3", "b2"]
    assert ids(decision.remove) == ["a1"]
    (reason,) = decision.reasons[snapshots[1].id]
    assert reason == "object lock holds until 2026-11-28T13:00:00Z"


def test_object_lock_safety_margin():
    just_expired = snap("a1", 7)  # lock ends now, the margin holds it a little longer
    well_expired = SnapshotFacts(id="b2".ljust(64, "0"),
                                 time=NOW - dt.timedelta(days=7) - LOCK_SAFETY_MARGIN)
    newest = snap("c3", 0, good=True)
    decision = decide([just_expired, well_expired, newest], Retention(keep_last=1), NOW,
                      object_lock_days=7)
    assert ids(decision.keep) == ["c3", "a1"]
    assert ids(decision.remove) == ["b2"]
    assert lock_until(well_expired, 7) == NOW
    assert lock_until(well_expired, 0) is None


def test_newest_good_backup_is_kept_even_when_rules_drop_it():
    # the newest snapshots are partial or not yet durable: keep_last keeps them, and
    # the newest good backup, older, stays too
    snapshots = [snap("a1", 5, good=True), snap("b2", 4, good=True), snap("c3", 1),
                 snap("d4", 0)]
    decision = decide(snapshots, Retention(keep_last=2), NOW)
    assert ids(decision.keep) == ["d4", "c3", "b2"]
    assert decision.reasons[snapshots[1].id] == [NEWEST_GOOD_REASON]
    assert ids(decision.remove) == ["a1"]


def test_snapshot_a_drill_needs_is_kept():
    snapshots = [snap("a1", 9, drills=(12, 14)), snap("b2", 1, good=True)]
    decision = decide(snapshots, Retention(keep_last=1), NOW)
    assert ids(decision.keep) == ["b2", "a1"]
    assert decision.reasons[snapshots[0].id] == ["needed by drill 12", "needed by drill 14"]
    assert decision.remove == []


def test_unreported_snapshot_is_kept():
    snapshots = [snap("a1", 9, reported=False), snap("b2", 1, good=True)]
    decision = decide(snapshots, Retention(keep_last=1), NOW)
    assert decision.reasons[snapshots[0].id] == [UNREPORTED_REASON]
    assert decision.remove == []


def test_an_unconfirmed_newer_report_never_costs_the_confirmed_one_its_protection():
    # keep_last 1 keeps the newest, an unconfirmed report (not a good backup): the
    # newest confirmed good backup stays protected, the unconfirmed one is judged later
    snapshots = [snap("a1", 3, good=True), snap("b2", 1, good=True),
                 snap("c3", 0, confirmed=False)]
    decision = decide(snapshots, Retention(keep_last=1), NOW)
    assert decision.reasons[snapshots[1].id] == [NEWEST_GOOD_REASON]
    assert decision.reasons[snapshots[2].id] == ["last snapshot", UNCONFIRMED_REASON]
    assert ids(decision.remove) == ["a1"]
    # older than what the rules keep, it still waits for its confirmation
    later = decide([snap("a1", 3, confirmed=False), snap("b2", 1, good=True)],
                   Retention(keep_last=1), NOW)
    assert later.reasons["a1".ljust(64, "0")] == [UNCONFIRMED_REASON]
    assert later.remove == []


def test_protections_add_to_rule_reasons():
    snapshots = [snap("a1", 1, good=True, drills=(3,))]
    decision = decide(snapshots, Retention(keep_daily=7), NOW, object_lock_days=7)
    assert decision.reasons[snapshots[0].id] == [
        "daily snapshot", "object lock holds until 2026-12-03T13:00:00Z",
        NEWEST_GOOD_REASON, "needed by drill 3"]


def test_no_rules_keep_everything():
    snapshots = [snap("a1", 400), snap("b2", 1)]
    decision = decide(snapshots, Retention(), NOW)
    assert decision.remove == []
    assert decision.reasons[snapshots[0].id] == ["no retention rules"]


def test_no_snapshots():
    decision = decide([], Retention(keep_last=1), NOW)
    assert decision.keep == [] and decision.remove == [] and decision.reasons == {}


def test_as_dict_lists_both_sides_with_reasons():
    snapshots = [snap("a1", 3), snap("b2", 1, good=True)]
    data = decide(snapshots, Retention(keep_last=1), NOW).as_dict()
    assert [entry["short_id"] for entry in data["keep"]] == ["b20000000"[:8]]
    assert data["forget"][0]["reasons"] == ["no rule keeps it (keep_last 1)"]
    assert data["forget"][0]["time"] == snapshots[0].time


def test_rules_text():
    assert rules_text(Retention(keep_last=2, keep_daily=7,
                                keep_within=dt.timedelta(days=2))) \
        == "keep_last 2, keep_daily 7, keep_within 2d"
    assert rules_text(Retention()) == "no retention rules"


def test_naive_now_is_refused():
    with pytest.raises(ValueError):
        decide([snap("a1", 1)], Retention(keep_last=1), NOW.replace(tzinfo=None))


@dataclass(frozen=True)
class FakeStore:
    store_id: int
    name: str


A, B, C = FakeStore(1, "dc-a"), FakeStore(2, "dc-b"), FakeStore(3, "far")


def test_pick_store_takes_the_first_complete_store():
    listings = {1: {"config", "data/ab/ab1"}, 2: {"config", "data/ab/ab1"}, 3: {"config"}}
    assert pick_store([A, B, C], listings, set(), {}) == (A, [])


def test_pick_store_skips_a_store_that_lacks_objects_or_cannot_be_listed():
    listings = {1: None, 2: {"config"}, 3: {"config", "index/" + "1" * 64}}
    chosen, refusals = pick_store([A, B, C], listings, set(), {})
    assert chosen == C
    assert refusals == ["dc-a cannot be listed",
                        "dc-b lacks 1 objects that another store holds (replication is behind)"]


def test_pick_store_ignores_tombstoned_keys():
    # after a prune of dc-a the other store still holds what prune removed
    listings = {1: {"config", "index/new"}, 2: {"config", "index/old"}}
    assert pick_store([B, A], listings, {"index/old"}, {})[0] == A


def test_pick_store_refuses_a_store_whose_watermark_is_behind():
    listings = {1: {"config"}, 2: {"config"}}
    marks = {1: NOW - dt.timedelta(hours=2), 2: NOW}
    chosen, refusals = pick_store([A, B], listings, set(), marks)
    assert chosen == B and refusals == ["dc-a's replication watermark is behind"]
    assert pick_store([A, B], listings, set(), {1: None, 2: NOW})[0] == B


def test_pick_store_with_no_store_qualifying():
    chosen, refusals = pick_store([A, B], {1: None, 2: None}, set(), {})
    assert chosen is None and len(refusals) == 2


# -- the guard before pruned objects leave the other stores --------------------------------

PRUNED_AT = NOW - dt.timedelta(hours=2)


def test_no_snapshot_since_the_prune_needs_no_check():
    reported = {"a" * 64: PRUNED_AT - dt.timedelta(days=1), "b" * 64: PRUNED_AT}
    assert snapshots_since(PRUNED_AT, reported, ["a" * 64, "b" * 64]) == []


def test_a_snapshot_reported_after_the_prune_needs_a_check():
    reported = {"a" * 64: PRUNED_AT - dt.timedelta(days=1),
                "c" * 64: PRUNED_AT + dt.timedelta(seconds=1)}
    # reported but held nowhere yet (replication behind) counts too
    assert snapshots_since(PRUNED_AT, reported, ["a" * 64]) == ["c" * 64]


def test_a_stored_snapshot_no_agent_reported_needs_a_check():
    reported = {"a" * 64: PRUNED_AT - dt.timedelta(days=1)}
    assert snapshots_since(PRUNED_AT, reported, ["a" * 64, "d" * 64]) == ["d" * 64]


def test_snapshot_ids_from_keys():
    assert snapshot_ids(["snapshots/" + "a" * 64, "index/" + "b" * 64, "config"]) == {"a" * 64}


def test_lacking_ignores_tombstoned_keys():
    pruned = {"config", "index/n"}
    others = [{"config", "index/n", "index/old", "snapshots/new"}, set()]
    assert lacking(pruned, others, {"index/old"}) == {"snapshots/new"}
    assert lacking(pruned | {"snapshots/new"}, others, {"index/old"}) == set()


def test_check_found_missing_on_restic_0_14_lines():
    assert check_found_missing([
        "error for tree 14e8fa26:",
        '  tree 14e8fa26..: file "old-0.bin" blob ae94.. not found in index'])
    assert check_found_missing(["  id bee44695 not found in repository"])
    assert check_found_missing(["pack 7c78b214: does not exist"])
    assert not check_found_missing(["pack 7c78b214: Pack ID does not match, want 7c78"])
    assert not check_found_missing(["Load(<data/9fc1fe65ff>, 0, 0) returned error"])
    assert not check_found_missing([])


def test_resurrection_brings_back_packs_and_indexes_still_held_at_their_size():
    tombstoned = {"data/ab/ab1": 100, "index/i1": 10, "snapshots/s1": 5, "data/cd/cd2": 50,
                  "data/ef/ef3": 70}
    listings = {"far": {"data/ab/ab1": 100, "index/i1": 10, "snapshots/s1": 5,
                        "data/ef/ef3": 69},
                "down": None,
                "third": {"data/ab/ab1": 100, "data/ef/ef3": 70}}
    assert resurrection(tombstoned, listings) == {
        "data/ab/ab1": ["far", "third"], "data/ef/ef3": ["third"], "index/i1": ["far"]}
    # the forgotten snapshot's own file never comes back; a key nobody holds cannot
    assert resurrection({"snapshots/s1": 5, "data/cd/cd2": 50}, listings) == {}


def test_fresh_locks_ignore_stale_ones():
    locks = [("locks/a", NOW - dt.timedelta(minutes=4)),
             ("locks/b", NOW - dt.timedelta(minutes=30)),
             ("locks/c", NOW - dt.timedelta(days=2))]
    assert fresh_locks(locks, NOW) == ["locks/a"]
    assert fresh_locks(locks[1:], NOW) == []
    assert fresh_locks(locks, NOW, stale_after=dt.timedelta(hours=1)) == ["locks/a",
                                                                            "locks/b"]


def test_indexes_go_before_snapshots_before_packs():
    keys = ["data/ab/ab1", "snapshots/s1", "index/i1", "data/00/001", "index/i0"]
    assert sorted(keys, key=lambda key: (deletion_order(key), key)) == [
        "index/i0", "index/i1", "snapshots/s1", "data/00/001", "data/ab/ab1"]
