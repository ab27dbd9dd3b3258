"""Small filesystem helpers that make writes crash-safe.

Nothing drd writes to its home may be seen half-written: a reader sees the old file or
the new one, never a mix. Data goes to a temporary file in the same directory, is
fsynced, then renamed (:func:`atomic_write`, replaces) or hard-linked
(:func:`write_new_file`, refuses to replace) to its final name, and the directory is
fsynced.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from drd.errors import UserError

PRIVATE_FILE_MODE = 0o600
PUBLIC_FILE_MODE = 0o644
PRIVATE_DIRECTORY_MODE = 0o700


def ensure_private_directory(path: Path) -> Path:
    """Create ``path`` (and parents) if missing and set it to mode 0700; return it."""
    path.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIRECTORY_MODE)
    return path


def fsync_directory(directory: Path) -> None:
    """Flush a directory entry to disk, so a rename inside it survives a crash."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write(path: Path, data: bytes | str, mode: int = PRIVATE_FILE_MODE) -> None:
    """Write ``data`` to ``path`` atomically with the given permission bits.

    The file is created with ``mode`` from the start, so a secret is never readable
    by others, not even for a moment. Raises ``OSError`` on failure, leaving any
    previous file untouched.
    """
    if isinstance(data, str):
        data = data.encode()
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    fsync_directory(path.parent)


def write_new_file(path: Path, data: bytes, mode: int) -> Path:
    """Write ``data`` to the new file ``path`` with ``mode``, atomically; return ``path``.

    Raises :class:`~drd.errors.UserError` if ``path`` already exists (nothing is
    written), ``OSError`` if the directory is not writable.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            os.fchmod(descriptor, mode)  # the umask may have narrowed or widened it
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view):]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        try:
            os.link(temporary, path)
        except FileExistsError:
            raise UserError(f"{path} already exists; refusing to overwrite it") from None
    finally:
        temporary.unlink(missing_ok=True)
    fsync_directory(path.parent)
    return path
