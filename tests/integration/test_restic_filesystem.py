"""The restic runner against real restic and a repository on the local filesystem."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from drd.errors import OperationError
from drd.restic import (
    KeepRules,
    ProgressEvent,
    Repository,
    Restic,
    ResticError,
    ResticLocked,
    ResticRepositoryExists,
    ResticRepositoryMissing,
    ResticSnapshotMissing,
    ResticTooOld,
    ResticVersion,
    ResticWrongPassword,
    SourceMissing,
)
from drd.secrets import Secret

pytestmark = pytest.mark.integration

PASSWORD = "integration-test-password-8c1f"


@pytest.fixture
def restic(restic_binary: str, tmp_path: Path) -> Restic:
    return Restic(restic_binary, cache_dir=tmp_path / "cache")


@pytest.fixture
def repository(tmp_path: Path) -> Repository:
    return Repository(url=Secret(str(tmp_path / "repo")), password=Secret(PASSWORD),
                      display="local-test-repo")


@pytest.fixture(scope="session")
def template_repository(restic_binary: str, tmp_path_factory) -> Path:
    """One empty repository made per session: init costs seconds (key derivation)."""
    path = tmp_path_factory.mktemp("restic-template") / "repo"
    template = Repository(url=Secret(str(path)), password=Secret(PASSWORD))
    Restic(restic_binary, cache_dir=path.parent / "cache").init(template)
    return path


@pytest.fixture
def initialised(repository: Repository, template_repository: Path) -> Repository:
    """An empty initialised repository at ``tmp_path / "repo"`` (a copy of the template)."""
    shutil.copytree(template_repository, repository.url.reveal())
    return repository


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "source"
    (root / "docs" / "deep").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "hello.txt").write_text("hello, drd\n")
    (root / "docs" / "report.csv").write_text("a,b\n1,2\n" * 1000)
    (root / "docs" / "deep" / "random.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    (root / "empty.file").write_bytes(b"")
    (root / "link").symlink_to("hello.txt")
    return root


def assert_same_tree(expected: Path, actual: Path) -> None:
    """Every file and directory in ``expected`` exists in ``actual`` with equal bytes."""
    expected_names = sorted(p.relative_to(expected) for p in expected.rglob("*"))
    actual_names = sorted(p.relative_to(actual) for p in actual.rglob("*"))
    assert expected_names == actual_names
    for name in expected_names:
        left, right = expected / name, actual / name
        if left.is_symlink():
            assert os.readlink(left) == os.readlink(right)
        elif left.is_file():
            assert filecmp.cmp(left, right, shallow=False), name


@pytest.mark.slow
def test_full_cycle(restic: Restic, repository: Repository, source: Path, tmp_path: Path):
    assert restic.version() >= ResticVersion(0, 14, 0)
    repository_id = restic.init(repository)
    assert repository_id and restic.config(repository).id.startswith(repository_id)

    events: list[ProgressEvent] = []
    summary = restic.backup(repository, [source], excludes=["*.tmp"], tags=["daily", "fs"],
                            host="web-1", progress=events.append)
    assert len(summary.snapshot_id) == 64 and summary.snapshot_id.startswith(summary.short_id)
    assert summary.files_new == summary.total_files_processed >= 4
    assert not summary.partial and summary.errors == ()
    assert summary.total_bytes_processed > 3 * 1024 * 1024
    assert events and all(isinstance(event, ProgressEvent) for event in events)
    assert all(0.0 <= event.percent_done <= 1.0 for event in events)

    (source / "hello.txt").write_text("changed\n")
    second = restic.backup(repository, [source], host="web-1")
    assert second.files_changed == 1

    snapshots = restic.snapshots(repository)
    assert [s.id for s in snapshots] == [summary.snapshot_id, second.snapshot_id]
    first = snapshots[0]
    assert first.tags == ("daily", "fs") and first.hostname == "web-1"
    assert first.paths == (str(source),) and first.parent is None
    assert first.time.tzinfo is not None
    assert snapshots[1].parent == summary.snapshot_id and snapshots[1].tags == ()
    assert [s.id for s in restic.snapshots(repository, tags=["daily"])] == [summary.snapshot_id]
    assert restic.snapshots(repository, host="nobody") == []

    target = tmp_path / "restored"
    restored = restic.restore(repository, second.snapshot_id, target, verify=True)
    assert restored.verified and restored.files_verified == summary.total_files_processed
    assert_same_tree(source, target / str(source).lstrip("/"))

    only = tmp_path / "only-docs"
    restic.restore(repository, "latest", only, includes=[str(source / "docs")])
    assert (only / str(source).lstrip("/") / "docs" / "report.csv").exists()
    assert not (only / str(source).lstrip("/") / "hello.txt").exists()

    assert restic.check(repository).ok
    subset = restic.check(repository, read_data_subset="1/2")
    assert subset.ok and subset.read_data_subset == "1/2"
    assert restic.check(repository, read_data=True).ok

    forgotten = restic.forget(repository, [summary.snapshot_id], prune=True)
    assert forgotten.removed == (summary.snapshot_id,) and forgotten.missing == ()
    assert [s.id for s in restic.snapshots(repository)] == [second.snapshot_id]
    again = restic.forget(repository, [summary.snapshot_id])
    assert again.removed == () and again.missing == (summary.snapshot_id,)
    assert restic.check(repository, read_data=True).ok


@pytest.mark.slow
def test_forget_by_keep_rules(restic: Restic, initialised: Repository, source: Path):
    made = [restic.backup(initialised, [source]).snapshot_id for _ in range(3)]
    result = restic.forget(initialised, keep=KeepRules(last=1))
    assert result.kept == (made[-1],) and set(result.removed) == set(made[:-1])


def test_missing_source_is_refused_before_running(
    restic: Restic, initialised: Repository, source: Path
):
    with pytest.raises(SourceMissing) as raised:
        restic.backup(initialised, [source, source / "not-there"])
    assert raised.value.paths == (str(source / "not-there"),)
    assert raised.value.snapshot_id is None and "does not exist" in str(raised.value)
    assert restic.snapshots(initialised) == []


def test_source_vanishing_under_restic_is_detected(
    restic: Restic, initialised: Repository, source: Path, monkeypatch
):
    # the path disappears between drd's check and restic's: restic 0.14 only warns
    monkeypatch.setattr("drd.restic.runner.os.path.lexists", lambda path: True)
    with pytest.raises(SourceMissing) as raised:
        restic.backup(initialised, [source, source / "vanished"])
    assert raised.value.paths == (str(source / "vanished"),)
    (saved,) = restic.snapshots(initialised)
    assert raised.value.snapshot_id == saved.id
    with pytest.raises(SourceMissing) as raised:
        restic.backup(initialised, [source / "gone-too"])
    assert raised.value.snapshot_id is None
    assert len(restic.snapshots(initialised)) == 1


def test_unreadable_file_gives_a_partial_summary(
    restic: Restic, initialised: Repository, source: Path
):
    if os.geteuid() == 0:
        # root reads any file; /proc/PID/mem of another process fails with EIO
        sleeper = subprocess.Popen(["sleep", "60"])
        unreadable = f"/proc/{sleeper.pid}/mem"
    else:
        sleeper = None
        unreadable = str(source / "secret.txt")
        Path(unreadable).write_text("no")
        os.chmod(unreadable, 0)
    try:
        summary = restic.backup(initialised, [source, unreadable])
    finally:
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait()
    assert summary.partial
    assert [error.item for error in summary.errors] == [unreadable]
    assert summary.errors[0].message
    assert [s.id for s in restic.snapshots(initialised)] == [summary.snapshot_id]


def test_wrong_password(restic: Restic, initialised: Repository):
    wrong = Repository(url=initialised.url, password=Secret("not-the-password-4a7"),
                       display="local-test-repo")
    with pytest.raises(ResticWrongPassword) as raised:
        restic.snapshots(wrong)
    error = raised.value
    text = str(error) + repr(error) + " ".join(error.stderr_tail) + " ".join(error.command)
    assert "not-the-password-4a7" not in text and PASSWORD not in text
    assert "local-test-repo" in str(error) and error.exit_code == 1
    assert error.command[-2:] == ("snapshots", "--json")


def test_parent_environment_password_is_not_used(
    restic_binary: str, initialised: Repository, tmp_path: Path
):
    environ = {**os.environ, "RESTIC_PASSWORD": "wrong", "RESTIC_REPOSITORY": "/nowhere"}
    restic = Restic(restic_binary, cache_dir=tmp_path / "cache", environ=environ)
    assert restic.snapshots(initialised) == []


def test_missing_repository_and_double_init(
    restic: Restic, repository: Repository, tmp_path: Path
):
    with pytest.raises(ResticRepositoryMissing, match="no restic repository at local-test"):
        restic.snapshots(repository)
    restic.init(repository)
    with pytest.raises(ResticRepositoryExists):
        restic.init(repository)


def test_restore_of_unknown_snapshot(restic: Restic, initialised: Repository, tmp_path: Path):
    with pytest.raises(ResticSnapshotMissing):
        restic.restore(initialised, "abcdef12", tmp_path / "nowhere")


@pytest.mark.slow
def test_backup_stdin_from_bytes_file_and_generator(
    restic: Restic, initialised: Repository, tmp_path: Path
):
    dump = os.urandom(2 * 1024 * 1024) + b"-- end of dump\n"
    dump_file = tmp_path / "dump.sql"
    dump_file.write_bytes(dump)

    def chunks():
        for offset in range(0, len(dump), 100_000):
            yield dump[offset:offset + 100_000]

    with dump_file.open("rb") as stream:
        from_file = restic.backup_stdin(initialised, stream, "from-file.sql", tags=["db"])
    from_bytes = restic.backup_stdin(initialised, dump, "from-bytes.sql", host="db-1")
    from_generator = restic.backup_stdin(initialised, chunks(), "from-generator.sql")
    snapshots = {s.id: s for s in restic.snapshots(initialised)}
    assert snapshots[from_file.snapshot_id].paths == ("/from-file.sql",)
    assert snapshots[from_file.snapshot_id].tags == ("db",)
    assert snapshots[from_bytes.snapshot_id].hostname == "db-1"
    for summary, name in ((from_file, "from-file.sql"), (from_bytes, "from-bytes.sql"),
                          (from_generator, "from-generator.sql")):
        target = tmp_path / f"restored-{name}"
        restic.restore(initialised, summary.snapshot_id, target)
        assert (target / name).read_bytes() == dump


def test_backup_stdin_whose_source_fails_saves_nothing(
    restic: Restic, initialised: Repository
):
    def failing_dump():
        yield b"BEGIN;\n" * 10_000
        raise RuntimeError("pg_dump exited with status 1")

    with pytest.raises(OperationError, match="pg_dump exited with status 1") as raised:
        restic.backup_stdin(initialised, failing_dump(), "app.sql")
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert restic.snapshots(initialised) == []
    assert restic.check(initialised).ok  # restic was stopped cleanly: no stale lock


def test_progress_callback_that_raises_stops_restic(
    restic: Restic, initialised: Repository, source: Path
):
    def stop(event: ProgressEvent) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        restic.backup(initialised, [source], progress=stop)
    assert restic.snapshots(initialised) == []
    assert restic.check(initialised).ok  # restic was stopped cleanly: no stale lock


def _restic_processes(binary: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0] == binary.encode() and b"--password-file" in argv:
            found.append(int(entry.name))
    return found


def test_password_is_in_neither_argv_nor_environment_of_the_child(
    restic: Restic, initialised: Repository, tmp_path: Path
):
    seen: dict[str, bytes] = {}

    def spy():
        # restic is running and waiting for stdin: look at it from outside
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            for pid in _restic_processes(restic.binary):
                proc = Path(f"/proc/{pid}")
                try:
                    seen["cmdline"] = (proc / "cmdline").read_bytes()
                    seen["environ"] = (proc / "environ").read_bytes()
                except OSError:
                    continue
            time.sleep(0.02)
        yield b"data"

    restic.backup_stdin(initialised, spy(), "spy.txt")
    assert seen, "restic was not seen running"
    assert PASSWORD.encode() not in seen["cmdline"]
    assert PASSWORD.encode() not in seen["environ"]
    assert b"--password-file\0/dev/fd/" in seen["cmdline"]
    assert str(tmp_path / "repo").encode() not in seen["cmdline"]
    assert b"RESTIC_REPOSITORY=" + str(tmp_path / "repo").encode() in seen["environ"]


def test_a_locked_repository(restic: Restic, initialised: Repository, tmp_path: Path):
    locks = tmp_path / "repo" / "locks"
    outcome: dict[str, BaseException] = {}

    def hold_the_lock():
        deadline = time.monotonic() + 10
        while not any(locks.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            restic.check(initialised)  # needs an exclusive lock; the backup holds one
        except ResticError as error:
            outcome["error"] = error
        yield b"data"

    restic.backup_stdin(initialised, hold_the_lock(), "locked.txt")
    assert isinstance(outcome.get("error"), ResticLocked)
    assert "is locked by another restic process" in str(outcome["error"])


@pytest.mark.slow
def test_check_reports_a_damaged_repository(
    restic: Restic, initialised: Repository, source: Path, tmp_path: Path
):
    restic.backup(initialised, [source])
    pack = max((tmp_path / "repo" / "data").rglob("*"), key=lambda p: p.stat().st_size)
    os.chmod(pack, 0o600)
    with pack.open("r+b") as handle:
        handle.seek(200)
        handle.write(b"corruption")
    result = restic.check(initialised, read_data=True)
    assert not result.ok and result.read_data
    assert any("does not match" in line for line in result.errors)


def _fake_restic(tmp_path: Path, version_line: str) -> Path:
    """A stand-in binary that only answers ``version`` (a fake, for version parsing)."""
    fake = tmp_path / "fake-restic"
    fake.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    fake.chmod(0o755)
    return fake


def test_old_restic_is_refused(tmp_path: Path, repository: Repository):
    fake = _fake_restic(tmp_path, "restic 0.9.6 compiled with go1.13.4 on linux/amd64")
    restic = Restic(fake)
    assert restic.version() == ResticVersion(0, 9, 6)
    with pytest.raises(ResticTooOld) as raised:
        restic.snapshots(repository)
    assert "0.9.6" in str(raised.value) and str(fake) in str(raised.value)
    assert "apt-get install restic" in str(raised.value)


def test_a_binary_that_is_not_restic(tmp_path: Path, repository: Repository):
    restic = Restic(_fake_restic(tmp_path, "borg 1.2.4"))
    with pytest.raises(OperationError, match="does not look like restic"):
        restic.snapshots(repository)
