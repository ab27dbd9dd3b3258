"""The restore engine's own decisions: the watchdog on a store that stopped answering, the
check of a restored tree against the listing, the summary (no I/O)."""

from __future__ import annotations

from pathlib import Path

from drd.services.restore.engine import (
    PROGRESS_BYTES,
    Attempt,
    RestoreFailed,
    RestoreResult,
    _short,
    _Watchdog,
)
from drd.services.restore.staging import Tree, missing, unexpected


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def watchdog(clock, counter, probe, caller=lambda: False) -> _Watchdog:
    return _Watchdog(staging=Path("/nonexistent"), probe=probe, caller=caller,
                     stall_seconds=20, clock=clock, measure=lambda: counter[0])


def test_a_store_that_stops_answering_is_given_up_after_a_stall_and_a_failed_probe():
    clock, counter, probes = Clock(), [0], []

    def probe():
        probes.append(clock.now)
        raise ConnectionError("cannot reach http://127.0.0.1:9 (connection refused)")

    dog = watchdog(clock, counter, probe)
    for second in range(0, 60):  # restic receiving data: never probed
        clock.now, counter[0] = float(second), second * 10 * PROGRESS_BYTES
        assert not dog()
    assert probes == []
    for second in range(60, 79):  # restic retrying: a few bytes, not progress
        clock.now, counter[0] = float(second), counter[0] + 100
        assert not dog()
    clock.now = 79.0  # 20 s after the last progress
    assert dog() and dog.dead == "cannot reach http://127.0.0.1:9 (connection refused)"
    assert probes == [79.0] and not dog.interrupted


def test_a_slow_store_that_answers_keeps_its_restore_and_is_not_probed_too_often():
    clock, counter, probes = Clock(), [0], []
    dog = watchdog(clock, counter, lambda: probes.append(clock.now))
    for tenth in range(0, 600):
        clock.now = tenth / 10
        assert not dog()
    assert probes == [20.0, 30.0, 40.0, 50.0]


def test_the_callers_wish_stops_at_once_and_no_probe_means_no_watchdog():
    clock, counter = Clock(), [0]
    dog = watchdog(clock, counter, None, caller=lambda: True)
    assert dog() and dog.interrupted and dog.dead is None
    quiet = watchdog(clock, counter, None)
    clock.now = 1000.0
    assert not quiet()


def test_a_restored_tree_is_checked_against_the_listing():
    expected = {"/srv": "dir", "/srv/a": "file", "/srv/link": "symlink", "/srv/d": "dir",
                "/srv/d/b": "file", "/srv/fifo": "fifo"}
    good = Tree(entries={"/srv": "dir", "/srv/a": "file", "/srv/link": "symlink",
                         "/srv/d": "dir", "/srv/d/b": "file"}, files=2, bytes=3)
    assert unexpected(good, expected) == [] and missing(good, expected) == []
    odd = Tree(entries={**good.entries, "/srv/link": "dir", "/srv/link/passwd": "file",
                        "/etc": "dir"}, files=3, bytes=4)
    assert unexpected(odd, expected) == ["/etc", "/srv/link", "/srv/link/passwd"]
    lacking = Tree(entries={"/srv": "dir", "/srv/a": "file"}, files=1, bytes=1)
    assert missing(lacking, expected) == ["/srv/d", "/srv/d/b", "/srv/link"]


def test_the_summary_has_the_documented_fields():
    attempts = [Attempt("dc-a", 13.2, "unreachable"), Attempt("far", 1.0)]
    result = RestoreResult(system="fs1", snapshot="ab" * 32, snapshots=["ab" * 32],
                           time="2026-11-27T16:00:00+00:00", store="far", attempts=attempts,
                           files=3, bytes=42, seconds=14.23456, target="/tmp/r")
    document = result.as_dict()
    assert list(document)[:9] == ["system", "snapshot", "time", "store", "attempts", "files",
                                  "bytes", "seconds", "target"]
    assert document["attempts"][0] == {"store": "dc-a", "ok": False, "seconds": 13.2,
                                       "error": "unreachable"}
    assert document["seconds"] == 14.235
    failed = RestoreFailed("no store could restore fs1", system="fs1", attempts=attempts[:1],
                           snapshot=None, target="/tmp/r", seconds=1.0).as_dict()
    assert failed["store"] is None and failed["error"] == "no store could restore fs1"


def test_an_attempts_error_keeps_restics_fatal_line():
    error = Exception("restic ls: the store of repository dc-a/fs1 is unreachable\n"
                      "restic said:\n  Fatal: unable to open config file: connection refused\n"
                      "  Is there a repository at the following location?\n  s3:http://x/b")
    assert _short(error) == ("restic ls: the store of repository dc-a/fs1 is unreachable: "
                             "Fatal: unable to open config file: connection refused")
