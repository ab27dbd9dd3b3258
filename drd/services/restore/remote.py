"""Restores for callers of the API (``drd --server URL restore``): a system owner gets
the files on their own machine without an account on the centre's.

The centre restores as ``drd restore`` does (the same snapshot choice, store order,
fallback and audit entry, named after the token) into a scratch directory of its own,
then streams the restored tree as a tar archive (:func:`tar_stream`); the scratch
directory is removed when the stream ends, however it ends, and leftovers of a daemon
that died are swept when the next one starts (:func:`sweep_scratch`). The client
extracts the stream with :func:`extract` into a staging directory inside its target and
moves it into place, as a local restore does.

What a remote restore does not carry: owners (the centre's restic runs as its own user,
and a file's owner on the centre means nothing on the owner's machine: files belong to
whoever extracts them), set-user-ID and set-group-ID bits (dropped, since the owner
changed), hard links (sent as separate files), and device nodes (refused).
"""

from __future__ import annotations

import io
import logging
import os
import queue
import stat
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from drd.errors import OperationError
from drd.services.refusals import TooBusy
from drd.services.restore.staging import remove_tree

log = logging.getLogger(__name__)

CHUNK = 1 << 20
QUEUED_CHUNKS = 8  # the most the writer runs ahead of the network: 8 MiB
SCRATCH = "restores"  # under the centre's home
SWEEP_AFTER_SECONDS = 3600
MAX_CONCURRENT = 2
"""API restores at once: each holds a worker thread and a copy of a system on disk."""

_running = threading.BoundedSemaphore(MAX_CONCURRENT)


def scratch_directory(home: Path) -> Path:
    """A new 0700 directory for one API restore, under ``home/restores``."""
    parent = home / SCRATCH
    parent.mkdir(mode=0o700, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="api-", dir=parent))


def sweep_scratch(home: Path, *, older_than: float = SWEEP_AFTER_SECONDS) -> int:
    """Remove scratch directories of API restores left by a daemon that died; return how
    many. Only those untouched for ``older_than`` seconds: another daemon on the same
    home may be streaming one."""
    parent = home / SCRATCH
    removed = 0
    if not parent.is_dir():
        return 0
    cutoff = time.time() - older_than
    for entry in parent.iterdir():
        if entry.name.startswith("api-") and entry.lstat().st_mtime < cutoff:
            remove_tree(entry)
            removed += 1
    return removed


class Slot:
    """One of the :data:`MAX_CONCURRENT` places for an API restore, released once."""

    def __init__(self) -> None:
        if not _running.acquire(blocking=False):
            raise TooBusy(f"{MAX_CONCURRENT} restores are running on the centre already: "
                       "try again in a while")
        self._held = True
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            if self._held:
                self._held = False
                _running.release()


# -- the centre: the restored tree as a tar stream ----------------------------------------


class _Pipe(io.RawIOBase):
    """A write-only file whose chunks go into a bounded queue (the writer blocks when the
    network is slower), until ``stopped`` is set by the reader going away."""

    def __init__(self, chunks: queue.Queue, stopped: threading.Event) -> None:
        self._chunks = chunks
        self._stopped = stopped
        self._buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._buffer += data
        if len(self._buffer) >= CHUNK:
            self.flush_chunk()
        return len(data)

    def flush_chunk(self) -> None:
        if self._buffer:
            self.put(bytes(self._buffer))
            self._buffer.clear()

    def put(self, item) -> None:
        while not self._stopped.is_set():
            try:
                self._chunks.put(item, timeout=1)
                return
            except queue.Full:
                continue
        raise _Abandoned()


class _Abandoned(Exception):
    """The stream's reader went away."""


_END = object()


def _readable(path: Path, info: os.stat_result) -> None:
    """Let the centre read its own private copy of a file or directory restored without
    read permission (``/etc/shadow`` is 0000 on some systems); the archive keeps the
    mode restic restored, taken before."""
    wanted = stat.S_IRUSR | (stat.S_IXUSR if stat.S_ISDIR(info.st_mode) else 0)
    if stat.S_IMODE(info.st_mode) & wanted != wanted:
        os.chmod(path, stat.S_IMODE(info.st_mode) | wanted)


def _write_archive(root: Path, pipe: _Pipe) -> None:
    with tarfile.open(fileobj=pipe, mode="w|", format=tarfile.PAX_FORMAT,
                      bufsize=64 * 1024) as archive:
        pending = [root / name for name in sorted(os.listdir(root), reverse=True)]
        while pending:  # depth first, by name: a directory before what it holds
            path = pending.pop()
            info = path.lstat()
            entry = archive.gettarinfo(str(path), arcname=str(path.relative_to(root)))
            archive.inodes.clear()  # a hard link goes as a file of its own
            if entry.ischr() or entry.isblk():
                log.warning("restore archive: %s is a device node, not sent", entry.name)
                continue
            _readable(path, info)
            if entry.isreg():
                with open(path, "rb") as content:
                    archive.addfile(entry, content)
            else:
                archive.addfile(entry)
            if entry.isdir():
                pending.extend(path / name for name in sorted(os.listdir(path), reverse=True))
    pipe.flush_chunk()


def tar_stream(root: Path, *, on_end: Callable[[], None] | None = None) -> Iterator[bytes]:
    """The tree under ``root`` as a tar archive (PAX), in chunks of about 1 MiB, written
    by a thread of its own that runs at most 8 MiB ahead. Links are archived as links,
    never followed. ``root`` is removed and ``on_end`` called when the iteration ends or
    is abandoned; a failure while writing ends the stream early (the client sees a
    broken archive) and is logged."""
    chunks: queue.Queue = queue.Queue(maxsize=QUEUED_CHUNKS)
    stopped = threading.Event()
    pipe = _Pipe(chunks, stopped)

    def write() -> None:
        try:
            _write_archive(root, pipe)
            pipe.put(_END)
        except _Abandoned:
            pass
        except Exception as error:  # noqa: BLE001 -- said to the reader, then logged
            log.error("restore archive of %s broke off: %s", root, error)
            try:
                pipe.put(error)
            except _Abandoned:
                pass

    writer = threading.Thread(target=write, name="restore-archive", daemon=True)
    writer.start()
    try:
        while True:
            item = chunks.get()
            if item is _END:
                return
            if isinstance(item, Exception):
                raise OperationError(f"the restored tree could not be sent: {item}")
            yield item
    finally:
        stopped.set()
        writer.join()
        remove_tree(root)
        if on_end is not None:
            on_end()


# -- the client: extracting what the centre sent ------------------------------------------


def _refusal(member: tarfile.TarInfo, seen: set[str], links: set[str]) -> str | None:
    """Why ``member`` must not be extracted (None: it may)."""
    parts = Path(member.name).parts
    if not parts or member.name.startswith("/") or ".." in parts:
        return "a path outside the target"
    name = str(Path(*parts))
    if name in seen:
        return "a name that came before"
    for depth in range(1, len(parts)):
        if str(Path(*parts[:depth])) in links:
            return "a path beneath a symbolic link"
    if not (member.isfile() or member.isdir() or member.issym() or member.isfifo()):
        return "neither a file, a directory, a symbolic link nor a FIFO"
    return None


def extract(stream: IO[bytes], staging: Path, *,
            on_file: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Extract a tar stream from :func:`tar_stream` into ``staging``; return (files, bytes).

    Every member is checked first: absolute names, ``..``, a name that came before,
    anything beneath a link, devices and hard links are refused (the centre never sends
    them: an archive that holds one is not the centre's). Symbolic links are created as
    links. Files belong to the user extracting, without set-user/group-ID bits;
    directories get their modes and times last, so that a read-only one can be filled.
    ``on_file(size)`` is called after each file (a progress bar).

    Raises:
        OperationError: the stream is not a tar archive, ends early, holds a refused
            member, or a file cannot be written here.
    """
    files = size = 0
    seen: set[str] = set()
    links: set[str] = set()
    directories: list[tarfile.TarInfo] = []
    uid, gid = os.getuid(), os.getgid()
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                problem = _refusal(member, seen, links)
                if problem:
                    raise OperationError(f"the centre's archive holds {member.name!r}: "
                                         f"{problem}; nothing of it was moved into place")
                seen.add(str(Path(member.name)))
                if member.issym():
                    links.add(str(Path(member.name)))
                member.uid, member.gid, member.uname, member.gname = uid, gid, "", ""
                member.mode &= ~(stat.S_ISUID | stat.S_ISGID)
                if member.isdir():
                    directories.append(member)
                    (staging / member.name).mkdir(mode=0o700, parents=True)
                    continue
                archive.extract(member, staging, set_attrs=True, numeric_owner=True,
                                **_TRUSTED)
                if member.isfile():
                    files += 1
                    size += member.size
                    if on_file is not None:
                        on_file(member.size)
        for directory in reversed(directories):  # the deepest first
            path = staging / directory.name
            os.chmod(path, stat.S_IMODE(directory.mode))
            os.utime(path, (directory.mtime, directory.mtime))
    except (tarfile.TarError, EOFError) as error:
        raise OperationError(f"the centre's archive is broken or ended early ({error}): "
                             "try again") from None
    except OSError as error:
        raise OperationError(f"cannot write {error.filename or staging}: "
                             f"{error.strerror or error}") from None
    return files, size


# our own checks above replace tarfile's filters (whose "data" filter would refuse the
# absolute symbolic links a system's tree holds, such as /etc/localtime's)
_TRUSTED = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}

