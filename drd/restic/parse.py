"""Parsers for restic's output: pure functions from text (or decoded JSON) to values.

restic ``--json`` prints one JSON object per line, told apart by ``message_type``:
``status`` (progress), ``summary`` (the result), ``verbose_status`` (one item, with
``--verbose``), ``error`` (an item that failed; on stderr in 0.14) and, from 0.17 on,
``exit_error`` on stderr. Some 0.14 commands (``init``, ``restore``, ``check``) ignore
``--json`` and print text; those are parsed from text here too.

Every parser raises :class:`ValueError` on output it cannot make sense of; the runner
turns that into an :class:`drd.errors.OperationError` naming the command.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from drd.restic.types import (
    BackupSummary,
    ForgetResult,
    ItemError,
    Node,
    ProgressEvent,
    PruneResult,
    RepositoryConfig,
    ResticVersion,
    RestoreSummary,
    Snapshot,
)

# Error lines kept from one run (a backup of a million unreadable files must not fill memory).
MAX_KEPT_LINES = 1000

_VERSION = re.compile(r"^restic (?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)\S*(?:\s|$)")
_TIME = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<clock>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d+))?"
    r"\s*(?P<zone>Z|[+-]\d{2}:?\d{2})$",
    re.I,
)
_MISSING_SOURCE = re.compile(r"^(?P<path>.+) does not exist, skipping$")
_IGNORED_ID = re.compile(r'^Ignoring "(?P<id>[^"]+)"')
_FILES_VERIFIED = re.compile(r"^finished verifying (?P<count>\d+) files")
_VERIFYING = re.compile(r"^verifying files in ")
_RESTORE_FILE_ERROR = re.compile(r"^ignoring error for (?P<path>.+?): (?P<reason>.+)$")
_ERROR_COUNT = re.compile(r"^(?:Fatal: )?There were (?P<count>\d+) errors")
_INIT_TEXT = re.compile(r"^created restic repository (?P<id>[0-9a-f]+) at ")
_PRUNE_DELETE = re.compile(r"^to delete:\s+(?P<blobs>\d+) blobs / (?P<bytes>.+?)\s*$")
_PRUNE_REPACK = re.compile(r"^to repack:\s+(?P<blobs>\d+) blobs / ")
_PRUNE_PACKS = re.compile(r"^removing (?P<packs>\d+) old packs")


@dataclass(frozen=True)
class Message:
    """One line of restic's output: a JSON message (``type`` set) or plain text."""

    type: str | None
    data: Mapping[str, Any]
    text: str
    at: float = 0.0
    """When the line was read (``time.monotonic()``), for timing a run's stages."""


def parse_line(line: str, at: float = 0.0) -> Message:
    """Classify one output line. A line that is not a JSON object is text (``type=None``).
    ``at`` is when it was read."""
    stripped = line.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            return Message(str(data.get("message_type") or "") or None, data, stripped, at)
    return Message(None, {}, stripped, at)


def parse_version(text: str) -> ResticVersion:
    """``restic 0.14.0 compiled with go1.19.8 on linux/amd64`` -> ``ResticVersion(0, 14, 0)``.

    Development builds (``restic 0.16.4-dev (compiled manually) ...``) count as their
    release number.

    Raises:
        ValueError: the text does not start with ``restic X.Y.Z``.
    """
    first = text.strip().splitlines()[0] if text.strip() else ""
    match = _VERSION.match(first)
    if not match:
        raise ValueError(f"not a restic version line: {first!r}")
    return ResticVersion(int(match["major"]), int(match["minor"]), int(match["patch"]), first)


def parse_time(value: str) -> datetime:
    """Parse restic's RFC 3339 time (nanoseconds, ``Z`` or an offset) to an aware datetime.

    Digits beyond microseconds are dropped (truncated, not rounded).

    Raises:
        ValueError: not an RFC 3339 date-time with a time zone.
    """
    match = _TIME.match(value.strip())
    if not match:
        raise ValueError(f"not an RFC 3339 time with a zone: {value!r}")
    fraction = (match["fraction"] or "")[:6].ljust(6, "0")
    naive = datetime.fromisoformat(f"{match['date']}T{match['clock']}.{fraction}")
    zone = match["zone"].upper()
    if zone == "Z":
        return naive.replace(tzinfo=UTC)
    sign = 1 if zone[0] == "+" else -1
    digits = zone[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return naive.replace(tzinfo=timezone(sign * offset))


def parse_progress(data: Mapping[str, Any]) -> ProgressEvent:
    """A ``status`` message of ``backup`` or ``restore`` -> :class:`ProgressEvent`.

    restic omits zero fields, so a missing count is 0. Restore's ``files_restored`` /
    ``bytes_restored`` (restic >= 0.16) map to ``files_done`` / ``bytes_done``.
    """
    return ProgressEvent(
        percent_done=float(data.get("percent_done") or 0.0),
        files_done=int(data.get("files_done", data.get("files_restored")) or 0),
        total_files=int(data.get("total_files") or 0),
        bytes_done=int(data.get("bytes_done", data.get("bytes_restored")) or 0),
        total_bytes=int(data.get("total_bytes") or 0),
        current_files=tuple(data.get("current_files") or ()),
        seconds_elapsed=int(data.get("seconds_elapsed") or 0),
        seconds_remaining=int(data.get("seconds_remaining") or 0),
        error_count=int(data.get("error_count") or 0),
    )


def parse_backup_summary(
    data: Mapping[str, Any], *, partial: bool = False, errors: Sequence[ItemError] = ()
) -> BackupSummary:
    """A backup ``summary`` message -> :class:`BackupSummary`.

    ``snapshot_id`` is as restic printed it (in 0.14 the 8-character short id; the
    runner replaces it with the full id). ``short_id`` is its first 8 characters.

    Raises:
        ValueError: no ``snapshot_id``.
    """
    snapshot_id = data.get("snapshot_id")
    if not isinstance(snapshot_id, str) or not snapshot_id:
        raise ValueError("backup summary without a snapshot_id")
    counts = {
        name: int(data.get(name) or 0)
        for name in ("files_new", "files_changed", "files_unmodified", "dirs_new",
                     "dirs_changed", "dirs_unmodified", "data_blobs", "tree_blobs",
                     "data_added", "total_files_processed", "total_bytes_processed")
    }
    return BackupSummary(
        snapshot_id=snapshot_id,
        short_id=snapshot_id[:8],
        total_duration=float(data.get("total_duration") or 0.0),
        partial=partial,
        errors=tuple(errors),
        **counts,
    )


def parse_item_error(data: Mapping[str, Any]) -> ItemError:
    """An ``error`` message -> :class:`ItemError`.

    restic 0.14 serialises Go's error value as it is: ``{"Op": "read", "Path": "/x",
    "Err": 5}`` for a failed system call (``Err`` is an errno), ``{}`` for most others;
    later releases give ``{"message": "..."}``. All become one readable message.
    """
    item = str(data.get("item") or "")
    return ItemError(item=item, message=_error_text(data.get("error")),
                     during=str(data.get("during") or ""))


def _error_text(error: Any) -> str:
    if isinstance(error, str):
        return error
    if isinstance(error, Mapping):
        if isinstance(error.get("message"), str):
            return error["message"]
        if "Op" in error or "Err" in error:
            cause = error.get("Err")
            reason = os.strerror(cause) if isinstance(cause, int) else _error_text(cause)
            operation = " ".join(str(error[key]) for key in ("Op", "Path") if error.get(key))
            return f"{operation}: {reason}" if operation else reason
    if not error:
        return "unknown error (restic gave no detail)"
    return json.dumps(error, sort_keys=True)


def parse_exit_error(data: Mapping[str, Any]) -> str:
    """An ``exit_error`` message (restic >= 0.17, on stderr) -> its message text."""
    return str(data.get("message") or "")


def missing_source(line: str) -> str | None:
    """The path in restic 0.14's ``/x does not exist, skipping`` warning, else ``None``."""
    match = _MISSING_SOURCE.match(line.strip())
    return match["path"] if match else None


def ignored_snapshot_id(line: str) -> str | None:
    """The id in ``Ignoring "abc": no matching ID found ...`` (forget, snapshots), else None."""
    match = _IGNORED_ID.match(line.strip())
    return match["id"] if match else None


def parse_snapshot(data: Mapping[str, Any]) -> Snapshot:
    """One element of ``snapshots --json`` -> :class:`Snapshot`.

    ``tags``, ``parent``, ``original`` and ``excludes`` are absent when empty.

    Raises:
        ValueError: no ``id``, ``time`` or ``tree``, or a bad time.
    """
    try:
        snapshot_id = str(data["id"])
        time = parse_time(str(data["time"]))
        tree = str(data["tree"])
    except KeyError as missing:
        raise ValueError(f"snapshot without {missing.args[0]!r}: {dict(data)!r}") from None
    return Snapshot(
        id=snapshot_id,
        short_id=str(data.get("short_id") or snapshot_id[:8]),
        time=time,
        tree=tree,
        paths=tuple(data.get("paths") or ()),
        hostname=str(data.get("hostname") or ""),
        username=str(data.get("username") or ""),
        tags=tuple(data.get("tags") or ()),
        parent=data.get("parent") or None,
        original=data.get("original") or None,
        excludes=tuple(data.get("excludes") or ()),
    )


def parse_snapshots(stdout: str) -> list[Snapshot]:
    """The output of ``snapshots --json`` -> snapshots, oldest first.

    Raises:
        ValueError: the output is not a JSON array of snapshots.
    """
    data = _json_document(stdout, list)
    return sorted((parse_snapshot(item) for item in data), key=lambda s: (s.time, s.id))


def parse_forget(
    stdout: str, requested_ids: Sequence[str], ignored_ids: Iterable[str]
) -> ForgetResult:
    """The result of ``forget --json``.

    With keep rules restic prints groups (``[{"keep": [...], "remove": [...]}, ...]``);
    their snapshots give ``kept`` and ``removed``. Forgetting by id prints nothing in
    0.14: ``removed`` is then the requested ids that restic did not report as
    ``Ignoring "ID": no matching ID found`` (those are ``missing``: gone already).

    Raises:
        ValueError: keep-rule output that is not a JSON array of groups.
    """
    ignored = tuple(ignored_ids)
    if requested_ids:
        return ForgetResult(
            removed=tuple(i for i in requested_ids if i not in ignored), missing=ignored
        )
    if not stdout.strip():
        return ForgetResult()
    groups = _json_document(stdout, list)
    removed: list[str] = []
    kept: list[str] = []
    for group in groups:
        kept += [str(item["id"]) for item in group.get("keep") or ()]
        removed += [str(item["id"]) for item in group.get("remove") or ()]
    return ForgetResult(removed=tuple(removed), kept=tuple(kept))


def parse_prune_output(lines: Iterable[str]) -> PruneResult:
    """restic 0.14's text report of ``prune`` -> :class:`PruneResult`.

    Lines it does not know are skipped; a prune with nothing to do has no "to delete"
    line and gives an empty result.
    """
    blobs_deleted, bytes_deleted, blobs_repacked, packs_removed = 0, None, 0, 0
    for line in lines:
        text = line.strip()
        if match := _PRUNE_DELETE.match(text):
            blobs_deleted, bytes_deleted = int(match["blobs"]), match["bytes"]
        elif match := _PRUNE_REPACK.match(text):
            blobs_repacked = int(match["blobs"])
        elif match := _PRUNE_PACKS.match(text):
            packs_removed = int(match["packs"])
    return PruneResult(blobs_deleted=blobs_deleted, bytes_deleted=bytes_deleted,
                       blobs_repacked=blobs_repacked, packs_removed=packs_removed)


def parse_restore_output(
    snapshot_id: str, target: Path, verified: bool, messages: Iterable[Message],
    stderr: Iterable[str] = (), started_at: float | None = None,
    finished_at: float | None = None,
) -> RestoreSummary:
    """A restore's output -> :class:`RestoreSummary`.

    restic 0.14 prints text only (``finished verifying N files`` with ``--verify``);
    later releases print a JSON ``summary`` with counts. Both are understood. ``stderr``
    gives the per-file errors; ``started_at``/``finished_at`` (monotonic) with the
    messages' read times split the run into restore and verification.
    """
    counts: dict[str, Any] = {}
    files_verified = None
    verify_started = None
    messages = list(messages)
    for message in messages:
        if message.type is None and _VERIFYING.match(message.text):
            verify_started = message.at
    file_errors: list[tuple[str, str]] = []
    error_count = 0
    for line in stderr:
        text = line.strip()
        if match := _RESTORE_FILE_ERROR.match(text):
            file_errors.append((match["path"], match["reason"]))
        elif match := _ERROR_COUNT.match(text):
            error_count = int(match["count"])
    timing: dict[str, float | None] = {}
    if started_at is not None and finished_at is not None:
        split = verify_started if verify_started is not None else finished_at
        timing["restore_seconds"] = max(0.0, split - started_at)
        timing["verify_seconds"] = (max(0.0, finished_at - verify_started)
                                    if verify_started is not None else None)
    for message in messages:
        if message.type == "summary":
            counts = {
                "total_files": _count(message.data, "total_files"),
                "files_restored": _count(message.data, "files_restored"),
                "total_bytes": _count(message.data, "total_bytes"),
                "bytes_restored": _count(message.data, "bytes_restored"),
                "seconds_elapsed": float(message.data.get("seconds_elapsed") or 0.0),
            }
        elif message.type is None:
            match = _FILES_VERIFIED.match(message.text)
            if match:
                files_verified = int(match["count"])
    return RestoreSummary(snapshot_id=snapshot_id, target=target, verified=verified,
                          files_verified=files_verified, file_errors=tuple(file_errors),
                          error_count=max(error_count, len(file_errors)), **timing, **counts)


def restore_file_error(line: str) -> tuple[str, str] | None:
    """``(path, reason)`` of a restore's "ignoring error for PATH: REASON" line, else None."""
    match = _RESTORE_FILE_ERROR.match(line.strip())
    return (match["path"], match["reason"]) if match else None


def parse_ls(messages: Iterable[Message]) -> list[Node]:
    """``restic ls --json`` output -> the snapshot's nodes (the leading snapshot line and
    anything that is not a node are skipped).

    Raises:
        ValueError: a node without a path or type.
    """
    nodes = []
    for message in messages:
        data = message.data
        if not data or data.get("struct_type") != "node":
            continue
        path, kind = data.get("path"), data.get("type")
        if not isinstance(path, str) or not isinstance(kind, str):
            raise ValueError(f"a node without path or type: {message.text[:200]}")
        size = data.get("size") or 0
        nodes.append(Node(path=path, type=kind, size=int(size) if kind == "file" else 0))
    return nodes


def parse_init_output(messages: Iterable[Message]) -> str | None:
    """The new repository's id from ``init`` (10 hex digits from 0.14's text, the full
    id from later releases' JSON ``initialized`` message), or ``None`` if not found."""
    for message in messages:
        if message.type == "initialized" and message.data.get("id"):
            return str(message.data["id"])
        if message.type is None:
            match = _INIT_TEXT.match(message.text)
            if match:
                return match["id"]
    return None


def parse_repository_config(stdout: str) -> RepositoryConfig:
    """The output of ``cat config --json`` (indented JSON) -> :class:`RepositoryConfig`.

    Raises:
        ValueError: not a JSON object with ``id`` and ``version``.
    """
    data = _json_document(stdout, dict)
    try:
        return RepositoryConfig(id=str(data["id"]), version=int(data["version"]),
                                chunker_polynomial=str(data.get("chunker_polynomial") or ""))
    except KeyError as missing:
        raise ValueError(f"repository config without {missing.args[0]!r}") from None


def check_errors(stderr_lines: Iterable[str]) -> tuple[str, ...]:
    """The error lines of a failed ``check``: stderr without blank and ``Fatal:`` lines,
    at most :data:`MAX_KEPT_LINES`."""
    kept = [line.rstrip() for line in stderr_lines
            if line.strip() and not line.startswith("Fatal: repository contains errors")]
    return tuple(kept[:MAX_KEPT_LINES])


def check_found_errors(stderr_lines: Iterable[str]) -> bool:
    """Whether a failed ``check`` failed because the repository has errors (rather than,
    say, a wrong password or an unreachable store)."""
    return any("repository contains errors" in line for line in stderr_lines)


def _json_document(stdout: str, kind: type) -> Any:
    """The JSON value of type ``kind`` in ``stdout``: the whole text, or failing that,
    its first line that is one (other commands' text may surround it)."""
    candidates = [stdout, *stdout.splitlines()]
    for candidate in candidates:
        candidate = candidate.strip()
        if not candidate:
            continue
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(value, kind):
            return value
    raise ValueError(f"expected a JSON {kind.__name__}, got {stdout[:200]!r}")


def _count(data: Mapping[str, Any], name: str) -> int:
    # inside a summary restic omits zeros, so a missing count is 0
    return int(data.get(name) or 0)
