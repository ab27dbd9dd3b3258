"""Restores for callers of the API (``drd --server URL restore``): a system owner gets
the files on their own machine without an account on the centre's.

The centre restores as ``drd restore`` does (the same snapshot choice, store order,
fallback and audit entry, named after the token) into a scratch directory of its own,
then streams the restored tree as a tar archive; the scratch directory is removed when
the stream ends, however it ends. The client extracts it with :func:`extract` into a
staging directory inside its target and moves it into place (as a local restore does).
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from drd.errors import OperationError
from drd.services.restore.staging import remove_tree

CHUNK = 1 << 20
SCRATCH = "restores"  # under the centre's home


def scratch_directory(home: Path) -> Path:
    """A new 0700 directory for one API restore, under ``home/restores``."""
    parent = home / SCRATCH
    parent.mkdir(mode=0o700, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="api-", dir=parent))


class _Chunks(io.RawIOBase):
    """A write-only file whose bytes are collected for the response to send."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def tar_stream(root: Path) -> Iterator[bytes]:
    """The tree under ``root`` as a tar archive (PAX), in chunks; ``root`` is removed when
    the iteration ends or is abandoned. Links are archived as links, never followed."""
    sink = _Chunks()
    try:
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT,
                          bufsize=CHUNK) as archive:
            for directory, dirs, files in os.walk(root):
                dirs.sort()
                for name in (*sorted(dirs), *sorted(files)):
                    path = Path(directory) / name
                    archive.add(path, arcname=str(path.relative_to(root)), recursive=False)
                    if sum(map(len, sink.parts)) >= CHUNK:
                        yield sink.take()
        rest = sink.take()
        if rest:
            yield rest
    finally:
        remove_tree(root)


def _refusal(member: tarfile.TarInfo, links: set[str]) -> str | None:
    """Why ``member`` must not be extracted (None: it may)."""
    parts = Path(member.name).parts
    if not parts or member.name.startswith("/") or ".." in parts:
        return "a path outside the target"
    for depth in range(1, len(parts)):
        if str(Path(*parts[:depth])) in links:
            return "a path beneath a symbolic link"
    if not (member.isfile() or member.isdir() or member.issym()):
        return "neither a file, a directory nor a symbolic link"
    return None


def extract(stream: IO[bytes], staging: Path, *, on_bytes=None) -> tuple[int, int]:
    """Extract a tar stream from :func:`tar_stream` into ``staging``; return (files, bytes).

    Every member is checked first: absolute names, ``..``, anything beneath a link
    already extracted, devices and hard links are refused (the centre never sends them:
    an archive that holds one is not the centre's). Symbolic links are created as links.
    ``on_bytes(n)`` is called as file contents arrive (a progress bar).

    Raises:
        OperationError: the stream is not a tar archive, ends early, or holds a
            member that is refused.
    """
    files = size = 0
    links: set[str] = set()
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                problem = _refusal(member, links)
                if problem:
                    raise OperationError(f"the centre's archive holds {member.name!r}: "
                                         f"{problem}; nothing of it was moved into place")
                if member.issym():
                    links.add(str(Path(member.name)))
                member.mode &= ~(stat.S_ISUID | stat.S_ISGID)
                archive.extract(member, staging, set_attrs=True,
                                **({"filter": "fully_trusted"}
                                   if hasattr(tarfile, "fully_trusted_filter") else {}))
                if member.isfile():
                    files += 1
                    size += member.size
                    if on_bytes is not None:
                        on_bytes(member.size)
    except (tarfile.TarError, EOFError) as error:
        raise OperationError(f"the centre's archive is broken or ended early ({error}): "
                             "try again") from None
    return files, size

