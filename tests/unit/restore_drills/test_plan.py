"""restore_drills.plan: the drill settings, the restore point, and what is restored (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.manifest import in_sample
from drd.errors import OperationError, UserError
from drd.restic import Node
from restore_drills.plan import (
    ALL,
    PATHS,
    PERCENT,
    DrillSettings,
    PointSnapshot,
    choose_restore_point,
    include_batches,
    include_pattern,
    select_files,
    settings_from_policy,
)

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
HOME = Path("/var/lib/drd")

# the drill sections of the example policies as `Policy.model_dump(mode="json")` stores them
FILESERVER = {"rto": "4h", "rpo": "1h", "drill": {
    "schedule": "0 3 * * 0", "period": "30d", "snapshot": "latest",
    "restore": {"percent": 10.0, "paths": []}, "sandbox": {"path": None, "max_size": "50G"},
    "sample_percent": 10.0, "checks": [], "rto": None, "rpo": None}}
DATABASE_CHECK = {"name": "dump-loads", "command": ["sqlite3", ":memory:",
                                                    ".read {restored}/app.sql"],
                  "expect_stdout": "ok", "expect_exit": 0, "timeout": "10m"}
DATABASE = {"rto": "1h", "rpo": "30m", "drill": {
    "schedule": "30 2 * * *", "period": "7d", "snapshot": "oldest",
    "restore": {"percent": 100.0, "paths": ["/srv/app/config"]},
    "sandbox": {"path": "/var/lib/drd/drills", "max_size": "10G"},
    "sample_percent": 100.0, "checks": [DATABASE_CHECK], "rto": "30m", "rpo": None}}


def _id(n: int, prefix: str = "") -> str:
    return (prefix + f"{n:x}" * 64)[:64]


def snap(n: int, hours: float, run: str | None = None, **fields) -> PointSnapshot:
    tags = (f"drd-run:{run}",) if run is not None else ()
    return PointSnapshot(id=n, restic_id=_id(n), time=T0 + hours * HOUR, tags=tags, **fields)


# -- settings ------------------------------------------------------------------------------


def test_settings_of_a_percent_plan_fall_back_to_the_policy_targets():
    settings = settings_from_policy(FILESERVER, HOME)
    assert settings.mode == PERCENT and settings.percent == 10.0 and settings.paths == ()
    assert settings.sample_percent == 10.0 and settings.snapshot == "latest"
    assert settings.sandbox == HOME / "drills"
    assert settings.max_sandbox_bytes == 50 * 1024**3
    assert (settings.rto, settings.rpo) == (timedelta(hours=4), timedelta(hours=1))
    assert settings.period == timedelta(days=30) and settings.checks == ()


def test_settings_of_a_paths_plan_with_its_own_rto():
    settings = settings_from_policy(DATABASE, HOME)
    assert settings.mode == PATHS and settings.paths == ("/srv/app/config",)
    assert settings.snapshot == "oldest" and settings.sandbox == Path("/var/lib/drd/drills")
    assert settings.rto == timedelta(minutes=30) and settings.rpo == timedelta(minutes=30)
    assert settings.period == timedelta(days=7)
    assert settings.checks == (DATABASE_CHECK,)
    assert settings.as_dict()["rto_seconds"] == 1800.0


def test_a_policy_without_a_drill_plan_gets_the_defaults():
    settings = settings_from_policy({"rto": "2h", "rpo": "1d"}, HOME)
    assert settings.mode == ALL and settings.snapshot == "latest"
    assert settings.sandbox == HOME / "drills" and settings.max_sandbox_bytes is None
    assert settings.rto == timedelta(hours=2) and settings.rpo == timedelta(days=1)
    assert settings_from_policy({}, HOME).rto == DrillSettings.rto


# -- the restore point ---------------------------------------------------------------------


def test_latest_is_the_run_of_the_newest_good_snapshot():
    snapshots = [snap(1, 0, "r1"), snap(2, 0.01, "r1"),
                 snap(3, 1, "r2"), snap(4, 1.02, "r2"), snap(5, 1.01, "r2"),
                 snap(6, 2, "r3", partial=True), snap(7, 3, "r4", status="forgotten")]
    point = choose_restore_point(snapshots)
    # the run of the newest good snapshot (4), led by its first snapshot (the paths one)
    assert point.primary.id == 3
    assert [s.id for s in point.snapshots] == [3, 5, 4]
    assert point.time == T0 + HOUR  # the oldest of the run: what the RPO counts from


def test_oldest_and_a_snapshot_without_run_tag_is_a_restore_point_alone():
    snapshots = [snap(1, 0), snap(2, 0), snap(3, 1, "r2"), snap(4, 1, "r2")]
    point = choose_restore_point(snapshots, "oldest")
    assert point.primary.id == 1 and point.snapshots == (point.primary,)


def test_a_partial_or_forgotten_sibling_is_left_out():
    snapshots = [snap(1, 0, "r1"), snap(2, 0, "r1", partial=True),
                 snap(3, 0, "r1", status="forgotten")]
    assert [s.id for s in choose_restore_point(snapshots).snapshots] == [1]


def test_by_id_a_full_id_or_unique_prefix_also_an_older_one():
    snapshots = [snap(10, 0, "r1"), snap(11, 0.5, "r1"), snap(12, 1, "r2")]
    point = choose_restore_point(snapshots, "latest", _id(10))
    assert [s.id for s in point.snapshots] == [10, 11]
    assert [s.id for s in choose_restore_point(snapshots, "oldest").snapshots] == [10, 11]
    assert choose_restore_point(snapshots, "latest", _id(11)[:8].upper()).primary.id == 11


@pytest.mark.parametrize("snapshot, message", [
    (snap(1, 0, partial=True), "partial"),
    (snap(1, 0, status="forgotten"), "forgotten"),
])
def test_by_id_a_snapshot_that_is_not_a_good_restore_point_is_refused(snapshot, message):
    with pytest.raises(UserError, match=message):
        choose_restore_point([snapshot, snap(2, 1)], snapshot_id=snapshot.restic_id)


def test_by_id_unknown_and_ambiguous_are_user_errors():
    snapshots = [PointSnapshot(1, "ab12" + "0" * 60, T0), PointSnapshot(2, "ab34" + "0" * 60, T0)]
    with pytest.raises(UserError, match="ambiguous"):
        choose_restore_point(snapshots, snapshot_id="ab")
    with pytest.raises(UserError, match="no snapshot"):
        choose_restore_point(snapshots, snapshot_id="cd")
    assert choose_restore_point(snapshots, snapshot_id="ab3").primary.id == 2


@pytest.mark.parametrize("snapshots", [
    [], [snap(1, 0, partial=True), snap(2, 1, status="forgotten")],
])
def test_no_good_snapshot_is_an_operation_error(snapshots):
    with pytest.raises(OperationError, match="no good snapshot"):
        choose_restore_point(snapshots)


def test_a_drill_skips_unconfirmed_and_rejected_reports():
    # the newest two are reports the centre has not confirmed, or found the stores lack
    snapshots = [snap(1, 0), snap(2, 2), snap(3, 3, status="unconfirmed"),
                 snap(4, 4, status="rejected")]
    assert choose_restore_point(snapshots).primary.id == 2
    assert choose_restore_point(snapshots, "oldest").primary.id == 1
    for n, says in ((3, "not confirmed yet"), (4, "rejected")):
        with pytest.raises(UserError, match=says):
            choose_restore_point(snapshots, snapshot_id=_id(n))
    with pytest.raises(OperationError, match="no good snapshot"):
        choose_restore_point([snap(3, 3, status="unconfirmed")])


def test_neither_latest_nor_oldest_is_refused():
    with pytest.raises(UserError, match="neither"):
        choose_restore_point([snap(1, 0)], "newest")


# -- what to restore -----------------------------------------------------------------------

TREE = [Node("/srv", "dir"), Node("/srv/a", "dir"), Node("/srv/a/x.txt", "file", 3),
        Node("/srv/a/deep", "dir"), Node("/srv/a/deep/y.bin", "file", 5),
        Node("/srv/ab", "dir"), Node("/srv/ab/z.txt", "file", 7),
        Node("/srv/a/link", "symlink"), Node("/srv/b.txt", "file", 0)]
FILES = {"/srv/a/x.txt": 3, "/srv/a/deep/y.bin": 5, "/srv/ab/z.txt": 7, "/srv/b.txt": 0}


def test_all_restores_every_file_without_includes():
    selection = select_files(TREE, DrillSettings())
    assert selection.includes == () and selection.files == FILES and selection.bytes == 15


@pytest.mark.parametrize("paths, chosen", [
    (("/srv/a",), ["/srv/a/deep/y.bin", "/srv/a/x.txt"]),
    (("/srv/a/",), ["/srv/a/deep/y.bin", "/srv/a/x.txt"]),
    (("/srv/a/deep",), ["/srv/a/deep/y.bin"]),
    (("/srv/ab", "/srv/b.txt"), ["/srv/ab/z.txt", "/srv/b.txt"]),
    (("/",), sorted(FILES)),
    (("/elsewhere",), []),
])
def test_paths_select_what_lies_beneath_and_not_a_sibling_with_a_common_prefix(paths, chosen):
    selection = select_files(TREE, DrillSettings(paths=paths))
    assert sorted(selection.files) == chosen
    assert selection.includes == tuple(p.rstrip("/") or "/" for p in paths)


def test_percent_selection_is_the_agent_sample_and_deterministic():
    nodes = [Node(f"/srv/share/file-{n}.txt", "file", n) for n in range(400)]
    settings = DrillSettings(percent=25)
    first = select_files(nodes, settings)
    expected = {n.path: n.size for n in nodes if in_sample(n.path, 25)}
    assert first.files == expected
    assert 50 < len(expected) < 150  # a quarter, roughly
    assert first.includes == tuple(sorted(expected))
    assert select_files(reversed(nodes), settings) == first


def test_a_percent_selection_of_no_file_does_not_restore_everything():
    dump = Node("/app.sql", "file", 100)
    percent = 0.001
    assert not in_sample(dump.path, percent)
    selection = select_files([dump], DrillSettings(percent=percent))
    assert selection.files == {}
    assert not selection.everything  # the drill restores nothing of this snapshot


@pytest.mark.parametrize("path, pattern", [
    ("/srv/plain.txt", "/srv/plain.txt"),
    ("/srv/a*b?c[d]", "/srv/a\\*b\\?c\\[d]"),
    ("/srv/back\\slash", "/srv/back\\\\slash"),
    ("/srv/space and ünï", "/srv/space and ünï"),
])
def test_include_pattern_escapes_glob_characters(path, pattern):
    assert include_pattern(path) == pattern


def test_include_batches():
    assert include_batches(()) == [()]
    assert include_batches(["/a", "/b"]) == [("/a", "/b")]
    # each pattern costs its bytes plus "--include" plus two separators
    cost = len("/aaaa") + len("--include") + 2
    assert include_batches(["/aaaa"] * 5, max_argv_bytes=2 * cost) == [
        ("/aaaa", "/aaaa"), ("/aaaa", "/aaaa"), ("/aaaa",)]
    assert include_batches(["/" + "x" * 50, "/y"], max_argv_bytes=10) == [
        ("/" + "x" * 50,), ("/y",)]


@given(st.lists(st.text(min_size=1, max_size=40), max_size=60),
       st.integers(min_value=1, max_value=400))
def test_include_batches_keep_order_and_stay_under_the_limit(patterns, limit):
    batches = include_batches(patterns, max_argv_bytes=limit)
    assert [p for batch in batches for p in batch] == patterns
    assert all(batches) or batches == [()]
    for batch in batches:
        cost = sum(len(p.encode()) + len("--include") + 2 for p in batch)
        assert cost <= limit or len(batch) == 1
