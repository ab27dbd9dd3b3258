"""restic command lines, built as tuples by pure functions.

Each ``*_command`` function returns the subcommand and its arguments (``("backup",
"--json", ...)``); :func:`restic_argv` puts the binary and the global options in front.
No function here touches the system. Nothing secret is ever part of a command: the
repository URL and the store keys go in the environment (:func:`restic_environment`),
the password through a pipe named by ``--password-file /dev/fd/N``.

Positional arguments that are paths come after ``--``, so a path starting with ``-`` is
never read as an option. Snapshot ids are checked to be hexadecimal (or ``latest``).

Raises (every builder): :class:`drd.errors.UserError` for arguments restic would
misread, such as a tag with a comma or an empty list of paths.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from os import PathLike, fspath

from drd.errors import UserError
from drd.restic.types import KeepRules, Repository

_SNAPSHOT_ID = re.compile(r"^[0-9a-f]{1,64}$")

# Inherited from the parent environment never: restic would read a password or a
# repository from them, or use store keys meant for something else; and drd's own
# settings (the master passphrase above all) are none of a child's business.
_STRIPPED_ENV_PREFIXES = ("RESTIC_", "AWS_", "DRD_")
# Exceptions to the rule above: harmless tuning a user may set for the whole machine.
_KEPT_RESTIC_ENV = ("RESTIC_CACHE_DIR", "RESTIC_PROGRESS_FPS", "RESTIC_COMPRESSION",
                    "RESTIC_PACK_SIZE")


def restic_argv(
    binary: str,
    command: Sequence[str],
    *,
    password_fd: int | None = None,
    cache_dir: str | PathLike[str] | None = None,
) -> tuple[str, ...]:
    """The full argv: ``binary``, global options, then ``command``.

    ``password_fd`` is the child's descriptor of the password pipe (``None`` for
    commands that open no repository, such as ``version``).
    """
    argv: list[str] = [binary]
    if password_fd is not None:
        argv += ["--password-file", f"/dev/fd/{password_fd}"]
    if cache_dir is not None:
        argv += ["--cache-dir", fspath(cache_dir)]
    return (*argv, *command)


def restic_environment(
    parent: Mapping[str, str], repository: Repository | None
) -> dict[str, str]:
    """The environment for a restic child: the parent's, cleaned, plus the repository's.

    Every ``RESTIC_*``, ``AWS_*`` and ``DRD_*`` variable of the parent is dropped (except a few
    tuning knobs: ``RESTIC_CACHE_DIR``, ``RESTIC_PROGRESS_FPS``, ``RESTIC_COMPRESSION``,
    ``RESTIC_PACK_SIZE``), so a password, repository or store key lying around in the
    daemon's environment never reaches a run. Then ``RESTIC_REPOSITORY`` and the
    repository's own ``env`` (secrets revealed) are added.
    """
    environment = {
        name: value
        for name, value in parent.items()
        if not name.startswith(_STRIPPED_ENV_PREFIXES) or name in _KEPT_RESTIC_ENV
    }
    if repository is not None:
        for name, value in repository.env.items():
            environment[name] = value if isinstance(value, str) else value.reveal()
        environment["RESTIC_REPOSITORY"] = repository.url.reveal()
    return environment


def version_command() -> tuple[str, ...]:
    """``restic version`` (plain text in 0.14)."""
    return ("version",)


def init_command() -> tuple[str, ...]:
    """``restic init``; 0.14 answers in text, later releases in JSON."""
    return ("init", "--json")


def cat_config_command() -> tuple[str, ...]:
    """``restic cat config``: the repository's id and format version, as JSON."""
    return ("cat", "config", "--json")


def backup_command(
    paths: Iterable[str | PathLike[str]] = (),
    excludes: Iterable[str] = (),
    tags: Iterable[str] = (),
    host: str | None = None,
    stdin_filename: str | None = None,
    time: datetime | None = None,
) -> tuple[str, ...]:
    """``restic backup --json``, of ``paths`` or, with ``stdin_filename``, of stdin.

    ``time`` (timezone-aware) is the snapshot's time instead of now (restic ``--time``,
    which takes local time without a zone: it is passed in the local zone).

    Raises:
        UserError: no paths (or paths together with ``stdin_filename``), a bad tag, an
            empty exclude pattern, or a stdin file name with a ``/``.
    """
    path_list = [fspath(path) for path in paths]
    argv = ["backup", "--json"]
    if stdin_filename is not None:
        if path_list:
            raise UserError("a backup reads either paths or stdin, not both")
        if not stdin_filename or "/" in stdin_filename:
            raise UserError(f"stdin file name {stdin_filename!r} must be a plain name "
                            "without '/'")
        argv += ["--stdin", "--stdin-filename", stdin_filename]
    elif not path_list:
        raise UserError("nothing to back up: give at least one path")
    if any(not path for path in path_list):
        raise UserError("an empty path cannot be backed up")
    for pattern in excludes:
        if not pattern:
            raise UserError("an exclude pattern may not be empty")
        argv += ["--exclude", pattern]
    argv += _tag_options(tags)
    if host is not None:
        argv += ["--host", _checked_host(host)]
    if time is not None:
        if time.utcoffset() is None:
            raise UserError("a snapshot time must be timezone-aware")
        argv += ["--time", time.astimezone().strftime("%Y-%m-%d %H:%M:%S")]
    if path_list:
        argv += ["--", *path_list]
    return tuple(argv)


def snapshots_command(
    tags: Iterable[str] = (),
    host: str | None = None,
    paths: Iterable[str | PathLike[str]] = (),
    snapshot_ids: Iterable[str] = (),
) -> tuple[str, ...]:
    """``restic snapshots --json``, optionally filtered.

    A snapshot matches when it has every tag in ``tags``, was made on ``host`` and backs
    up every path in ``paths``; ``snapshot_ids`` (full ids or unique prefixes) limit the
    list to those snapshots.
    """
    argv = ["snapshots", "--json"]
    tag_list = list(tags)
    if tag_list:
        for tag in tag_list:
            _check_tag(tag)
        argv += ["--tag", ",".join(tag_list)]
    if host is not None:
        argv += ["--host", _checked_host(host)]
    for path in paths:
        argv += ["--path", fspath(path)]
    ids = [_checked_snapshot_id(snapshot_id) for snapshot_id in snapshot_ids]
    if ids:
        argv += ["--", *ids]
    return tuple(argv)


def restore_command(
    snapshot_id: str,
    target: str | PathLike[str],
    includes: Iterable[str] = (),
    verify: bool = False,
) -> tuple[str, ...]:
    """``restic restore --json SNAPSHOT --target TARGET``.

    ``snapshot_id`` is a full id, a unique prefix, or ``latest``. ``includes`` limit the
    restore to matching paths; ``verify`` re-reads restored files against their hashes.
    """
    target_path = fspath(target)
    if not target_path:
        raise UserError("a restore needs a target directory")
    argv = ["restore", "--json", "--target", target_path]
    for pattern in includes:
        if not pattern:
            raise UserError("an include pattern may not be empty")
        argv += ["--include", pattern]
    if verify:
        argv.append("--verify")
    argv += ["--", _checked_snapshot_id(snapshot_id, allow_latest=True)]
    return tuple(argv)


def ls_command(snapshot_id: str) -> tuple[str, ...]:
    """``restic ls --json SNAPSHOT``: every node of the snapshot's tree."""
    return ("ls", "--json", "--", _checked_snapshot_id(snapshot_id, allow_latest=True))


def check_command(read_data: bool = False, read_data_subset: str | None = None) -> tuple[str, ...]:
    """``restic check``: structure only, or also every pack (``read_data``) or a subset
    (``read_data_subset`` such as ``"1/5"``, ``"10%"`` or ``"500M"``).

    Raises:
        UserError: both ``read_data`` and ``read_data_subset``, or an empty subset.
    """
    argv = ["check", "--json"]
    if read_data and read_data_subset is not None:
        raise UserError("check reads either all data or a subset, not both")
    if read_data:
        argv.append("--read-data")
    if read_data_subset is not None:
        if not read_data_subset.strip() or read_data_subset.startswith("-"):
            raise UserError(f"bad --read-data-subset {read_data_subset!r}: use n/t, p% or a size")
        argv.append(f"--read-data-subset={read_data_subset}")
    return tuple(argv)


def forget_command(
    snapshot_ids: Iterable[str] = (),
    prune: bool = False,
    keep: KeepRules | None = None,
) -> tuple[str, ...]:
    """``restic forget --json``, of the given snapshots or by restic's keep rules.

    drd decides retention itself and passes ids; ``keep`` exists for manual use.

    Raises:
        UserError: both ids and keep rules, or neither (restic would remove nothing).
    """
    ids = [_checked_snapshot_id(snapshot_id) for snapshot_id in snapshot_ids]
    has_rules = keep is not None and not keep.is_empty()
    if ids and has_rules:
        raise UserError("forget takes either snapshot ids or keep rules, not both")
    if not ids and not has_rules:
        raise UserError("forget needs snapshot ids or at least one keep rule")
    argv = ["forget", "--json"]
    if has_rules:
        for rule in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
            count = getattr(keep, rule)
            if count is None:
                continue
            if count < 0:
                raise UserError(f"keep {rule} must be >= 0, not {count}")
            argv += [f"--keep-{rule}", str(count)]
    if prune:
        argv.append("--prune")
    if ids:
        argv += ["--", *ids]
    return tuple(argv)


def unlock_command() -> tuple[str, ...]:
    """``restic unlock``: remove stale locks only (of a dead process on this host, or
    older than 30 minutes); a live run's lock stays."""
    return ("unlock",)


def prune_command(max_unused: str | None = None) -> tuple[str, ...]:
    """``restic prune``: remove the data no snapshot uses any more (text output in 0.14).

    ``max_unused`` is restic's ``--max-unused`` (``"0"``, ``"5%"``, ``"unlimited"``);
    restic's default (5 %) when ``None``.

    Raises:
        UserError: an empty ``max_unused`` or one that looks like an option.
    """
    argv = ["prune"]
    if max_unused is not None:
        if not max_unused.strip() or max_unused.startswith("-"):
            raise UserError(f"bad --max-unused {max_unused!r}: use a size, p% or 'unlimited'")
        argv.append(f"--max-unused={max_unused}")
    return tuple(argv)


def _tag_options(tags: Iterable[str]) -> list[str]:
    argv: list[str] = []
    for tag in tags:
        _check_tag(tag)
        argv += ["--tag", tag]
    return argv


def _check_tag(tag: str) -> None:
    # restic splits a --tag value at commas, so a comma would make two tags
    if not tag or "," in tag or tag != tag.strip():
        raise UserError(f"bad tag {tag!r}: tags are non-empty, without commas or edge spaces")


def _checked_host(host: str) -> str:
    if not host or host != host.strip():
        raise UserError(f"bad host name {host!r}")
    return host


def _checked_snapshot_id(snapshot_id: str, *, allow_latest: bool = False) -> str:
    if allow_latest and snapshot_id == "latest":
        return snapshot_id
    if not _SNAPSHOT_ID.match(snapshot_id):
        expected = "hexadecimal or 'latest'" if allow_latest else "hexadecimal"
        raise UserError(f"bad snapshot id {snapshot_id!r}: expected {expected}")
    return snapshot_id
