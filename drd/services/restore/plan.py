"""What a restore restores and from where: decided from the request and what is known (pure).

- :func:`parse_at`: ``--at`` as ISO 8601 or a relative age (``90m ago``, ``-2d``).
- :func:`choose_point`: the *restore point* -- ``--snapshot ID`` (a full id or a unique
  prefix), ``latest``, or the newest at or before ``--at`` -- with the other snapshots
  of the same backup run (the command sources' dumps, tagged ``drd-run:<run id>`` like
  it), so that "the whole system" means the paths and the dumps of one run.
- :func:`check_include`, :func:`check_nodes`: paths that would land outside the target,
  or be written through a symbolic link, are refused before restic runs.
- :func:`order_stores`: the healthiest store first (the rule is in its docstring and in
  ``docs/restore.md``).
- :func:`stalled`: when to give up on a store that stopped answering mid-way.

No I/O here; every function raises :class:`~drd.errors.UserError` for bad input.
"""

from __future__ import annotations

import datetime as dt
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from drd.errors import OperationError, UserError
from drd.restic import Node
from policies.durations import parse_duration

RUN_TAG_PREFIX = "drd-run:"
LATEST = "latest"
_GLOB_SPECIAL = "\\*?["
_RELATIVE = re.compile(r"^(?:-(?P<minus>\S+)|(?P<ago>\S+)\s+ago)$")

AT_HELP = ("ISO 8601 (2026-11-27T14:30:00Z, 2026-11-27 14:30, or a date alone, meaning "
           "the end of that day; no zone means UTC) or an age: '90m ago', '2d ago', '-1w'")


# -- --at ------------------------------------------------------------------------------------


def parse_at(text: str, now: dt.datetime) -> dt.datetime:
    """The moment ``--at`` names, timezone-aware (UTC when the text gives no zone).

    A date alone (``2026-11-27``) means the end of that day (UTC, or its zone): the
    newest snapshot made that day or before. An age counts back from ``now``:
    ``AGE ago`` or ``-AGE``, with AGE a policy duration (``90s``, ``15m``, ``1h``,
    ``7d``, ``2w``, ``1d12h``). ``now`` means now.

    Raises:
        UserError: none of those forms, or a moment after ``now``.
    """
    value = text.strip()
    if not value:
        raise UserError(f"--at: an empty time; use {AT_HELP}")
    if value.lower() == "now":
        return now
    relative = _RELATIVE.match(value)
    if relative:
        age = relative["minus"] or relative["ago"]
        try:
            return now - parse_duration(age)
        except (ValueError, OverflowError) as error:
            raise UserError(f"--at {text!r}: {error}") from None
    moment = _parse_iso(value)
    if moment is None:
        raise UserError(f"--at {text!r} is not a time: use {AT_HELP}")
    if moment > now:
        raise UserError(f"--at {text!r} is in the future ({moment.isoformat()})")
    return moment


def _parse_iso(value: str) -> dt.datetime | None:
    text = value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            return None
        return dt.datetime.combine(day, dt.time.max, dt.UTC)
    if re.fullmatch(r"\d{4}-?\d{2}-?\d{2}", value):  # fromisoformat takes a date too
        return dt.datetime.combine(moment.date(), dt.time.max, dt.UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment


# -- the restore point -----------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotInfo:
    """A snapshot as the restore sees it: the catalog's on the centre, restic's listing on
    the agent (always ``active``). ``status`` as the catalog's
    (:data:`~drd.catalog.models.SNAPSHOT_STATES`). ``good``: active -- confirmed in the
    stores, not forgotten -- and complete. A backup run that failed leaves *partial*
    snapshots, and a report the centre has not confirmed yet is *unconfirmed*: both are
    restorable when named by id, never chosen as ``latest`` or by ``--at``."""

    id: str
    time: dt.datetime
    paths: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    status: str = "active"
    partial: bool = False

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
    """The snapshots one restore writes: ``primary`` (the one chosen) and the rest of its
    backup run, oldest first."""

    primary: SnapshotInfo
    snapshots: tuple[SnapshotInfo, ...] = field(default=())

    @property
    def ids(self) -> list[str]:
        return [snapshot.id for snapshot in self.snapshots]


def choose_point(snapshots: Iterable[SnapshotInfo], *, snapshot: str | None = None,
                 at: dt.datetime | None = None) -> RestorePoint:
    """The restore point for ``--snapshot`` (``latest``, a full id or a unique prefix) or
    ``--at`` (the newest good snapshot at or before it); neither means ``latest``.

    ``latest`` and ``--at`` choose among good snapshots only, and never a command
    source's snapshot on its own: the run's paths snapshot leads (a run backs up its
    paths first). A snapshot named by id is restored even if partial (its run did not
    finish cleanly) or unconfirmed (the centre has not seen it in the stores yet), alone;
    a forgotten one is refused (retention removed its data), and so is a rejected one
    (the stores do not hold it).

    Raises:
        UserError: both ``snapshot`` and ``at``; an id that is not hexadecimal, matches
            nothing, several snapshots, or a forgotten or rejected one; no good snapshot
            at or before ``at``.
        OperationError: no good snapshot at all (for ``latest``).
    """
    known = list(snapshots)
    if snapshot is not None and at is not None:
        raise UserError("give --snapshot or --at, not both")
    if snapshot is not None and snapshot != LATEST:
        primary = _by_id(known, snapshot)
        if not primary.good:
            return RestorePoint(primary=primary, snapshots=(primary,))
        return _with_run(primary, known)
    good = sorted((s for s in known if s.good), key=lambda s: (s.time, s.id))
    if at is not None:
        earlier = [s for s in good if s.time <= at]
        if not earlier:
            oldest = f"; the oldest good one is from {good[0].time.isoformat()}" if good else ""
            raise UserError(f"no good snapshot at or before {at.isoformat()}{oldest} "
                            "(see drd snapshots)")
        good = earlier
    if not good:
        raise OperationError("this system has no good snapshot to restore yet (see drd "
                             "snapshots)")
    return _with_run(good[-1], known, lead=True)


def _by_id(known: Sequence[SnapshotInfo], wanted: str) -> SnapshotInfo:
    prefix = wanted.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{1,64}", prefix):
        raise UserError(f"bad snapshot id {wanted!r}: expected hexadecimal (a full id or "
                        "a unique prefix) or 'latest'")
    matches = [s for s in known if s.id.startswith(prefix)]
    if not matches:
        raise UserError(f"no snapshot {wanted!r} of this system (see drd snapshots)")
    if len(matches) > 1:
        raise UserError(f"snapshot id {wanted!r} is ambiguous ({len(matches)} snapshots "
                        "start with it): give more of it")
    (match,) = matches
    if match.status == "forgotten":
        raise UserError(f"snapshot {match.id[:12]} was forgotten by retention: its data "
                        "is gone; pick another (drd snapshots)")
    if match.status == "rejected":
        raise UserError(f"snapshot {match.id[:12]} was rejected: the agent reported it, "
                        "but the stores do not hold it; pick another (drd snapshots)")
    return match


def _with_run(primary: SnapshotInfo, known: Sequence[SnapshotInfo], *,
              lead: bool = False) -> RestorePoint:
    """``primary`` and the good snapshots of its run, oldest first; with ``lead`` the
    run's first snapshot becomes the primary (the agent backs up the paths first)."""
    run = primary.run
    members = [s for s in known if s is primary or (run is not None and s.good
                                                     and s.run == run)]
    members.sort(key=lambda s: (s.time, s.id))
    return RestorePoint(primary=members[0] if lead else primary, snapshots=tuple(members))


# -- paths -----------------------------------------------------------------------------------


def check_include(path: str) -> str:
    """An ``--include`` path, normalised (no trailing ``/``): absolute as in the snapshot,
    without ``.`` or ``..`` parts, empty parts or control characters.

    Raises:
        UserError: it is none of that, saying why.
    """
    if not path or not path.startswith("/"):
        raise UserError(f"--include {path!r}: give the path as it is in the snapshot, "
                        "absolute (e.g. /srv/share/report.odt)")
    problem = _path_problem(path.rstrip("/") or "/")
    if problem:
        raise UserError(f"--include {path!r}: {problem}")
    return path.rstrip("/") or "/"


def _path_problem(path: str, *, control: bool = True) -> str | None:
    """Why ``path`` (absolute) is unsafe, or None; ``control``: refuse control characters
    too (in what a person typed; a file name in a snapshot may hold them)."""
    if "\0" in path or (control and any(ord(char) < 32 or char == "\x7f" for char in path)):
        return "it holds a control character"
    if path == "/":
        return None
    parts = path[1:].split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "it has an empty, '.' or '..' part"
    return None


def include_pattern(path: str) -> str:
    """The restic ``--include`` pattern that matches exactly ``path`` (globs escaped), and
    with it everything beneath (restic includes a matched directory's contents)."""
    return "".join(f"\\{char}" if char in _GLOB_SPECIAL else char for char in path)


def beneath(path: str, root: str) -> bool:
    return root == "/" or path == root or path.startswith(root + "/")


@dataclass(frozen=True)
class Selection:
    """What one snapshot contributes to a restore: ``includes`` (restic patterns; none:
    everything), and the files (path -> size) and entries expected back."""

    snapshot: str
    includes: tuple[str, ...]
    files: Mapping[str, int]
    entries: Mapping[str, str]
    everything: bool

    @property
    def empty(self) -> bool:
        return not self.everything and not self.entries

    @property
    def bytes(self) -> int:
        return sum(self.files.values())


def select(snapshot: str, nodes: Sequence[Node], includes: Sequence[str]) -> Selection:
    """The part of a snapshot's tree (``restic ls``) that ``includes`` (checked paths)
    asks for: each included path, what lies beneath it, and the directories leading to
    it (restic creates them); everything when there are no includes (pure)."""
    if not includes:
        wanted = list(nodes)
    else:
        wanted = [node for node in nodes
                  if any(beneath(node.path, root) or beneath(root, node.path)
                         for root in includes)]
        # a directory above an include comes back as a directory, not with its contents
    entries = {node.path: node.type for node in wanted}
    files = {node.path: node.size for node in wanted if node.type == "file"}
    matched = tuple(include_pattern(root) for root in includes
                    if any(beneath(node.path, root) for node in nodes))
    return Selection(snapshot=snapshot, includes=matched, files=files, entries=entries,
                     everything=not includes)


def check_nodes(nodes_by_snapshot: Mapping[str, Sequence[Node]]) -> None:
    """Refuse a restore point whose paths would land outside the target.

    Every path must be absolute without ``.``/``..``/empty parts (restic writes
    ``<target><path>``), and none may lie beneath a symbolic link of the restore point
    (restic would write through the link, wherever it points) -- across all its
    snapshots, since they are restored into the same tree. For the same reason a path
    that is a symbolic link in one snapshot may not be anything in another: restic would
    write that snapshot's file through the other's link.

    Raises:
        UserError: the first offending path and why.
    """
    links: set[str] = set()
    for nodes in nodes_by_snapshot.values():
        links.update(node.path for node in nodes if node.type == "symlink")
    holders: dict[str, set[str]] = {}  # a link's path -> the snapshots that hold it
    for snapshot, nodes in nodes_by_snapshot.items():
        for node in nodes:
            if node.path in links:
                holders.setdefault(node.path, set()).add(snapshot)
    for snapshot, nodes in nodes_by_snapshot.items():
        for node in nodes:
            problem = "it is not absolute" if not node.path.startswith("/") else \
                _path_problem(node.path, control=False)
            if problem is None:
                parent = posixpath.dirname(node.path)
                while parent not in ("/", ""):
                    if parent in links:
                        problem = f"it lies beneath the symbolic link {parent}"
                        break
                    parent = posixpath.dirname(parent)
            if problem:
                raise UserError(f"snapshot {snapshot[:12]} holds {node.path!r}, which would "
                                f"land outside the target: {problem}; refused")
    for path, snapshots in sorted(holders.items()):
        if len(snapshots) > 1:
            raise UserError(f"snapshots {', '.join(sorted(s[:12] for s in snapshots))} all "
                            f"hold {path!r}, a symbolic link in one of them: restored into "
                            "the same tree, one would be written through the other's link; "
                            "refused")


def unmatched_includes(includes: Sequence[str],
                       nodes_by_snapshot: Mapping[str, Sequence[Node]]) -> list[str]:
    """The includes that match no path of any snapshot of the point (pure)."""
    return [root for root in includes
            if not any(beneath(node.path, root) for nodes in nodes_by_snapshot.values()
                       for node in nodes)]


# -- stores ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreHealth:
    """What the catalog says of one store holding the system's repository.

    ``copy``: the state of the restore point's copy in it (the worst of its snapshots':
    ``present``, ``pending``, ``missing``, ``damaged``, ``forgotten``; None when no copy
    is recorded); ``reachable``: the daemon's last probe (None: never probed);
    ``damaged_objects``: objects of the system found corrupt, missing or lost there;
    ``lag_objects``: what replication still lacks there; ``replica_error``: replication
    could not finish its last pass there.
    """

    name: str
    position: int
    copy: str | None = None
    reachable: bool | None = None
    damaged_objects: int = 0
    lag_objects: int = 0
    replica_error: bool = False

    @property
    def problems(self) -> int:
        return ((self.reachable is None) + (self.damaged_objects > 0)
                + (self.lag_objects > 0) + self.replica_error)

    @property
    def healthy(self) -> bool:
        """Holds a present copy and was not found unreachable."""
        return self.copy == "present" and self.reachable is not False


_COPY_RANK = {"present": 0, "pending": 1, None: 2, "missing": 3, "damaged": 4,
              "forgotten": 5}


def order_stores(stores: Iterable[StoreHealth]) -> list[StoreHealth]:
    """The order to try the stores in: the healthiest first, every store once (pure).

    The rule: first the stores that hold a **present** copy of the restore point and
    were **not found unreachable** by the daemon's last probe, fewest problems first
    (a problem each: never probed, damaged objects, replication lag, a replication
    error), then fewer damaged objects, then the policy's order. After them, as
    fallbacks, the others -- the catalog may be behind the stores: those not found
    unreachable before those that were, then by the copy's state (pending, unknown,
    missing, damaged, forgotten), problems and the policy's order.
    """
    return sorted(stores, key=lambda s: (
        not s.healthy, s.reachable is False, _COPY_RANK.get(s.copy, 2), s.problems,
        s.damaged_objects, s.position))


def worst_copy(states: Sequence[str | None]) -> str | None:
    """The state of a restore point's copy in a store: the worst of its snapshots'."""
    if not states:
        return None
    return max(states, key=lambda state: _COPY_RANK.get(state, 2))


# -- a store that stopped answering ----------------------------------------------------------


def stalled(now: float, last_growth: float, last_probe: float, *, stall_seconds: float,
            probe_seconds: float) -> bool:
    """Whether to probe the store now: no progress for ``stall_seconds`` and no probe
    within the last ``probe_seconds`` (pure). restic retries a dead store for minutes
    (about 7 for a server stopped mid-restore, seen with 0.14): a probe that fails then
    stops restic and the restore moves on to the next store."""
    return now - last_growth >= stall_seconds and now - last_probe >= probe_seconds
