"""The restore's decisions (pure): --at, the restore point, paths, the order of the stores."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drd.errors import OperationError, UserError
from drd.restic import Node
from drd.services.restore.plan import (
    SnapshotInfo,
    StoreHealth,
    check_include,
    check_nodes,
    choose_point,
    include_pattern,
    order_stores,
    parse_at,
    select,
    stalled,
    unmatched_includes,
    worst_copy,
)

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def snap(hex_id: str, hours_ago: float, *, run: str | None = None, paths=("/srv",),
         status: str = "active", partial: bool = False) -> SnapshotInfo:
    return SnapshotInfo(id=hex_id * (64 // len(hex_id)), time=NOW - dt.timedelta(hours=hours_ago),
                        paths=paths, tags=(f"drd-run:{run}",) if run else (), status=status,
                        partial=partial)


# -- --at ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-27T14:30:00Z", dt.datetime(2026, 11, 27, 14, 30, tzinfo=dt.UTC)),
    ("2026-11-27T14:30:00+01:00", dt.datetime(2026, 11, 27, 13, 30, tzinfo=dt.UTC)),
    ("2026-11-27 14:30", dt.datetime(2026, 11, 27, 14, 30, tzinfo=dt.UTC)),
    ("2026-11-27", dt.datetime(2026, 11, 27, 23, 59, 59, 999999, tzinfo=dt.UTC)),
    ("90m ago", NOW - dt.timedelta(minutes=90)),
    ("-1d12h", NOW - dt.timedelta(hours=36)),
    ("2w ago", NOW - dt.timedelta(weeks=2)),
    ("now", NOW),
])
def test_at_reads_iso_8601_and_ages(text, expected):
    assert parse_at(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "90 ago", "1x ago", "2026-13-01",
                                  "2027-01-01", "-", "+1h"])
def test_at_refuses_what_is_not_a_past_time(text):
    with pytest.raises(UserError, match="--at"):
        parse_at(text, NOW)


@given(st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2026, 11, 28),
                    timezones=st.just(dt.UTC)))
def test_an_iso_time_reads_back_as_itself(moment):
    assert parse_at(moment.isoformat(), NOW) == moment


# -- the restore point -----------------------------------------------------------------------


def test_latest_is_the_newest_good_run_led_by_its_paths_snapshot():
    snapshots = [snap("a1", 5, run="r1"), snap("b1", 4.9, run="r1", paths=("/app.sql",)),
                 snap("c1", 2, run="r2"), snap("d1", 1.9, run="r2", paths=("/app.sql",)),
                 snap("e1", 1, run="r3", partial=True)]
    point = choose_point(snapshots)
    assert point.primary.id.startswith("c1") and [s[:2] for s in point.ids] == ["c1", "d1"]
    assert choose_point(snapshots, snapshot="latest") == point


def test_at_picks_the_newest_good_snapshot_at_or_before_it():
    snapshots = [snap("a1", 5), snap("b2", 3), snap("c3", 1), snap("d4", 2, partial=True)]
    assert choose_point(snapshots, at=NOW - dt.timedelta(hours=2)).primary.id[:2] == "b2"
    assert choose_point(snapshots, at=NOW - dt.timedelta(hours=3)).primary.id[:2] == "b2"
    assert choose_point(snapshots, at=NOW).primary.id[:2] == "c3"
    with pytest.raises(UserError, match="no good snapshot at or before .* oldest"):
        choose_point(snapshots, at=NOW - dt.timedelta(hours=6))


@given(st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), min_size=1,
                max_size=20, unique=True),
       st.floats(min_value=0, max_value=1100, allow_nan=False))
def test_at_never_picks_a_later_snapshot_nor_skips_a_newer_earlier_one(ages, at_age):
    snapshots = [snap(f"{index:02x}", age) for index, age in enumerate(ages)]
    at = NOW - dt.timedelta(hours=at_age)
    earlier = [s for s in snapshots if s.time <= at]
    if not earlier:
        with pytest.raises(UserError):
            choose_point(snapshots, at=at)
        return
    chosen = choose_point(snapshots, at=at).primary
    assert chosen.time <= at
    assert chosen.time == max(s.time for s in earlier)


def test_an_id_prefix_names_one_snapshot_partial_ones_alone():
    snapshots = [snap("ab", 3, run="r1"), snap("ac", 2.9, run="r1", paths=("/x.sql",)),
                 snap("bc", 2, partial=True, run="r2"), snap("bd", 1.5, run="r2"),
                 snap("cd", 1, status="forgotten")]
    point = choose_point(snapshots, snapshot="AC")
    assert point.primary.id.startswith("ac") and len(point.ids) == 2  # its run comes too
    assert choose_point(snapshots, snapshot="bcbc").ids == [snapshots[2].id]
    for wanted, message in (("a", "ambiguous"), ("ff", "no snapshot"),
                            ("xyz", "hexadecimal"), ("cd", "forgotten")):
        with pytest.raises(UserError, match=message):
            choose_point(snapshots, snapshot=wanted)
    with pytest.raises(UserError, match="not both"):
        choose_point(snapshots, snapshot="ab", at=NOW)


def test_latest_and_at_skip_unconfirmed_and_rejected_reports():
    confirmed = snap("ab", 3, run="r1")
    snapshots = [confirmed, snap("ac", 2.9, run="r1", paths=("/x.sql",)),
                 # a report of an invented id, a few minutes ahead, and a rejected one
                 snap("cd", -0.1, status="unconfirmed"), snap("ce", 1, status="rejected"),
                 # a real run still waiting for its confirmation: not yet a restore point
                 snap("df", 0.5, run="r2", status="unconfirmed")]
    assert choose_point(snapshots).primary == confirmed
    assert choose_point(snapshots, snapshot="latest").ids == [s.id for s in snapshots[:2]]
    assert choose_point(snapshots, at=NOW).primary == confirmed
    # named by id: an unconfirmed one alone (restic tells whether it exists), a
    # rejected one never
    assert choose_point(snapshots, snapshot="df").ids == [snapshots[4].id]
    with pytest.raises(UserError, match="rejected"):
        choose_point(snapshots, snapshot="ce")
    with pytest.raises(OperationError, match="no good snapshot"):
        choose_point([snap("cd", -0.1, status="unconfirmed")])


def test_no_good_snapshot_is_an_operation_error():
    with pytest.raises(OperationError, match="no good snapshot"):
        choose_point([snap("ab", 1, partial=True)])


# -- paths -----------------------------------------------------------------------------------


def test_includes_are_absolute_without_dot_parts():
    assert check_include("/srv/share/") == "/srv/share"
    assert check_include("/") == "/"
    for bad, message in (("srv", "absolute"), ("", "absolute"), ("/srv/../etc", "'..'"),
                         ("/srv/./x", "'.'"), ("/srv//x", "empty"), ("/a\nb", "control")):
        with pytest.raises(UserError, match=message):
            check_include(bad)


@given(st.lists(st.sampled_from(["a", "..", ".", "", "b c", "*", "ü"]), min_size=1,
                max_size=6))
def test_an_accepted_include_never_climbs(parts):
    path = "/" + "/".join(parts)
    try:
        checked = check_include(path)
    except UserError:
        assert any(part in ("..", ".", "") for part in parts[:-1]) or parts[-1] in ("..", ".")
        return
    assert ".." not in checked.split("/") and "." not in checked.split("/")


def test_glob_characters_are_escaped_for_restic():
    assert include_pattern("/srv/a*b?[c]\\d") == "/srv/a\\*b\\?\\[c]\\\\d"


def nodes(*spec: str) -> list[Node]:
    return [Node(path=path.rstrip("/@"), type="dir" if path.endswith("/") else
                 "symlink" if path.endswith("@") else "file", size=10) for path in spec]


def test_paths_that_would_land_outside_the_target_are_refused():
    check_nodes({"s1": nodes("/srv/", "/srv/a", "/srv/link@")})
    for bad, message in ((["/srv/../../etc/passwd"], "'..'"), (["srv/a"], "not absolute"),
                         (["/srv/link@", "/srv/link/passwd"], "beneath the symbolic link")):
        with pytest.raises(UserError, match=message):
            check_nodes({"s1": nodes(*bad)})
    # across the snapshots of one restore point too: they share the tree
    with pytest.raises(UserError, match="beneath the symbolic link /x"):
        check_nodes({"s1": nodes("/x@"), "s2": nodes("/x/", "/x/passwd")})
    # a link in one snapshot and a file (or a link again) in another: restic would write
    # the second through the first
    for other in ("/x", "/x@", "/x/"):
        with pytest.raises(UserError, match="written through the other's link"):
            check_nodes({"s1": nodes("/x@"), "s2": nodes(other)})


def test_a_selection_is_the_include_its_contents_and_the_directories_above():
    listed = nodes("/srv/", "/srv/a/", "/srv/a/one", "/srv/a/b/", "/srv/a/b/two", "/srv/c",
                   "/srv/ab")
    selection = select("s1", listed, ["/srv/a"])
    assert set(selection.entries) == {"/srv", "/srv/a", "/srv/a/one", "/srv/a/b",
                                      "/srv/a/b/two"}
    assert selection.bytes == 20 and selection.includes == ("/srv/a",)
    everything = select("s1", listed, [])
    assert everything.everything and len(everything.entries) == len(listed)
    assert select("s2", nodes("/app.sql"), ["/srv/a"]).empty
    assert unmatched_includes(["/srv/a", "/srv/zz"], {"s1": listed}) == ["/srv/zz"]


# -- stores ----------------------------------------------------------------------------------


def test_the_healthiest_store_comes_first():
    stores = [
        StoreHealth("first", 0, copy="present", reachable=False),
        StoreHealth("lagging", 1, copy="present", reachable=True, lag_objects=5),
        StoreHealth("clean", 2, copy="present", reachable=True),
        StoreHealth("missing", 3, copy="missing", reachable=True),
        StoreHealth("unprobed", 4, copy="present", reachable=None),
        StoreHealth("pending", 5, copy="pending", reachable=True),
    ]
    assert [s.name for s in order_stores(stores)] == [
        "clean", "lagging", "unprobed", "pending", "missing", "first"]


def test_equal_stores_keep_the_policys_order():
    stores = [StoreHealth(name, index, copy="present", reachable=True)
              for index, name in enumerate(["b", "a", "c"])]
    assert [s.name for s in order_stores(stores)] == ["b", "a", "c"]


@given(st.lists(st.builds(
    StoreHealth, name=st.text(min_size=1, max_size=5), position=st.integers(0, 9),
    copy=st.sampled_from(["present", "pending", "missing", "damaged", "forgotten", None]),
    reachable=st.sampled_from([True, False, None]), damaged_objects=st.integers(0, 3),
    lag_objects=st.integers(0, 3), replica_error=st.booleans()), max_size=8))
def test_every_store_is_tried_once_healthy_ones_first(stores):
    ordered = order_stores(stores)
    assert sorted(map(id, ordered)) == sorted(map(id, stores))
    healthy = [s.healthy for s in ordered]
    assert healthy == sorted(healthy, reverse=True)
    for before, after in zip(ordered, ordered[1:], strict=False):
        if before.healthy and after.healthy:
            assert before.problems <= after.problems


def test_a_points_copy_is_as_good_as_its_worst_snapshot():
    assert worst_copy(["present", "present"]) == "present"
    assert worst_copy(["present", "missing"]) == "missing"
    assert worst_copy(["present", None]) is None
    assert worst_copy([]) is None


def test_a_store_is_probed_only_after_a_stall_and_not_too_often():
    assert not stalled(10.0, 0.0, -100.0, stall_seconds=20, probe_seconds=10)
    assert stalled(25.0, 0.0, -100.0, stall_seconds=20, probe_seconds=10)
    assert not stalled(25.0, 0.0, 20.0, stall_seconds=20, probe_seconds=10)
    assert stalled(31.0, 0.0, 20.0, stall_seconds=20, probe_seconds=10)
