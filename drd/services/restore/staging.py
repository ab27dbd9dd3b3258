"""The restore's side of the local file system: the target, a staging tree, the move.

restic never writes into the target itself. Each attempt restores into a fresh staging
directory inside the target (``<target>/.drd-restore-<random>``: the same file system,
so the final move is a rename, and free space is the target's). Only when an attempt
has finished and its tree was checked is it moved into place; a failed attempt's staging
is removed, so a fallback to another store starts clean and a restore that fails leaves
the target as it found it.

The move never follows a symbolic link: a link already in the target is replaced, not
written through, and restic's fresh staging tree holds no link it did not restore
itself. Symbolic links in the snapshot are restored as links.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from drd.errors import OperationError, UserError

log = logging.getLogger(__name__)

STAGING_PREFIX = ".drd-restore-"
_TYPES = ((stat.S_ISDIR, "dir"), (stat.S_ISREG, "file"), (stat.S_ISLNK, "symlink"),
          (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "chardev"),
          (stat.S_ISBLK, "dev"))


def check_target(target: Path, *, overwrite: bool) -> None:
    """Refuse a target the restore must not write into (nothing is created here).

    A target that exists must be a directory (a symbolic link to one is taken as the
    directory it names), empty unless ``overwrite`` (staging directories of another
    restore do not count), and writable.

    Raises:
        UserError: the target is a file, not empty without ``overwrite``, or not
            writable; or its nearest existing parent is not a directory.
    """
    if not str(target):
        raise UserError("--target: give a directory to restore into")
    try:
        _check_target(target, overwrite=overwrite)
    except OSError as error:  # a parent this user may not read, say
        raise UserError(f"--target {target}: {error.strerror or error}") from None


def _check_target(target: Path, *, overwrite: bool) -> None:
    if not (target.exists() or target.is_symlink()):
        parent = next((p for p in target.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise UserError(f"--target {target} cannot be created: {parent} is not a "
                            "directory")
        return
    if not target.is_dir():
        raise UserError(f"--target {target} exists and is not a directory; give a "
                        "directory (new or empty)")
    leftovers = [entry for entry in os.listdir(target)
                 if not entry.startswith(STAGING_PREFIX)]
    if leftovers and not overwrite:
        raise UserError(f"--target {target} is not empty ({len(leftovers)} entries, "
                        f"e.g. {sorted(leftovers)[0]!r}): restore into a new or empty "
                        "directory, or give --overwrite to replace what the snapshot "
                        "holds (other files stay)")
    if not os.access(target, os.W_OK | os.X_OK):
        raise UserError(f"--target {target} is not writable by this user")


def prepare_target(target: Path, *, overwrite: bool) -> bool:
    """:func:`check_target`, then create the target if missing (0700, with its parents).

    Returns whether the target was created here (so that a failed restore removes it
    again).

    Raises:
        UserError: as :func:`check_target`, or the target cannot be created; nothing is
            written then.
    """
    check_target(target, overwrite=overwrite)
    if target.is_dir():
        return False
    try:
        target.mkdir(mode=0o700, parents=True)
    except OSError as error:
        raise UserError(f"--target {target} cannot be created: "
                        f"{error.strerror or error}") from None
    return True


def make_staging(target: Path) -> Path:
    """A fresh, private staging directory inside ``target``.

    Raises:
        OperationError: it cannot be created (the message says why).
    """
    try:
        return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=target))
    except OSError as error:
        raise OperationError(f"cannot create a staging directory in {target}: "
                             f"{error.strerror or error}") from None


def remove_tree(path: Path) -> None:
    """Remove ``path`` and everything in it, also the read-only directories restic
    restores; never chmods or follows a symbolic link (it would reach out of the tree).
    Failures are logged, not raised: the removal is cleanup after the real news."""
    def make_writable(function, name, _excinfo):
        for entry in (os.path.dirname(name), name):
            if os.path.islink(entry):
                continue
            try:
                os.chmod(entry, stat.S_IRWXU)
            except OSError:
                pass
        function(name)

    if not os.path.lexists(path):
        return
    try:
        if os.path.islink(path) or not os.path.isdir(path):
            os.unlink(path)
        else:
            shutil.rmtree(path, onerror=make_writable)
    except OSError as error:
        log.error("%s could not be removed: %s", path, error)


def node_type(mode: int) -> str:
    """restic's name for a file type (``file``, ``dir``, ``symlink``, ...) (pure)."""
    for test, name in _TYPES:
        if test(mode):
            return name
    return "?"


@dataclass(frozen=True)
class Tree:
    """What a staging tree holds: entries by snapshot path (``/a/b``) and their types,
    regular files' bytes."""

    entries: dict[str, str]
    files: int
    bytes: int


def survey(root: Path) -> Tree:
    """Walk ``root`` without following links: every entry's type, files and bytes."""
    entries: dict[str, str] = {}
    files = size = 0
    for directory, dirs, names in os.walk(root, followlinks=False):
        for name in (*dirs, *names):
            full = os.path.join(directory, name)
            info = os.lstat(full)
            kind = node_type(info.st_mode)
            entries["/" + os.path.relpath(full, root)] = kind
            if kind == "file":
                files += 1
                size += info.st_size
    return Tree(entries=entries, files=files, bytes=size)


def unexpected(tree: Tree, expected: dict[str, str]) -> list[str]:
    """Entries of a restored tree that the snapshot's listing does not hold with that
    type -- restic wrote something the restore did not ask for -- except the
    directories leading to what was asked for (pure)."""
    odd = []
    for path, kind in tree.entries.items():
        wanted = expected.get(path)
        if wanted == kind:
            continue
        if wanted is None and kind == "dir" and any(other.startswith(path + "/")
                                                    for other in expected):
            continue
        odd.append(path)
    return sorted(odd)


def missing(tree: Tree, expected: dict[str, str]) -> list[str]:
    """Files, directories and links the listing holds and the restored tree lacks (pure)."""
    return sorted(path for path, kind in expected.items()
                  if kind in ("file", "dir", "symlink") and path not in tree.entries)


def promote(staging: Path, target: Path) -> None:
    """Move what ``staging`` holds into ``target`` (its parent), then remove ``staging``.

    A name the target lacks is renamed in whole; a directory present on both sides is
    merged; anything else in the target under that name (a file, a link, a directory
    where the snapshot has a file) is replaced. Links are never followed: a link in the
    target where the snapshot has a directory is replaced by the directory.

    Raises:
        OperationError: a rename failed (what was moved stays moved; the rest stays in
            the staging directory, named in the message).
    """
    try:
        _merge(staging, target)
    except OSError as error:
        raise OperationError(f"moving the restored tree from {staging} into {target} "
                             f"failed: {error.strerror or error} ({error.filename}); what "
                             f"was not moved is still in {staging}") from None
    remove_tree(staging)


def _merge(source: Path, destination: Path, *, top: bool = True) -> None:
    """Move ``source``'s entries into ``destination``; unless ``top``, the directory
    then takes ``source``'s mode and times (the snapshot's)."""
    original = os.lstat(source)
    # restic restores directory modes: a read-only one (0555) would refuse the renames
    # out of it and into it (for anyone but root); both are opened for the merge
    _writable(source, original.st_mode)
    _writable(destination, os.lstat(destination).st_mode)
    for entry in os.scandir(source):
        there = destination / entry.name
        try:
            existing = os.lstat(there)
        except FileNotFoundError:
            _move(entry.path, there)
            continue
        if entry.is_dir(follow_symlinks=False) and stat.S_ISDIR(existing.st_mode):
            _merge(Path(entry.path), there, top=False)
            continue
        _replace(entry.path, there, existing)
    if not top:
        os.chmod(destination, stat.S_IMODE(original.st_mode))
        os.utime(destination, ns=(original.st_atime_ns, original.st_mtime_ns),
                 follow_symlinks=False)


def _replace(source: str, destination: Path, existing: os.stat_result) -> None:
    """Put ``source`` where ``destination`` is (a file, a link -- not followed -- or a
    directory where the snapshot has something else). A file or link goes by one atomic
    rename over it; a directory is first renamed aside and put back if the move fails,
    so that a failed move (across file systems, say) loses neither side."""
    source_is_directory = os.path.isdir(source) and not os.path.islink(source)
    if not source_is_directory and not stat.S_ISDIR(existing.st_mode):
        os.replace(source, destination)
        return
    aside = destination.with_name(f"{STAGING_PREFIX}old-{destination.name}")
    os.rename(destination, aside)
    try:
        _move(source, destination)
    except OSError:
        os.rename(aside, destination)
        raise
    remove_tree(aside)


def _writable(directory: Path, mode: int) -> None:
    if not mode & stat.S_IWUSR:
        os.chmod(directory, stat.S_IMODE(mode) | stat.S_IRWXU)


def _move(source: str, destination: Path) -> None:
    """Rename ``source`` to ``destination`` (absent); a read-only directory is opened
    for the rename (it updates its ``..``) and closed again."""
    info = os.lstat(source)
    if stat.S_ISDIR(info.st_mode) and not info.st_mode & stat.S_IWUSR:
        os.chmod(source, stat.S_IMODE(info.st_mode) | stat.S_IWUSR)
        os.rename(source, destination)
        os.chmod(destination, stat.S_IMODE(info.st_mode))
        return
    os.rename(source, destination)
