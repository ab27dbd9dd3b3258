"""Values the restic runner takes and returns: all frozen dataclasses, no behaviour.

:class:`Repository` is what a command runs against (its URL, password and store keys,
all kept out of ``repr``); the others are restic's output, parsed by
:mod:`drd.restic.parse`. Counts that restic leaves out of its JSON (it omits zero values)
are ``0`` here; values restic 0.14 does not report at all are ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from types import MappingProxyType

from drd.errors import UserError
from drd.secrets import Secret, mask, url_password

# Variables the runner sets itself; a repository's extra environment may not override them.
RESERVED_ENV_PREFIXES = ("RESTIC_PASSWORD", "RESTIC_REPOSITORY", "RESTIC_FROM_")

@dataclass(frozen=True)
class Repository:
    """One restic repository: where it is, how to open it, and how to name it in messages.

    ``url`` is restic's repository string (``/srv/repo``, ``s3:http://host:port/bucket/prefix``,
    ``rest:http://user:pass@127.0.0.1:PORT/``); it travels to restic in
    ``RESTIC_REPOSITORY``, never in argv. ``password`` goes through a pipe. ``env`` holds
    store keys (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ...); values given as
    :class:`Secret` are masked in every error text. ``display`` names the repository in
    messages and logs; by default it is the URL with any inline password masked.

    Raises:
        UserError: an empty URL or password, a password with leading or trailing
            whitespace (restic trims a password file, so it would open a different key),
            or an ``env`` entry that would override the URL or the password.
    """

    url: Secret
    password: Secret = field(repr=False)
    env: Mapping[str, Secret | str] = field(default_factory=dict, hash=False)
    display: str = ""

    def __post_init__(self) -> None:
        url = self.url if isinstance(self.url, Secret) else Secret(str(self.url))
        password = self.password if isinstance(self.password, Secret) else Secret(self.password)
        if not url.reveal():
            raise UserError("a restic repository needs a URL or path")
        if not password.reveal():
            raise UserError(f"the password of repository {self.display or mask(url.reveal())} "
                            "is empty")
        if password.reveal() != password.reveal().strip():
            raise UserError("a repository password may not start or end with whitespace: "
                            "restic strips it from a password file")
        for name in self.env:
            if name.startswith(RESERVED_ENV_PREFIXES):
                raise UserError(f"{name} may not be set in a repository's environment: "
                                "give the URL and the password as the repository's own fields")
        object.__setattr__(self, "url", url)
        object.__setattr__(self, "password", password)
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))
        if not self.display:
            object.__setattr__(self, "display", mask(url.reveal(), self.secrets()))

    def secrets(self) -> tuple[Secret | str, ...]:
        """Every value to mask in text about this repository: password, keys, URL password."""
        values: list[Secret | str] = [self.password]
        values.extend(value for value in self.env.values() if isinstance(value, Secret))
        password = url_password(self.url.reveal())
        if password:
            values.append(password)
        return tuple(values)


@dataclass(frozen=True, order=True)
class ResticVersion:
    """A restic release, comparable: ``ResticVersion(0, 14, 0) >= MINIMUM_VERSION``."""

    major: int
    minor: int
    patch: int
    text: str = field(default="", compare=False)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


@dataclass(frozen=True)
class ProgressEvent:
    """One ``status`` message of a backup or restore (``percent_done`` from 0.0 to 1.0)."""

    percent_done: float = 0.0
    files_done: int = 0
    total_files: int = 0
    bytes_done: int = 0
    total_bytes: int = 0
    current_files: tuple[str, ...] = ()
    seconds_elapsed: int = 0
    seconds_remaining: int = 0
    error_count: int = 0


@dataclass(frozen=True)
class ItemError:
    """An item restic could not read or write (``message_type: error``)."""

    item: str
    message: str
    during: str = ""


@dataclass(frozen=True)
class BackupSummary:
    """The ``summary`` of one backup, with the snapshot's full id.

    ``partial`` is true when restic exited with status 3: the snapshot was saved but the
    items in ``errors`` (at most :data:`drd.restic.parse.MAX_KEPT_LINES`) could not be
    read and are missing from it.
    """

    snapshot_id: str
    short_id: str
    files_new: int = 0
    files_changed: int = 0
    files_unmodified: int = 0
    dirs_new: int = 0
    dirs_changed: int = 0
    dirs_unmodified: int = 0
    data_blobs: int = 0
    tree_blobs: int = 0
    data_added: int = 0
    total_files_processed: int = 0
    total_bytes_processed: int = 0
    total_duration: float = 0.0
    partial: bool = False
    errors: tuple[ItemError, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    """One snapshot as ``restic snapshots --json`` lists it (``time`` is timezone-aware)."""

    id: str
    short_id: str
    time: datetime
    tree: str
    paths: tuple[str, ...]
    hostname: str = ""
    username: str = ""
    tags: tuple[str, ...] = ()
    parent: str | None = None
    original: str | None = None
    excludes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Node:
    """One entry of a snapshot's tree as ``restic ls --json`` lists it.

    ``type`` is restic's: ``file``, ``dir``, ``symlink``, ``dev``, ``chardev``, ``fifo``
    or ``socket``; ``size`` is set for files.
    """

    path: str
    type: str
    size: int = 0


@dataclass(frozen=True)
class RestoreSummary:
    """What a restore did. restic 0.14 reports no counts (``None``); newer releases do.

    ``files_verified`` is the count from ``--verify`` ("finished verifying N files").
    ``file_errors`` are restic's per-file errors (``(path, reason)``, from "ignoring
    error for PATH: REASON"), kept only by a restore asked to ``keep_going``;
    ``error_count`` is restic's own count ("There were N errors"), which may exceed the
    kept lines. ``restore_seconds`` and ``verify_seconds`` split restic's run at its
    "verifying files" line (``verify_seconds`` is None when verification did not run).
    """

    snapshot_id: str
    target: Path
    verified: bool = False
    files_verified: int | None = None
    total_files: int | None = None
    files_restored: int | None = None
    total_bytes: int | None = None
    bytes_restored: int | None = None
    seconds_elapsed: float | None = None
    file_errors: tuple[tuple[str, str], ...] = ()
    error_count: int = 0
    restore_seconds: float | None = None
    verify_seconds: float | None = None


@dataclass(frozen=True)
class CheckResult:
    """The outcome of ``restic check``: ``ok`` is false when the repository has errors.

    ``errors`` are restic's error lines (secrets masked, at most
    :data:`drd.restic.parse.MAX_KEPT_LINES`); ``read_data`` says whether pack contents were
    read (``--read-data`` or a subset, given in ``read_data_subset``).
    """

    ok: bool
    errors: tuple[str, ...] = ()
    read_data: bool = False
    read_data_subset: str | None = None


@dataclass(frozen=True)
class RepositoryConfig:
    """The repository's ``config`` object (``restic cat config``)."""

    id: str
    version: int
    chunker_polynomial: str = ""


@dataclass(frozen=True)
class KeepRules:
    """restic's own ``forget --keep-*`` rules. ``None`` means the rule is not used."""

    last: int | None = None
    hourly: int | None = None
    daily: int | None = None
    weekly: int | None = None
    monthly: int | None = None
    yearly: int | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, rule.name) is None for rule in fields(self))


@dataclass(frozen=True)
class PruneResult:
    """What ``prune`` did, from restic 0.14's text report (it has no JSON for prune).

    ``blobs_deleted`` / ``bytes_deleted`` are its "to delete" line (bytes as restic
    rounds them, ``None`` if it printed none), ``blobs_repacked`` its "to repack" line,
    ``packs_removed`` its "removing N old packs" line (0 when it removed none). Which
    objects went is not parsed: drd lists the store before and after.
    """

    blobs_deleted: int = 0
    bytes_deleted: str | None = None
    blobs_repacked: int = 0
    packs_removed: int = 0


@dataclass(frozen=True)
class ForgetResult:
    """What ``forget`` did.

    ``removed``: the snapshots forgotten; ``kept``: those kept by keep rules (full ids);
    ``missing``: requested ids restic did not find (forgotten before: forgetting is
    idempotent, so a retention run that is repeated after a crash does not fail).
    """

    removed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
