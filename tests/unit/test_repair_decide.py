"""Which version of an object to bring back (drd.repair.decide): pure, no I/O."""

from __future__ import annotations

import datetime as dt

import pytest

from drd.recorded.judge import Record
from drd.repair.decide import (
    HIDDEN,
    OVERWRITTEN,
    Expected,
    KeyHistory,
    choose_version,
    expected_for,
    histories,
)
from drd.stores.base import ObjectVersion

PACK = "data/ab/" + "ab" + "0" * 62
T0 = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


def version(vid: str, seconds: int = 0, *, latest: bool = False, marker: bool = False,
            key: str = PACK, size: int = 10) -> ObjectVersion:
    return ObjectVersion(key=key, version_id=vid, size=0 if marker else size,
                         modified=T0 + dt.timedelta(seconds=seconds), is_latest=latest,
                         is_delete_marker=marker)


def judge(good: set[str | None], asked: list[str | None] | None = None):
    def verdict(candidate: ObjectVersion) -> bool:
        if asked is not None:
            asked.append(candidate.version_id)
        return candidate.version_id in good
    return verdict


# -- grouping ----------------------------------------------------------------------------


def test_histories_group_by_key_and_order_versions_newest_first():
    other = "config"
    entries = [version("m", 30, latest=True, marker=True), version("v1", 0),
               version("v2", 20), version("c1", 5, latest=True, key=other)]
    found = histories(entries)
    assert set(found) == {PACK, other}
    pack = found[PACK]
    assert [v.version_id for v in pack.versions] == ["v2", "v1"]
    assert [m.version_id for m in pack.markers] == ["m"]
    assert pack.hidden and pack.current is None
    assert [v.version_id for v in pack.older] == ["v2", "v1"]
    assert found[other].current.version_id == "c1" and not found[other].needs_look


def test_equal_times_keep_the_listing_order_and_the_latest_flag_wins():
    # S3 times are to the second: the server's newest-first order decides among equals
    entries = [version("newer", 0), version("older", 0), version("current", 0, latest=True)]
    (pack,) = histories(entries).values()
    assert [v.version_id for v in pack.versions] == ["current", "newer", "older"]
    assert not pack.hidden and pack.current.version_id == "current"


def test_a_marker_beneath_the_current_version_does_not_hide_it():
    entries = [version("v2", 20, latest=True), version("m", 10, marker=True),
               version("v1", 0)]
    (pack,) = histories(entries).values()
    assert not pack.hidden and pack.current.version_id == "v2"
    assert [v.version_id for v in pack.older] == ["v1"] and pack.needs_look


def test_without_a_latest_flag_the_newest_entry_decides_a_marker_winning_a_tie():
    assert KeyHistory(PACK, (version("v", 0),), (version("m", 0, marker=True),)).hidden
    assert not KeyHistory(PACK, (version("v", 5),), (version("m", 0, marker=True),)).hidden
    assert KeyHistory(PACK, (), (version("m", 0, marker=True),)).hidden


def test_a_single_current_version_or_a_marker_alone_needs_no_look():
    assert not KeyHistory(PACK, (version("v", latest=True),)).needs_look
    assert not KeyHistory(PACK, (), (version("m", latest=True, marker=True),)).needs_look
    # a store without versions: the current object, version id None
    (pack,) = histories([version(None, latest=True)]).values()
    assert pack.current.version_id is None and not pack.needs_look


# -- choosing ----------------------------------------------------------------------------


def test_a_hidden_object_gets_its_newest_good_version_back():
    history = KeyHistory(PACK, (version("v3", 30), version("v2", 20), version("v1", 10)),
                         (version("m", 40, latest=True, marker=True),))
    asked: list = []
    choice = choose_version(history, judge({"v2", "v1"}, asked))
    assert (choice.action, choice.version.version_id, choice.reason) == ("restore", "v2",
                                                                        HIDDEN)
    assert choice.rejected == ("v3",)
    assert asked == ["v3", "v2"]  # lazily, newest first; never the marker, never v1


def test_an_overwritten_object_gets_the_newest_good_version_beneath_the_bad_one():
    history = KeyHistory(PACK, (version("bad", 20, latest=True), version("good", 10)))
    choice = choose_version(history, judge({"good"}))
    assert (choice.action, choice.version.version_id, choice.reason) == (
        "restore", "good", OVERWRITTEN)
    assert choice.rejected == ("bad",)


def test_a_good_current_version_is_kept_whatever_lies_beneath():
    history = KeyHistory(PACK, (version("healed", 30, latest=True), version("bad", 20),
                                version("good", 10)))
    asked: list = []
    assert choose_version(history, judge({"healed", "good"}, asked)).action == "keep"
    assert asked == ["healed"]


def test_a_current_version_known_bad_is_not_read_again():
    history = KeyHistory(PACK, (version("bad", 20, latest=True), version("good", 10)))
    asked: list = []
    choice = choose_version(history, judge({"good"}, asked), current_known_bad=True)
    assert choice.version.version_id == "good" and asked == ["good"]
    assert choice.rejected == ("bad",)


def test_no_good_version_is_said_with_every_version_rejected():
    history = KeyHistory(PACK, (version("b2", 20), version("b1", 10)),
                         (version("m", 30, latest=True, marker=True),))
    choice = choose_version(history, judge(set()))
    assert (choice.action, choice.version, choice.reason) == ("none", None, HIDDEN)
    assert choice.rejected == ("b2", "b1")
    bare = KeyHistory(PACK, (), (version("m", latest=True, marker=True),))
    assert choose_version(bare, judge(set())).action == "none"


# -- what good means ---------------------------------------------------------------------


def test_expected_comes_from_the_name_or_the_record_never_from_nothing():
    assert expected_for(PACK, {}) == Expected(PACK.rsplit("/", 1)[1])
    record = Record("c" * 64, 155, "agent at enrollment")
    assert expected_for("config", {"config": record}) == Expected("c" * 64, 155,
                                                                  "the catalog's record")
    assert expected_for("config", {}) is None
    with pytest.raises(ValueError):
        expected_for("locks/" + "a" * 64, {})


def test_expected_matches_digest_and_recorded_size():
    named = Expected("a" * 64)
    assert named.matches("a" * 64, 123) and not named.matches("b" * 64, 123)
    recorded = Expected("a" * 64, 155)
    assert recorded.matches("a" * 64, 155) and not recorded.matches("a" * 64, 154)
