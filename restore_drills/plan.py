"""What a drill restores, and how it is judged: decided from the policy and the catalog (pure).

A drill restores a *restore point*: the snapshots one backup run made (the ``paths``
snapshot and one per command source), which share the tag ``drd-run:<run id>``; a snapshot
without that tag is a restore point of its own. ``latest`` is the newest good snapshot's
run (good: active and not partial), ``oldest`` the oldest that retention still keeps, and
``--snapshot ID`` the run of that snapshot. The run's first snapshot (the agent saves the
paths before the commands' output) is the drill's ``snapshot``, unless one was asked for.

What is restored (``drill.restore``): everything, a share of the files chosen by the
SHA-256 of their path (:func:`policies.sampling.in_sample`, the rule the agent samples its
manifest by, so that the same files are chosen every time), or listed paths and what
lies beneath them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drd.errors import OperationError, UserError
from drd.restic import Node
from policies.durations import parse_duration
from policies.sampling import in_sample
from policies.sizes import parse_size

RUN_TAG_PREFIX = "drd-run:"
ALL, PERCENT, PATHS = "all", "percent", "paths"
_GLOB_SPECIAL = "\\*?["


@dataclass(frozen=True)
class DrillSettings:
    """A policy's drill plan with its defaults filled in.

    ``sandbox`` is the directory drills restore under; ``max_sandbox_bytes`` the most a
    restore may need (None: only the free space limits it).
    """

    snapshot: str = "latest"
    percent: float = 100.0
    paths: tuple[str, ...] = ()
    sample_percent: float = 100.0
    sandbox: Path | None = None
    max_sandbox_bytes: int | None = None
    rto: dt.timedelta = dt.timedelta(hours=4)
    rpo: dt.timedelta = dt.timedelta(days=1)
    period: dt.timedelta = dt.timedelta(days=30)
    checks: tuple[Mapping[str, Any], ...] = ()

    @property
    def mode(self) -> str:
        if self.paths:
            return PATHS
        return PERCENT if self.percent < 100 else ALL

    def as_dict(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot, "mode": self.mode, "percent": self.percent,
                "paths": list(self.paths), "sample_percent": self.sample_percent,
                "max_sandbox_bytes": self.max_sandbox_bytes,
                "rto_seconds": self.rto.total_seconds(),
                "rpo_seconds": self.rpo.total_seconds(),
                "period_seconds": self.period.total_seconds()}


def _duration(value: Any, default: dt.timedelta) -> dt.timedelta:
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return dt.timedelta(seconds=value)
    return parse_duration(str(value))


def settings_from_policy(document: Mapping[str, Any], home: Path) -> DrillSettings:
    """The drill plan of an applied policy document (``Policy.document``), with defaults
    for what it leaves out; a policy without a ``drill`` section gets the defaults (a
    drill asked for on the command line still runs). ``home`` places the default
    sandbox (``<home>/drills``)."""
    drill = document.get("drill") or {}
    restore = drill.get("restore") or {}
    sandbox = drill.get("sandbox") or {}
    max_size = sandbox.get("max_size")
    rto = _duration(document.get("rto"), DrillSettings.rto)
    rpo = _duration(document.get("rpo"), DrillSettings.rpo)
    return DrillSettings(
        snapshot=drill.get("snapshot") or "latest",
        percent=float(restore.get("percent", 100) or 100),
        paths=tuple(restore.get("paths") or ()),
        sample_percent=float(drill.get("sample_percent", 100)),
        sandbox=Path(sandbox["path"]) if sandbox.get("path") else home / "drills",
        max_sandbox_bytes=(max_size if isinstance(max_size, int) or max_size is None
                           else parse_size(str(max_size))),
        rto=_duration(drill.get("rto"), rto),
        rpo=_duration(drill.get("rpo"), rpo),
        period=_duration(drill.get("period"), DrillSettings.period),
        checks=tuple(drill.get("checks") or ()),
    )


# -- the restore point ---------------------------------------------------------------------


@dataclass(frozen=True)
class PointSnapshot:
    """A snapshot as the catalog knows it (``id`` the catalog's, ``restic_id`` restic's)."""

    id: int
    restic_id: str
    time: dt.datetime
    paths: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    status: str = "active"
    partial: bool = False
    file_count: int | None = None
    size_bytes: int | None = None

    @property
    def good(self) -> bool:
        return self.status == "active" and not self.partial

    @property
    def run(self) -> str | None:
        for tag in self.tags:
            if tag.startswith(RUN_TAG_PREFIX):
                return tag[len(RUN_TAG_PREFIX):]
        return None


@dataclass(frozen=True)
class RestorePoint:
    """The snapshots a drill restores: ``primary`` (the one chosen) first."""

    primary: PointSnapshot
    snapshots: tuple[PointSnapshot, ...] = field(default=())

    @property
    def time(self) -> dt.datetime:
        """When the restore point was made: its oldest snapshot (what the RPO counts from)."""
        return min(snapshot.time for snapshot in self.snapshots)


_NOT_GOOD = {"forgotten": "forgotten by retention",
             "unconfirmed": "not confirmed yet (the centre has not seen it in the stores)",
             "rejected": "rejected (the agent reported it, the stores do not hold it)"}


def choose_restore_point(snapshots: Iterable[PointSnapshot], which: str = "latest",
                         snapshot_id: str | None = None) -> RestorePoint:
    """The restore point to drill: ``snapshot_id``'s run (a full id or a unique prefix),
    else the newest (``latest``) or oldest (``oldest``) good snapshot's run.

    Raises:
        UserError: ``snapshot_id`` matches no snapshot, several, or a snapshot that is
            not a good restore point (forgotten, unconfirmed, rejected, or partial).
        OperationError: the system has no good snapshot at all.
    """
    known = list(snapshots)
    good = [snapshot for snapshot in known if snapshot.good]
    if snapshot_id is not None:
        wanted = snapshot_id.lower()
        matches = [snapshot for snapshot in known if snapshot.restic_id.startswith(wanted)]
        if not matches:
            raise UserError(f"no snapshot {snapshot_id!r} of this system (see drd snapshots)")
        if len(matches) > 1:
            raise UserError(f"snapshot id {snapshot_id!r} is ambiguous: give more of it")
        (primary,) = matches
        if not primary.good:
            why = _NOT_GOOD.get(primary.status, "partial (its backup did not finish "
                                "cleanly)")
            raise UserError(f"snapshot {primary.restic_id[:12]} is {why}: not a restore "
                            "point to drill")
    else:
        if which not in ("latest", "oldest"):
            raise UserError(f"drill.snapshot: {which!r} is neither 'latest' nor 'oldest'")
        if not good:
            raise OperationError("the system has no good snapshot to drill yet (see drd "
                                 "snapshots)")
        order = sorted(good, key=lambda snapshot: (snapshot.time, snapshot.id))
        primary = order[-1] if which == "latest" else order[0]
    siblings = [snapshot for snapshot in good
                if primary.run is not None and snapshot.run == primary.run
                and snapshot.id != primary.id]
    siblings.sort(key=lambda snapshot: (snapshot.time, snapshot.id))
    if snapshot_id is None and siblings and \
            (siblings[0].time, siblings[0].id) < (primary.time, primary.id):
        # the run's first snapshot leads (the agent saves the paths before the commands'
        # output), whichever of the run's snapshots was the newest
        siblings.append(primary)
        primary = siblings.pop(0)
        siblings.sort(key=lambda snapshot: (snapshot.time, snapshot.id))
    return RestorePoint(primary=primary, snapshots=(primary, *siblings))


# -- what to restore -----------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """The files of one snapshot a drill restores and expects back.

    ``everything``: restore the whole snapshot; else only what ``includes`` (restic
    ``--include`` patterns) match -- nothing at all when there are none, which restic
    would read as everything. ``files`` maps each expected regular file to its size.
    """

    includes: tuple[str, ...]
    files: Mapping[str, int]
    everything: bool = False

    @property
    def bytes(self) -> int:
        return sum(self.files.values())


def include_pattern(path: str) -> str:
    """A restic ``--include`` pattern matching exactly ``path`` (glob characters escaped)."""
    return "".join(f"\\{char}" if char in _GLOB_SPECIAL else char for char in path)


def _beneath(path: str, roots: Sequence[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def select_files(nodes: Iterable[Node], settings: DrillSettings) -> Selection:
    """Which of a snapshot's files the drill restores (pure).

    ``all``: every file, no include patterns. ``percent``: the files in the
    ``settings.percent`` sample, each included by its exact path. ``paths``: the listed
    paths and everything beneath them.
    """
    files = {node.path: node.size for node in nodes if node.type == "file"}
    mode = settings.mode
    if mode == ALL:
        return Selection(includes=(), files=files, everything=True)
    if mode == PATHS:
        roots = [path.rstrip("/") or "/" for path in settings.paths]
        chosen = {path: size for path, size in files.items() if _beneath(path, roots)}
        return Selection(includes=tuple(include_pattern(root) for root in roots), files=chosen)
    chosen = {path: size for path, size in files.items() if in_sample(path, settings.percent)}
    return Selection(includes=tuple(include_pattern(path) for path in sorted(chosen)),
                     files=chosen)


def include_batches(includes: Sequence[str], max_argv_bytes: int = 96 * 1024
                    ) -> list[tuple[str, ...]]:
    """Split include patterns into batches whose total length stays under
    ``max_argv_bytes``, so that one restic argv never hits the kernel's limit; one empty
    batch when there are none (restore everything)."""
    batches: list[tuple[str, ...]] = []
    current: list[str] = []
    size = 0
    for pattern in includes:
        cost = len(pattern.encode()) + len("--include") + 2
        if current and size + cost > max_argv_bytes:
            batches.append(tuple(current))
            current, size = [], 0
        current.append(pattern)
        size += cost
    if current or not batches:
        batches.append(tuple(current))
    return batches
