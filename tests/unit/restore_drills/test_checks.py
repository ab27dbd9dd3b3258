"""restore_drills.checks: counts, the manifest comparison, the negative control and the
application checks (the last two on real files under tmp_path, as their job is files)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from agents.manifest import in_sample
from restore_drills.checks import (
    SHOWN_PATHS,
    RestoredFile,
    check_argv,
    compare_manifest,
    count_check,
    file_sha256,
    manifest_entries,
    negative_control,
    restored_files,
    run_application_check,
)

MTIME = 1_764_000_000_123_456_789


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry(path: str, data: bytes, mtime_ns: int | None = MTIME) -> dict:
    return {"path": path, "size": len(data), "sha256": sha(data), "mtime_ns": mtime_ns}


def write(root: Path, path: str, data: bytes, mtime_ns: int = MTIME) -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    os.utime(target, ns=(mtime_ns, mtime_ns))
    return target


# -- counts --------------------------------------------------------------------------------


def test_count_check_passes_when_files_and_bytes_agree():
    restored = {"/a": RestoredFile(3, 0), "/b/c": RestoredFile(0, 0)}
    count, size, wrong = count_check(restored, {"/a": 3, "/b/c": 0})
    assert count.passed and size.passed and wrong == []
    assert count.detail == "2 files restored, 2 expected"
    assert size.detail == "3 bytes restored, 3 expected"


def test_count_check_names_missing_and_resized_files():
    restored = {"/a": RestoredFile(4, 0), "/extra": RestoredFile(1, 0)}
    count, size, wrong = count_check(restored, {"/a": 3, "/b": 2})
    assert not count.passed and "missing: /b" in count.detail
    assert not size.passed and "another size: /a" in size.detail
    assert wrong == ["/a", "/b"]


def test_count_check_fails_on_an_extra_file_with_the_same_totals():
    restored = {"/a": RestoredFile(3, 0), "/b": RestoredFile(0, 0)}
    count, size, wrong = count_check(restored, {"/a": 3})
    assert not count.passed and size.passed and wrong == []


def test_count_detail_names_a_few_paths_and_counts_the_rest():
    expected = {f"/f{n:02}": 1 for n in range(SHOWN_PATHS + 3)}
    count, _, wrong = count_check({}, expected)
    assert count.detail.endswith("/f04 and 3 more") and len(wrong) == SHOWN_PATHS + 3


# -- reading the tree ----------------------------------------------------------------------


def test_restored_files_are_keyed_by_snapshot_path_and_links_are_not_followed(tmp_path):
    write(tmp_path, "/srv/share/a.txt", b"abc")
    write(tmp_path, "/srv/share/sub dir/b.bin", b"")
    (tmp_path / "srv/share/link").symlink_to("a.txt")
    (tmp_path / "srv/empty").mkdir()
    found = restored_files(tmp_path)
    assert found == {"/srv/share/a.txt": RestoredFile(3, MTIME),
                     "/srv/share/sub dir/b.bin": RestoredFile(0, MTIME)}
    assert restored_files(tmp_path / "nowhere") == {}


def test_file_sha256_reads_by_snapshot_path(tmp_path):
    write(tmp_path, "/srv/a.txt", b"abc")
    assert file_sha256(tmp_path, "/srv/a.txt") == sha(b"abc")
    assert file_sha256(tmp_path, "/srv/missing") is None


# -- the manifest --------------------------------------------------------------------------


def test_manifest_entries_follow_the_sample_and_the_selection_sorted():
    paths = [f"/srv/f{n}" for n in range(200)]
    manifests = [{"files": [{"path": p} for p in paths[100:]]},
                 {"files": [{"path": p} for p in paths[:100]] + [{"size": 1}]},
                 {"files": None}]
    chosen = manifest_entries(manifests, 30, None)
    assert [e["path"] for e in chosen] == sorted(p for p in paths if in_sample(p, 30))
    selected = dict.fromkeys(paths[:10], 1)
    assert [e["path"] for e in manifest_entries(manifests, 100, selected)] == \
        sorted(paths[:10])
    assert manifest_entries(manifests, 0, None) == []


def test_compare_manifest_sorts_matched_differ_missing_and_changed():
    data = {"/ok": b"fine", "/bad": b"rotten", "/short": b"ab", "/gone": b"x",
            "/moved": b"new", "/no-mtime": b"fine too"}
    entries = [entry("/ok", b"fine"), entry("/bad", b"intact"), entry("/short", b"abc"),
               entry("/gone", b"x"), entry("/moved", b"old"),
               entry("/no-mtime", b"fine too", mtime_ns=None)]
    restored = {path: RestoredFile(len(content), MTIME) for path, content in data.items()
                if path != "/gone"}
    restored["/moved"] = RestoredFile(3, MTIME + 1)
    result = compare_manifest(entries, restored, lambda path: sha(data[path]))
    assert result.differ == ["/bad", "/short"] and result.missing == ["/gone"]
    assert result.changed == ["/moved"]
    assert [e["path"] for e in result.matched] == ["/ok", "/no-mtime"]
    assert result.checked == 4 and not result.ok
    outcome = result.outcome()
    assert not outcome.passed
    assert outcome.detail == ("4 files compared with the agent's manifest; 2 differ: /bad, "
                              "/short; 1 not restored: /gone; 1 changed while the backup ran "
                              "(not judged)")


def test_a_file_changed_during_the_backup_is_not_held_against_the_drill():
    entries = [entry("/a", b"aa"), entry("/b", b"bb")]
    restored = {"/a": RestoredFile(2, MTIME), "/b": RestoredFile(2, MTIME - 5)}
    result = compare_manifest(entries, restored, lambda path: sha(b"aa"))
    assert result.ok and result.changed == ["/b"] and result.outcome().passed


def test_nothing_compared_fails():
    result = compare_manifest([entry("/a", b"a")], {"/a": RestoredFile(1, 0)}, sha)
    assert result.changed == ["/a"] and not result.outcome().passed
    assert "nothing could be compared" in compare_manifest([], {}, sha).outcome().detail


# -- the negative control ------------------------------------------------------------------


def test_the_negative_control_is_caught_and_leaves_the_file_as_it_was(tmp_path):
    small, large = b"0123456789", b"z" * 1000
    target = write(tmp_path, "/srv/share/small.txt", small)
    write(tmp_path, "/srv/share/large.bin", large)
    write(tmp_path, "/srv/share/empty", b"")
    target.chmod(0o444)  # restic restores modes; the control must still get in
    restored = restored_files(tmp_path)
    matched = [entry("/srv/share/large.bin", large), entry("/srv/share/empty", b""),
               entry("/srv/share/small.txt", small)]
    outcome = negative_control(tmp_path, matched, restored)
    assert outcome.passed, outcome.detail
    assert "/srv/share/small.txt (offset 5) was caught" in outcome.detail
    assert target.read_bytes() == small
    info = os.stat(target)
    assert info.st_mtime_ns == MTIME and stat.S_IMODE(info.st_mode) == 0o444


def test_the_negative_control_without_a_candidate_fails(tmp_path):
    write(tmp_path, "/srv/empty", b"")
    outcome = negative_control(tmp_path, [entry("/srv/empty", b"")], restored_files(tmp_path))
    assert not outcome.passed and "nothing to change" in outcome.detail
    assert not negative_control(tmp_path, [], {}).passed


def test_a_negative_control_that_is_not_caught_fails(tmp_path):
    # an entry whose mtime disagrees is "changed", never "differ": the control sees no catch
    write(tmp_path, "/srv/a", b"abc")
    outcome = negative_control(tmp_path, [entry("/srv/a", b"abc", mtime_ns=1)],
                               restored_files(tmp_path))
    assert not outcome.passed and "NOT caught" in outcome.detail
    assert (tmp_path / "srv/a").read_bytes() == b"abc"


# -- application checks --------------------------------------------------------------------


def test_check_argv_substitutes_the_restored_root_anywhere_in_an_argument():
    argv = check_argv(["sqlite3", ":memory:", ".read {restored}/app.sql", "{restored}"],
                      Path("/drills/d-1/restored"))
    assert argv == ["sqlite3", ":memory:", ".read /drills/d-1/restored/app.sql",
                    "/drills/d-1/restored"]


def test_an_application_check_passes_and_runs_in_the_restored_tree(tmp_path):
    write(tmp_path, "/app/state", b"ok\n")
    outcome = run_application_check(
        {"name": "state", "command": ["cat", "{restored}/app/state"], "expect_stdout": "ok"},
        tmp_path)
    assert outcome.passed and outcome.detail.startswith("exit 0, stdout 'ok' in ")
    pwd = run_application_check({"name": "pwd", "command": ["pwd"],
                                 "expect_stdout": str(tmp_path)}, tmp_path)
    assert pwd.passed, pwd.detail


@pytest.mark.parametrize("check, detail", [
    ({"command": ["sh", "-c", "echo broken >&2; exit 3"]},
     "exit 3 (expected 0); stderr: broken"),
    ({"command": ["true"], "expect_exit": 1}, "exit 0 (expected 1)"),
    ({"command": ["echo", "not ok"], "expect_stdout": "ok"},
     "stdout 'not ok' (expected 'ok')"),
    ({"command": ["drd-no-such-program-here"]},
     "could not run drd-no-such-program-here: No such file or directory"),
])
def test_an_application_check_fails(tmp_path, check, detail):
    outcome = run_application_check({"name": "x", **check}, tmp_path)
    assert not outcome.passed and outcome.detail == detail


def test_an_application_check_that_runs_too_long_times_out(tmp_path):
    outcome = run_application_check({"name": "slow", "command": ["sleep", "5"],
                                     "timeout": 0.5}, tmp_path)
    assert outcome == outcome.__class__(False, "timed out after 0.5 s")


def test_a_duration_timeout_as_the_policy_stores_it(tmp_path):
    assert run_application_check({"name": "t", "command": ["true"], "timeout": "10m"},
                                 tmp_path).passed


def test_an_application_check_sees_no_secret_environment(tmp_path, monkeypatch):
    for name in ("AWS_SECRET_ACCESS_KEY", "RESTIC_PASSWORD", "DRD_MASTER_KEY"):
        monkeypatch.setenv(name, "s3cr3t-value")
    monkeypatch.setenv("TZ", "UTC")
    outcome = run_application_check(
        {"name": "env", "command": ["sh", "-c",
                                    "env | grep -E '^(AWS_|RESTIC_|DRD_)|s3cr3t' | wc -l"],
         "expect_stdout": "0"}, tmp_path)
    assert outcome.passed, outcome.detail
    tz = run_application_check({"name": "tz", "command": ["sh", "-c", "echo $TZ"],
                                "expect_stdout": "UTC"}, tmp_path)
    assert tz.passed, tz.detail
