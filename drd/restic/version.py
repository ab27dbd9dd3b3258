"""Which restic releases drd supports, and a cache of each binary's version.

The version is asked once per binary file: the cache key is the resolved path with its
size and modification time, so replacing the binary (an upgrade) is noticed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from drd.restic.errors import ResticTooOld
from drd.restic.types import ResticVersion

MINIMUM_VERSION = ResticVersion(0, 14, 0)
INSTALL_HINT = "apt-get install restic (Debian 12 ships 0.14.0), or a release from " \
               "https://github.com/restic/restic/releases; set DRD_RESTIC to its path"

_cache: dict[tuple[str, int, int], ResticVersion] = {}
_cache_lock = threading.Lock()


def require_supported(version: ResticVersion, binary: str) -> ResticVersion:
    """Return ``version`` if drd supports it.

    Raises:
        ResticTooOld: older than :data:`MINIMUM_VERSION`; the message names the binary,
            the version found and what to install.
    """
    if version < MINIMUM_VERSION:
        raise ResticTooOld(
            f"restic at {binary} is version {version}, drd needs {MINIMUM_VERSION} or "
            f"newer: {INSTALL_HINT}"
        )
    return version


def cached_version(binary: str, detect: Callable[[], ResticVersion]) -> ResticVersion:
    """The version of ``binary``: from the cache, or from ``detect()`` (then cached).

    ``detect`` runs without the lock held, so two threads may both ask once; both get
    the same answer. Errors from ``detect`` propagate and nothing is cached.
    """
    key = _cache_key(binary)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    version = detect()
    with _cache_lock:
        _cache[key] = version
    return version


def clear_cache() -> None:
    """Forget every cached version (tests; or after replacing binaries in place)."""
    with _cache_lock:
        _cache.clear()


def _cache_key(binary: str) -> tuple[str, int, int]:
    path = os.path.realpath(binary)
    try:
        status = os.stat(path)
    except OSError:
        return (path, -1, -1)
    return (path, status.st_size, status.st_mtime_ns)
