"""A restore's per-file errors and timings, and ``restic ls --json``, over lines recorded
from restic 0.14.0 on this machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from drd.errors import UserError
from drd.restic import Node, parse
from drd.restic.commands import ls_command
from restore_drills.checks import whole_error_path

FULL_ID = "5abc66d2" + "0" * 56
TARGET = Path("/tmp/rx/t1")
RESTORING = ("restoring <Snapshot 5abc66d2 of [/tmp/rx/src/srv/share] at 2026-11-27 "
             "19:37:47.156732428 +0000 UTC by root@vm> to /tmp/rx/t1")
VERIFYING = "verifying files in /tmp/rx/t1"
VERIFIED = "finished verifying 2 files in /tmp/rx/t1 (took 0s)"
CORRUPT_STDERR = [
    "ignoring error for /tmp/rx/src/srv/share/sub/b.bin: ciphertext verification failed\n",
    "ignoring error for /tmp/rx/src/srv/share/sub/b.bin: UtimesNano: no such file or "
    "directory\n",
    "Fatal: There were 2 errors\n",
]
LS = [
    '{"time":"2026-11-27T19:37:47.156732428Z","tree":"' + "e" * 64 + '","paths":'
    '["/tmp/rx/src/srv/share"],"hostname":"vm","username":"root","id":"' + FULL_ID + '",'
    '"short_id":"5abc66d2","struct_type":"snapshot"}',
    '{"name":"share","type":"dir","path":"/tmp/rx/src/srv/share","uid":0,"gid":0,'
    '"mode":2147484141,"permissions":"drwxr-xr-x","mtime":"2026-11-27T19:37:40Z",'
    '"atime":"2026-11-27T19:37:40Z","ctime":"2026-11-27T19:37:40Z","struct_type":"node"}',
    '{"name":"a.txt","type":"file","path":"/tmp/rx/src/srv/share/a.txt","uid":0,"gid":0,'
    '"size":6,"mode":420,"permissions":"-rw-r--r--","mtime":"2026-11-27T19:37:40Z",'
    '"atime":"2026-11-27T19:37:40Z","ctime":"2026-11-27T19:37:40Z","struct_type":"node"}',
    '{"name":"empty","type":"file","path":"/tmp/rx/src/srv/share/empty","uid":0,"gid":0,'
    '"size":0,"mode":420,"permissions":"-rw-r--r--","mtime":"2026-11-27T19:37:40Z",'
    '"atime":"2026-11-27T19:37:40Z","ctime":"2026-11-27T19:37:40Z","struct_type":"node"}',
    '{"name":"link","type":"symlink","path":"/tmp/rx/src/srv/share/link","uid":0,"gid":0,'
    '"mode":134218239,"permissions":"Lrwxrwxrwx","mtime":"2026-11-27T19:37:40Z",'
    '"atime":"2026-11-27T19:37:40Z","ctime":"2026-11-27T19:37:40Z","struct_type":"node"}',
    '{"name":"b.bin","type":"file","path":"/tmp/rx/src/srv/share/sub/b.bin","uid":0,"gid":0,'
    '"size":100000,"mode":420,"permissions":"-rw-r--r--","mtime":"2026-11-27T19:37:40Z",'
    '"atime":"2026-11-27T19:37:40Z","ctime":"2026-11-27T19:37:40Z","struct_type":"node"}',
]


def restore(stdout: list[tuple[str, float]], stderr=(), started_at=None, finished_at=None):
    messages = [parse.parse_line(line, at) for line, at in stdout]
    return parse.parse_restore_output(FULL_ID, TARGET, True, messages, stderr, started_at,
                                      finished_at)


def test_a_clean_verified_restore_is_split_at_the_verifying_line():
    summary = restore([(RESTORING, 100.5), (VERIFYING, 107.0), (VERIFIED, 109.0)],
                      started_at=100.0, finished_at=109.25)
    assert summary.files_verified == 2 and summary.verified
    assert summary.restore_seconds == pytest.approx(7.0)
    assert summary.verify_seconds == pytest.approx(2.25)
    assert summary.file_errors == () and summary.error_count == 0


def test_a_restore_with_a_corrupt_pack_names_the_files_and_skips_verification():
    summary = restore([(RESTORING, 100.5)], CORRUPT_STDERR, started_at=100.0, finished_at=104.0)
    assert summary.file_errors == (
        ("/tmp/rx/src/srv/share/sub/b.bin", "ciphertext verification failed"),
        ("/tmp/rx/src/srv/share/sub/b.bin", "UtimesNano: no such file or directory"))
    assert summary.error_count == 2
    assert summary.restore_seconds == pytest.approx(4.0)
    assert summary.verify_seconds is None and summary.files_verified is None


def test_restic_may_count_more_errors_than_it_printed():
    summary = restore([(RESTORING, 1.0)], [CORRUPT_STDERR[0], "Fatal: There were 7 errors"])
    assert len(summary.file_errors) == 1 and summary.error_count == 7
    assert restore([], ["There were 3 errors"]).error_count == 3


def test_without_the_process_times_there_is_no_split():
    summary = restore([(RESTORING, 1.0), (VERIFYING, 2.0), (VERIFIED, 3.0)])
    assert summary.restore_seconds is None and summary.verify_seconds is None
    assert summary.files_verified == 2


def test_a_restore_that_is_not_verified_has_all_its_time_in_restore():
    summary = restore([(RESTORING, 5.0)], started_at=2.0, finished_at=5.5)
    assert summary.restore_seconds == pytest.approx(3.5) and summary.verify_seconds is None


def test_other_stderr_lines_are_not_file_errors():
    summary = restore([], ["Load(<data/1234abcd>, 0, 0) returned error, retrying after 552ms: "
                           "connection refused", "ignoring error: no path", ""])
    assert summary.file_errors == () and summary.error_count == 0


@pytest.mark.parametrize("line, expected", [
    (CORRUPT_STDERR[0], ("/tmp/rx/src/srv/share/sub/b.bin", "ciphertext verification failed")),
    ("  ignoring error for /srv/with space/x: read: EOF  ",
     ("/srv/with space/x", "read: EOF")),
    ("Fatal: There were 2 errors", None),
    ("ignoring error for : nothing", None),
])
def test_restore_file_error(line, expected):
    assert parse.restore_file_error(line) == expected


def test_a_path_with_a_colon_and_space_is_split_at_the_first_and_resolved_by_the_drill():
    line = "ignoring error for /srv/share/Minutes: May.docx: ciphertext verification failed"
    path, reason = parse.restore_file_error(line)
    assert (path, reason) == ("/srv/share/Minutes", "May.docx: ciphertext verification failed")
    known = ["/srv/share/Minutes", "/srv/share/Minutes: May.docx", "/srv/other"]
    assert whole_error_path(path, reason, known) == "/srv/share/Minutes: May.docx"
    assert whole_error_path(path, reason, ["/srv/other"]) == "/srv/share/Minutes"


def test_parse_ls_skips_the_snapshot_line_and_sizes_only_files():
    nodes = parse.parse_ls([parse.parse_line(line) for line in LS]
                           + [parse.parse_line("some text line")])
    assert nodes == [Node("/tmp/rx/src/srv/share", "dir", 0),
                     Node("/tmp/rx/src/srv/share/a.txt", "file", 6),
                     Node("/tmp/rx/src/srv/share/empty", "file", 0),
                     Node("/tmp/rx/src/srv/share/link", "symlink", 0),
                     Node("/tmp/rx/src/srv/share/sub/b.bin", "file", 100000)]


@pytest.mark.parametrize("line", [
    '{"name":"x","type":"file","size":1,"struct_type":"node"}',
    '{"name":"x","path":"/x","struct_type":"node"}',
])
def test_parse_ls_refuses_a_node_without_path_or_type(line):
    with pytest.raises(ValueError, match="without path or type"):
        parse.parse_ls([parse.parse_line(line)])


def test_ls_command():
    assert ls_command(FULL_ID) == ("ls", "--json", "--", FULL_ID)
    assert ls_command("latest") == ("ls", "--json", "--", "latest")
    for bad in ("--host=x", "", "5abc 66d2"):
        with pytest.raises(UserError, match="bad snapshot id"):
            ls_command(bad)
