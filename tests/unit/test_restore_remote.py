"""The API restore's archive: what the centre streams (tar_stream) and what the client
agrees to extract (extract), on real files and hand-made hostile archives."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from drd.errors import OperationError
from drd.services.refusals import TooBusy
from drd.services.restore import remote
from drd.services.restore.remote import MAX_CONCURRENT, Slot, extract, sweep_scratch, tar_stream


def _tree(root: Path) -> None:
    (root / "etc" / "sub").mkdir(parents=True)
    (root / "etc" / "big.bin").write_bytes(os.urandom(3 * remote.CHUNK + 17))
    (root / "etc" / "shadow").write_text("secret\n")
    os.chmod(root / "etc" / "shadow", 0o000)  # restored as it was: unreadable
    os.link(root / "etc" / "big.bin", root / "etc" / "sub" / "hard.bin")
    os.symlink("/etc/passwd", root / "etc" / "passwd-link")
    os.mkfifo(root / "etc" / "pipe")
    (root / "ro").mkdir()
    (root / "ro" / "inside.txt").write_text("kept\n")
    os.chmod(root / "ro", 0o555)


def _state(root: Path) -> dict[str, tuple]:
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(directory) / name
            info = path.lstat()
            key = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                found[key] = ("link", os.readlink(path))
            elif stat.S_ISFIFO(info.st_mode):
                found[key] = ("fifo", stat.S_IMODE(info.st_mode))
            elif stat.S_ISDIR(info.st_mode):
                found[key] = ("dir", stat.S_IMODE(info.st_mode))
            else:
                os.chmod(path, info.st_mode | stat.S_IRUSR)
                found[key] = ("file", stat.S_IMODE(info.st_mode), path.read_bytes())
                os.chmod(path, info.st_mode)
    return found


def test_a_tree_goes_through_the_stream_as_it_was_and_the_copy_is_removed(tmp_path):
    source = tmp_path / "scratch" / "tree"
    source.mkdir(parents=True)
    _tree(source)
    expected = _state(source)
    ended = []
    chunks = list(tar_stream(source, on_end=lambda: ended.append(True)))
    assert ended == [True] and not source.exists()
    assert max(len(chunk) for chunk in chunks) <= 2 * remote.CHUNK  # never a whole file
    staging = tmp_path / "staging"
    staging.mkdir()
    files, size = extract(io.BytesIO(b"".join(chunks)), staging)
    assert _state(staging) == expected
    assert files == 4  # big.bin, its hard link as a file of its own, shadow, inside.txt
    assert size == 2 * (3 * remote.CHUNK + 17) + len("secret\n") + len("kept\n")


def test_an_abandoned_stream_stops_its_writer_and_removes_the_copy(tmp_path):
    source = tmp_path / "tree"
    source.mkdir()
    for index in range(12):
        (source / f"f{index}").write_bytes(os.urandom(remote.CHUNK))
    stream = tar_stream(source)
    next(stream)
    stream.close()
    assert not source.exists()


def _archive(*members: tuple[str, str, str | bytes]) -> io.BytesIO:
    """A tar of (kind, name, content or link target) members, kinds file/dir/sym/hard/dev."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as archive:
        for kind, name, value in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(value)
                archive.addfile(info, io.BytesIO(value))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE,
                         "hard": tarfile.LNKTYPE, "dev": tarfile.CHRTYPE}[kind]
            info.linkname = value if kind in ("sym", "hard") else ""
            archive.addfile(info)
    data.seek(0)
    return data


@pytest.mark.parametrize("members, why", [
    ([("file", "../escape", b"x")], "outside the target"),
    ([("file", "/etc/escape", b"x")], "outside the target"),
    ([("sym", "a", "/tmp"), ("file", "a/escape", b"x")], "beneath a symbolic link"),
    # the same name again: a file written through the link that came first
    ([("sym", "a", "/tmp/victim"), ("file", "a", b"x")], "came before"),
    ([("sym", "d", "/tmp"), ("dir", "d", "")], "came before"),
    ([("file", "f", b"x"), ("hard", "g", "f")], "neither a file"),
    ([("dev", "zero", "")], "neither a file"),
])
def test_a_hostile_archive_is_refused_before_it_writes_outside(tmp_path, members, why):
    staging = tmp_path / "staging"
    staging.mkdir()
    outside = tmp_path / "victim"
    with pytest.raises(OperationError, match=why):
        extract(_archive(*members), staging)
    assert not outside.exists()


def test_a_cut_archive_is_an_error_not_a_partial_success(tmp_path):
    whole = _archive(("file", "a", b"x" * 5000), ("file", "b", b"y" * 5000)).getvalue()
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(OperationError, match="broken or ended early"):
        extract(io.BytesIO(whole[:3000]), staging)


def test_restores_at_once_are_limited(tmp_path):
    slots = [Slot() for _ in range(MAX_CONCURRENT)]
    with pytest.raises(TooBusy, match="try again"):
        Slot()
    slots[0].release()
    slots[0].release()  # once only
    slots.append(Slot())
    for slot in slots[1:]:
        slot.release()


def test_scratch_copies_of_a_dead_daemon_are_swept_but_fresh_ones_stay(tmp_path):
    old = tmp_path / "restores" / "api-old"
    fresh = tmp_path / "restores" / "api-fresh"
    for directory in (old, fresh):
        (directory / "tree").mkdir(parents=True)
    os.utime(old, (0, 0))
    assert sweep_scratch(tmp_path) == 1
    assert not old.exists() and fresh.exists()



def _round_trip_in(work: Path) -> None:
    source = work / "tree"
    source.mkdir()
    _tree(source)
    expected = _state(source)
    staging = work / "staging"
    staging.mkdir()
    extract(io.BytesIO(b"".join(tar_stream(source))), staging)
    assert _state(staging) == expected


def test_an_ordinary_user_gets_unreadable_files_and_read_only_directories_through(
        tmp_path):
    """The centre runs as its own user and the owner as theirs: neither may rely on
    root's right to read and write anything (a 0000 file, a 0555 directory). As root,
    the round trip runs in a forked child that became the user nobody."""
    import shutil
    import tempfile
    import traceback

    if os.getuid() != 0:
        _round_trip_in(tmp_path)
        return
    work = Path(tempfile.mkdtemp(prefix="drd-nobody-", dir="/tmp"))
    os.chown(work, 65534, 65534)
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover -- the child reports through the pipe
        status = 0
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            _round_trip_in(work)
        except BaseException:  # noqa: BLE001
            os.write(writer, traceback.format_exc().encode()[-4000:])
            status = 1
        os._exit(status)
    os.close(writer)
    try:
        _, status = os.waitpid(child, 0)
        said = os.read(reader, 8192).decode()
        assert os.waitstatus_to_exitcode(status) == 0, said
    finally:
        os.close(reader)
        shutil.rmtree(work, ignore_errors=True)
