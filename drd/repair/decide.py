"""Which version of an object to bring back: pure, no I/O.

A store with versions (Object Lock implies them) keeps what a delete or an overwrite
covered: a delete adds a *delete marker* over the locked versions, an overwrite a new
version over them. Restic reads only the current version, so a covered object is lost to
it although the store still holds the good bytes. :func:`histories` groups a listing of
versions by key (:class:`KeyHistory`); :func:`choose_version` says, given a judge of
versions, whether the current one is good, which version to bring back (the newest
good one), or that none is good. :func:`expected_for` says what "good" means for a key:

- an object named by its hash (``data/``, ``index/``, ``snapshots/``, ``keys/``): its
  bytes hash to its name;
- ``config``, the sealed password, a manifest: its bytes have the SHA-256 and size the
  catalog recorded (:mod:`drd.recorded`); without a record nothing can be judged, and
  nothing is brought back (no version is taken for the right one by its age alone).

Whether a version is locked does not matter here: its bytes prove it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from drd.ledger import expected_sha256
from drd.recorded.judge import Record
from drd.stores.base import ObjectVersion

HIDDEN = "hidden"
"""The reason of an object whose current entry is a delete marker."""
OVERWRITTEN = "overwritten"
"""The reason of an object whose current version is bad while it has older versions."""


@dataclass(frozen=True)
class Expected:
    """What a key's bytes must be: their SHA-256 (hex) and, for a recorded object, their
    size; ``against`` names where that came from, for messages."""

    sha256: str
    size: int | None = None
    against: str = "its name"

    def matches(self, sha256: str, size: int) -> bool:
        return sha256 == self.sha256 and self.size in (None, size)


def expected_for(key: str, records: Mapping[str, Record]) -> Expected | None:
    """What ``key``'s bytes must be (its name, or the catalog's record of it); None for
    a recorded kind the catalog holds no record of. Raises ``ValueError`` for a key drd
    does not track (:func:`drd.ledger.expected_sha256`)."""
    named = expected_sha256(key)
    if named is not None:
        return Expected(named)
    record = records.get(key)
    if record is None:
        return None
    return Expected(record.sha256, record.size, "the catalog's record")


@dataclass(frozen=True)
class KeyHistory:
    """One key's entries in a store: ``versions`` the ones holding bytes, newest first,
    ``markers`` its delete markers."""

    key: str
    versions: tuple[ObjectVersion, ...] = ()
    markers: tuple[ObjectVersion, ...] = ()

    @property
    def hidden(self) -> bool:
        """True when the key's current entry is a delete marker (get, head and list do
        not see it, restic neither). Without an entry flagged latest (a server that does
        not say), the newest entry decides, a marker winning a tie."""
        if any(marker.is_latest for marker in self.markers):
            return True
        if any(version.is_latest for version in self.versions):
            return False
        if not self.markers:
            return False
        newest_marker = max(marker.modified for marker in self.markers)
        return not self.versions or newest_marker >= self.versions[0].modified

    @property
    def current(self) -> ObjectVersion | None:
        """The version get reads (None when hidden, or without any version)."""
        if self.hidden or not self.versions:
            return None
        return self.versions[0]

    @property
    def older(self) -> tuple[ObjectVersion, ...]:
        """The versions beneath the current one (all of them when hidden), newest first."""
        return self.versions if self.current is None else self.versions[1:]

    @property
    def needs_look(self) -> bool:
        """True when the key may be covered: hidden by a marker with versions beneath,
        or an older version under the current one (an overwrite, or a heal's copy)."""
        return bool(self.older)


def histories(entries: Iterable[ObjectVersion]) -> dict[str, KeyHistory]:
    """Group a listing of versions (:meth:`drd.stores.base.Store.list_versions`) by key.

    Versions of a key are ordered newest first: the latest-flagged one, then by
    modification time, newest first, keeping the listing's order among equal times (the
    server lists newest first, and S3 times are to the second).
    """
    versions: dict[str, list[ObjectVersion]] = {}
    markers: dict[str, list[ObjectVersion]] = {}
    for entry in entries:
        (markers if entry.is_delete_marker else versions).setdefault(entry.key, []).append(
            entry)
        if entry.is_delete_marker:
            versions.setdefault(entry.key, [])
    result = {}
    for key, held in versions.items():
        ordered = sorted(held, key=lambda v: v.modified, reverse=True)
        ordered.sort(key=lambda v: not v.is_latest)
        result[key] = KeyHistory(key, tuple(ordered), tuple(markers.get(key, ())))
    return result


@dataclass(frozen=True)
class Choice:
    """What :func:`choose_version` decided for one key.

    ``action``: ``keep`` (the current version is good), ``restore`` (bring ``version``
    back as the current one), ``none`` (no version is good: nothing to bring back).
    ``reason``: :data:`HIDDEN` or :data:`OVERWRITTEN` (empty for ``keep``);
    ``rejected``: the version ids judged bad on the way, newest first.
    """

    key: str
    action: str
    version: ObjectVersion | None = None
    reason: str = ""
    rejected: tuple[str | None, ...] = ()


def choose_version(history: KeyHistory, good: Callable[[ObjectVersion], bool], *,
                   current_known_bad: bool = False) -> Choice:
    """The newest good version of ``history``'s key, or that the current one is good.

    ``good(version)`` judges one version (reading its bytes, for the caller); it is
    asked lazily, newest first, and never of a delete marker. The current version is
    judged first unless ``current_known_bad`` (the caller read it already and found it
    wrong); a good current version means there is nothing to do, whatever lies beneath.
    """
    current = history.current
    if current is not None and not current_known_bad and good(current):
        return Choice(history.key, "keep")
    reason = HIDDEN if history.hidden else OVERWRITTEN
    rejected: list[str | None] = [] if current is None else [current.version_id]
    for version in history.older:
        if good(version):
            return Choice(history.key, "restore", version, reason, tuple(rejected))
        rejected.append(version.version_id)
    return Choice(history.key, "none", None, reason, tuple(rejected))
