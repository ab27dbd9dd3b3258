"""Parsers over lines recorded from restic 0.14.0 (and a few from newer releases)."""

from __future__ import annotations

import errno
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from drd.restic import parse
from drd.restic.types import ItemError, ProgressEvent, ResticVersion

STATUS_FIRST = '{"message_type":"status","percent_done":0,"total_files":1,"total_bytes":6}'
STATUS_MIDDLE = (
    '{"message_type":"status","percent_done":0.2447490209802616,"total_files":3,'
    '"files_done":2,"total_bytes":30100006,"bytes_done":7366947,'
    '"current_files":["/src/big.bin"]}'
)
SUMMARY = (
    '{"message_type":"summary","files_new":2,"files_changed":0,"files_unmodified":0,'
    '"dirs_new":2,"dirs_changed":0,"dirs_unmodified":0,"data_blobs":2,"tree_blobs":3,'
    '"data_added":101411,"total_files_processed":2,"total_bytes_processed":100006,'
    '"total_duration":0.214177211,"snapshot_id":"0d75d420"}'
)
ERROR_0_14 = (
    '{"message_type":"error","error":{"Op":"read","Path":"/proc/7599/mem","Err":5},'
    '"during":"archival","item":"/proc/7599/mem"}'
)
SNAPSHOTS = (
    '[{"time":"2026-11-27T13:50:36.563458699Z","tree":"9d24574b3e1e2d8efa3bfe8df5029cc014e90c6c'
    '429049a4fb5de80810fe178f","paths":["/tmp/rx/src"],"hostname":"vm","username":"root",'
    '"id":"6d1c87c033850646ffa93b59effc1adef0365c2692dd3d3c04be7c28d542e661",'
    '"short_id":"6d1c87c0"},'
    '{"time":"2026-11-27T13:50:35.646354955Z","parent":"aa75d4202c7c41e2637dcc8ddf696e430e5'
    '3a6884aed1a751bcd339a0d19e41a","tree":"9d24574b3e1e2d8efa3bfe8df5029cc014e90c6c429049a4f'
    'b5de80810fe178f","paths":["/tmp/rx/src","/etc"],"hostname":"h1","username":"root",'
    '"tags":["t1","daily"],"excludes":["*.tmp"],'
    '"id":"0d75d4202c7c41e2637dcc8ddf696e430e53a6884aed1a751bcd339a0d19e41a",'
    '"short_id":"0d75d420"}]'
)


def test_parse_line_tells_json_from_text():
    message = parse.parse_line(STATUS_FIRST + "\n")
    assert message.type == "status"
    assert message.data["total_bytes"] == 6
    text = parse.parse_line("restoring <Snapshot f0ac5f37 of [/dump.sql]> to /tmp/out\n")
    assert text.type is None and text.text.startswith("restoring")
    assert parse.parse_line("{not json").type is None
    assert parse.parse_line("[1, 2]").type is None


def test_progress_from_status_lines():
    assert parse.parse_progress(parse.parse_line(STATUS_FIRST).data) == ProgressEvent(
        percent_done=0.0, total_files=1, total_bytes=6
    )
    middle = parse.parse_progress(parse.parse_line(STATUS_MIDDLE).data)
    assert middle.files_done == 2 and middle.bytes_done == 7366947
    assert middle.current_files == ("/src/big.bin",)
    assert 0.24 < middle.percent_done < 0.25


def test_progress_from_a_newer_restore_status():
    line = ('{"message_type":"status","seconds_elapsed":2,"percent_done":0.5,"total_files":4,'
            '"files_restored":2,"total_bytes":100,"bytes_restored":50}')
    event = parse.parse_progress(parse.parse_line(line).data)
    assert (event.files_done, event.bytes_done, event.seconds_elapsed) == (2, 50, 2)


def test_backup_summary():
    summary = parse.parse_backup_summary(parse.parse_line(SUMMARY).data)
    assert summary.snapshot_id == "0d75d420" and summary.short_id == "0d75d420"
    assert summary.files_new == 2 and summary.tree_blobs == 3 and summary.data_added == 101411
    assert summary.total_bytes_processed == 100006
    assert summary.total_duration == pytest.approx(0.214177211)
    assert not summary.partial and summary.errors == ()


def test_backup_summary_partial_carries_errors():
    error = ItemError("/x", "read /x: Input/output error", "archival")
    summary = parse.parse_backup_summary(parse.parse_line(SUMMARY).data, partial=True,
                                         errors=[error])
    assert summary.partial and summary.errors == (error,)


def test_backup_summary_without_snapshot_id_is_refused():
    with pytest.raises(ValueError):
        parse.parse_backup_summary({"message_type": "summary", "files_new": 1})


def test_item_error_shapes():
    assert parse.parse_item_error(parse.parse_line(ERROR_0_14).data) == ItemError(
        item="/proc/7599/mem", message=f"read /proc/7599/mem: {os.strerror(errno.EIO)}",
        during="archival",
    )
    newer = {"message_type": "error", "error": {"message": "open /x: permission denied"},
             "during": "archival", "item": "/x"}
    assert parse.parse_item_error(newer).message == "open /x: permission denied"
    empty = parse.parse_item_error({"message_type": "error", "error": {}, "item": "/y"})
    assert empty.item == "/y" and "no detail" in empty.message
    assert parse.parse_item_error({"error": "plain"}).message == "plain"


def test_exit_error():
    line = '{"message_type":"exit_error","code":12,"message":"Fatal: wrong password"}'
    assert parse.parse_exit_error(parse.parse_line(line).data) == "Fatal: wrong password"


def test_missing_source_warning():
    assert parse.missing_source("/tmp/rx/nonexist does not exist, skipping") == "/tmp/rx/nonexist"
    assert parse.missing_source("/a b/c does not exist, skipping\n") == "/a b/c"
    assert parse.missing_source("Fatal: all target directories/files do not exist") is None


def test_ignored_snapshot_id():
    line = 'Ignoring "abcdef12": no matching ID found for prefix "abcdef12"'
    assert parse.ignored_snapshot_id(line) == "abcdef12"
    assert parse.ignored_snapshot_id("Fatal: wrong password") is None


def test_snapshots_with_and_without_tags_and_parent():
    older, newer = parse.parse_snapshots(SNAPSHOTS)  # sorted oldest first
    assert older.id.startswith("0d75d420") and older.short_id == "0d75d420"
    assert older.tags == ("t1", "daily") and older.parent.startswith("aa75d420")
    assert older.paths == ("/tmp/rx/src", "/etc") and older.excludes == ("*.tmp",)
    assert older.time == datetime(2026, 11, 27, 13, 50, 35, 646354, tzinfo=UTC)
    assert newer.tags == () and newer.parent is None and newer.original is None
    assert newer.hostname == "vm" and newer.username == "root"
    assert newer.time.tzinfo is not None


def test_snapshots_empty_and_broken():
    assert parse.parse_snapshots("[]\n") == []
    with pytest.raises(ValueError):
        parse.parse_snapshots("Fatal: something")
    with pytest.raises(ValueError):
        parse.parse_snapshots('[{"id": "ab", "tree": "cd"}]')  # no time


def test_snapshot_without_short_id_gets_one():
    snapshot = parse.parse_snapshot({"id": "ab" * 32, "time": "2026-01-01T00:00:00Z",
                                     "tree": "cd" * 32})
    assert snapshot.short_id == "abababab" and snapshot.paths == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T13:50:35.646354955Z", datetime(2026, 11, 27, 13, 50, 35, 646354, UTC)),
        ("2026-11-27T13:50:35Z", datetime(2026, 11, 27, 13, 50, 35, tzinfo=UTC)),
        ("2026-11-27T13:50:35.5z", datetime(2026, 11, 27, 13, 50, 35, 500000, UTC)),
        ("2026-11-27T15:50:35.123456789+02:00",
         datetime(2026, 11, 27, 15, 50, 35, 123456, timezone(timedelta(hours=2)))),
        ("2026-11-27T08:20:35.1-05:30",
         datetime(2026, 11, 27, 8, 20, 35, 100000, timezone(-timedelta(hours=5, minutes=30)))),
    ],
)
def test_time_parsing(text, expected):
    parsed = parse.parse_time(text)
    assert parsed == expected and parsed.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize("text", ["2026-11-27T13:50:35", "yesterday", "", "2026-11-27"])
def test_time_without_zone_is_refused(text):
    with pytest.raises(ValueError):
        parse.parse_time(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("restic 0.14.0 compiled with go1.19.8 on linux/amd64\n", ResticVersion(0, 14, 0)),
        ("restic 0.17.3 compiled with go1.23.3 on linux/arm64", ResticVersion(0, 17, 3)),
        ("restic 0.16.4-dev (compiled manually) compiled with go1.22 on linux/amd64",
         ResticVersion(0, 16, 4)),
        ("restic 0.9.6 compiled with go1.13.4 on linux/amd64", ResticVersion(0, 9, 6)),
        ("restic 1.0.0", ResticVersion(1, 0, 0)),
    ],
)
def test_version_strings(text, expected):
    version = parse.parse_version(text)
    assert version == expected
    assert version.text.startswith("restic ")


def test_version_ordering_and_too_old():
    from drd.restic.version import MINIMUM_VERSION

    assert parse.parse_version("restic 0.9.6 compiled with go1.13") < MINIMUM_VERSION
    assert parse.parse_version("restic 0.13.1 compiled with go1.18") < MINIMUM_VERSION
    assert parse.parse_version("restic 0.14.0 compiled with go1.19.8") >= MINIMUM_VERSION
    assert parse.parse_version("restic 0.100.0 compiled") > MINIMUM_VERSION


@pytest.mark.parametrize("text", ["", "borg 1.2.0", "restic version 0.14", "restic 0.14"])
def test_not_a_version(text):
    with pytest.raises(ValueError):
        parse.parse_version(text)


def test_restore_output_of_0_14_and_newer():
    lines_0_14 = [
        "restoring <Snapshot f0ac5f37 of [/dump.sql] at 2026-11-27 13:50:42 +0000 UTC by "
        "root@vm> to /tmp/rx/out",
        "verifying files in /tmp/rx/out",
        "finished verifying 3 files in /tmp/rx/out (took 0s)",
    ]
    summary = parse.parse_restore_output("f0ac5f37", Path("/tmp/rx/out"), True,
                                         map(parse.parse_line, lines_0_14))
    assert summary.verified and summary.files_verified == 3
    assert summary.files_restored is None and summary.target == Path("/tmp/rx/out")
    newer = ('{"message_type":"summary","seconds_elapsed":1,"total_files":4,'
             '"files_restored":4,"total_bytes":10,"bytes_restored":10}')
    summary = parse.parse_restore_output("latest", Path("/t"), False, [parse.parse_line(newer)])
    assert (summary.total_files, summary.files_restored, summary.bytes_restored) == (4, 4, 10)
    assert summary.files_verified is None and not summary.verified


def test_init_output():
    text = "created restic repository 2913506ab6 at /tmp/rx/repo"
    assert parse.parse_init_output([parse.parse_line(text)]) == "2913506ab6"
    newer = '{"message_type":"initialized","id":"' + "ab" * 32 + '","repository":"/r"}'
    assert parse.parse_init_output([parse.parse_line(newer)]) == "ab" * 32
    assert parse.parse_init_output([]) is None


def test_repository_config():
    stdout = ('{\n  "version": 2,\n  "id": "2913506ab6e69eec9155bc95dd145fbe536a11ea4dd3865bf1'
              '134abaad3e7245",\n  "chunker_polynomial": "33a512d30596eb"\n}\n')
    config = parse.parse_repository_config(stdout)
    assert config.version == 2 and config.id.startswith("2913506ab6")
    with pytest.raises(ValueError):
        parse.parse_repository_config('{"version": 2}')


def test_forget_by_ids_reports_missing():
    result = parse.parse_forget("", ["aa" * 32, "abcdef12"], ["abcdef12"])
    assert result.removed == ("aa" * 32,) and result.missing == ("abcdef12",)


def test_forget_by_rules_lists_groups():
    stdout = (
        '[{"tags":null,"host":"h1","paths":["/src"],"keep":[{"time":"2026-11-27T13:50:35Z",'
        '"tree":"t","paths":["/src"],"id":"' + "aa" * 32 + '","short_id":"aaaaaaaa"}],'
        '"remove":[{"time":"2026-11-26T13:50:35Z","tree":"t","paths":["/src"],"id":"'
        + "bb" * 32 + '","short_id":"bbbbbbbb"}],"reasons":[]},'
        '{"tags":null,"host":"vm","paths":["/x"],"keep":[{"id":"' + "cc" * 32 + '"}],'
        '"remove":null,"reasons":[]}]\n'
        "some prune text after the JSON\n"
    )
    result = parse.parse_forget(stdout, [], [])
    assert result.kept == ("aa" * 32, "cc" * 32) and result.removed == ("bb" * 32,)


def test_check_errors():
    stderr = [
        "error for tree f60b5a66:",
        "  id f60b5a66786c65 not found in repository",
        "",
        "Fatal: repository contains errors",
    ]
    assert parse.check_found_errors(stderr)
    assert parse.check_errors(stderr) == (
        "error for tree f60b5a66:", "  id f60b5a66786c65 not found in repository",
    )
    assert not parse.check_found_errors(["Fatal: wrong password or no key found"])
    many = [f"error {n}" for n in range(parse.MAX_KEPT_LINES + 50)]
    assert len(parse.check_errors(many)) == parse.MAX_KEPT_LINES
