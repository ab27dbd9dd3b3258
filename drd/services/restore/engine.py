"""The restore itself, store after store: shared by the centre (``drd restore``) and the
agent (``drd-agent restore``), which differ only in how they open a store's repository
and choose the snapshot.

:func:`run_restore` tries the candidate stores in order. One attempt, from one store:

1. open the repository there and settle the restore point (the agent reads the
   snapshots from the first store that answers; the centre chose from its catalog);
2. ``restic ls`` each snapshot of the point; refuse paths that would land outside the
   target (:func:`~drd.services.restore.plan.check_nodes`) and includes that match
   nothing -- bad input, exit 2, no other store is tried;
3. ``restic restore`` each snapshot into a fresh staging directory in the target, a
   watchdog stopping restic when it moved next to nothing for a while and the store no
   longer answers (restic itself retries a dead store for minutes);
4. check the staging tree against the listings (nothing the snapshot does not hold,
   nothing it holds missing) and move it into the target.

An attempt that fails on the store's account (unreachable, a snapshot or pack missing
there, restic failing, the store dying mid-way) is recorded, its staging removed, and the
next store is tried from scratch: the target never holds a mix of two attempts. When
every store failed, :class:`RestoreFailed` carries the attempts.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drd.errors import DrdError, OperationError, UserError
from drd.restic import Node, Repository, Restic, ResticError, ResticStopped
from drd.secrets import mask
from drd.services.restore import plan, staging
from drd.services.restore.plan import RestorePoint, Selection

log = logging.getLogger(__name__)

STALL_SECONDS = 20.0
"""Nothing written for this long: probe the store."""
PROBE_SECONDS = 10.0
"""At most one probe this often while stalled."""
PROGRESS_BYTES = 64 * 1024
"""Less than this read or written by restic is no progress (its retries, its timers)."""
WALK_SECONDS = 5.0
"""Without /proc, the staging tree is measured this often."""


@dataclass(frozen=True)
class Candidate:
    """A store to restore from. ``repository()`` opens the system's repository there
    (raises :class:`~drd.errors.DrdError` when it cannot); ``probe()`` asks the store a
    small question and raises when it does not answer (None: no probe, no watchdog)."""

    name: str
    repository: Callable[[], Repository]
    probe: Callable[[], None] | None = None


@dataclass(frozen=True)
class RestoreRequest:
    """What to restore and where. ``snapshot``: ``latest``, a full id or a unique prefix;
    ``at``: the newest good snapshot at or before it (give one or neither); ``store``:
    that store only, no fallback; ``includes``: absolute paths in the snapshot (what lies
    beneath each comes too); ``overwrite``: a non-empty target is allowed (what the
    snapshot holds replaces what is there, other files stay); ``verify``: restic re-reads
    every restored file against its blob hashes."""

    target: Path
    snapshot: str | None = None
    at: Any = None
    store: str | None = None
    includes: tuple[str, ...] = ()
    overwrite: bool = False
    verify: bool = False

    def checked(self) -> RestoreRequest:
        """The request with its includes normalised. Raises UserError (see
        :func:`~drd.services.restore.plan.check_include`)."""
        if self.snapshot is not None and self.at is not None:
            raise UserError("give --snapshot or --at, not both")
        includes = tuple(dict.fromkeys(plan.check_include(path) for path in self.includes))
        return RestoreRequest(target=Path(self.target), snapshot=self.snapshot, at=self.at,
                              store=self.store, includes=includes, overwrite=self.overwrite,
                              verify=self.verify)


@dataclass(frozen=True)
class Attempt:
    """One store tried: ``error`` is why it failed (None when it succeeded)."""

    store: str
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        return {"store": self.store, "ok": self.ok, "seconds": round(self.seconds, 3),
                "error": self.error}


@dataclass
class RestoreResult:
    """A finished restore, as ``--json`` prints it (:meth:`as_dict`)."""

    system: str
    snapshot: str
    snapshots: list[str]
    time: str
    store: str
    attempts: list[Attempt]
    files: int
    bytes: int
    seconds: float
    target: str

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "snapshot": self.snapshot, "time": self.time,
                "store": self.store, "attempts": [a.as_dict() for a in self.attempts],
                "files": self.files, "bytes": self.bytes,
                "seconds": round(self.seconds, 3), "target": self.target,
                "snapshots": list(self.snapshots)}


class RestoreFailed(OperationError):
    """Every store failed; ``attempts`` says how. ``snapshot`` is the restore point's
    primary snapshot id when one was chosen."""

    def __init__(self, message: str, *, system: str, attempts: Sequence[Attempt],
                 snapshot: str | None, target: str, seconds: float) -> None:
        super().__init__(message)
        self.system = system
        self.attempts = list(attempts)
        self.snapshot = snapshot
        self.target = target
        self.seconds = seconds

    def as_dict(self) -> dict[str, Any]:
        """What ``--json`` prints for a failed restore (``store`` null)."""
        return {"system": self.system, "snapshot": self.snapshot, "time": None,
                "store": None, "attempts": [a.as_dict() for a in self.attempts],
                "files": 0, "bytes": 0, "seconds": round(self.seconds, 3),
                "target": self.target, "error": str(self)}


class RestoreInterrupted(OperationError):
    """The caller asked the restore to stop: the staging was removed, the target left
    as it was found."""


@dataclass(frozen=True)
class RestoreEvent:
    """What a restore tells its caller as it goes (for messages and a progress bar):
    ``attempt`` (``store`` is being tried), ``restoring`` (restic writes into
    ``staging``; ``expected_bytes``), ``failed`` (``store`` failed: ``error``),
    ``moving`` (the tree is moved into place), ``done``."""

    kind: str
    store: str
    staging: Path | None = None
    expected_bytes: int = 0
    error: str | None = None


PointFor = Callable[[Restic, Repository], RestorePoint]


class _StoreFailed(Exception):
    """This attempt failed on the store's account: the next store may do better."""


def children_io() -> int | None:
    """Bytes this process's children (restic) read and wrote so far, network included
    (``rchar + wchar`` of ``/proc/<pid>/io``); None where /proc cannot tell. In a process
    running other children at once (the daemon's drills), their I/O counts too: the
    watchdog then gives up on a dead store later, never sooner."""
    try:
        pids: set[str] = set()
        for task in os.scandir("/proc/self/task"):
            with open(os.path.join(task.path, "children"), encoding="ascii") as listing:
                pids.update(listing.read().split())
    except OSError:
        return None
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/io", encoding="ascii") as counters:
                for line in counters:
                    name, _, value = line.partition(":")
                    if name in ("rchar", "wchar"):
                        total += int(value)
        except (OSError, ValueError):
            continue  # it ended meanwhile, or is not ours to read
    return total


def _tree_bytes(root: Path) -> int:
    """Bytes allocated under ``root`` (links not followed): the fallback measure."""
    total = 0
    for directory, _dirs, names in os.walk(root):
        for name in names:
            try:
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
            except OSError:
                continue
    return total


@dataclass
class _Watchdog:
    """``should_stop`` for restic: the caller's wish, or a store that stopped answering.

    Progress is what restic reads and writes (its ``/proc`` I/O counters, the network
    included; else the bytes in the staging tree, looked at every few seconds). After
    :data:`STALL_SECONDS` with less than :data:`PROGRESS_BYTES` of it, the store is
    probed; a probe that fails stops restic.
    """

    staging: Path
    probe: Callable[[], None] | None
    caller: Callable[[], bool]
    stall_seconds: float = STALL_SECONDS
    clock: Callable[[], float] = time.monotonic
    measure: Callable[[], int | None] = children_io
    dead: str | None = None
    interrupted: bool = False
    _mark: int | None = None
    _last_growth: float = field(default=0.0)
    _last_probe: float = field(default=float("-inf"))
    _last_walk: float = field(default=float("-inf"))

    def __post_init__(self) -> None:
        self._last_growth = self.clock()

    def __call__(self) -> bool:
        if self.caller():
            self.interrupted = True
            return True
        if self.probe is None:
            return False
        now = self.clock()
        done = self._progress(now)
        if done is not None and (self._mark is None or done - self._mark >= PROGRESS_BYTES
                                 or done < self._mark):
            self._mark, self._last_growth = done, now
        if plan.stalled(now, self._last_growth, self._last_probe,
                        stall_seconds=self.stall_seconds, probe_seconds=PROBE_SECONDS):
            self._last_probe = now
            try:
                self.probe()
            except Exception as error:  # noqa: BLE001 - any failure to answer is "dead"
                self.dead = mask(str(error)).splitlines()[0] if str(error) else \
                    type(error).__name__
                return True
        return False

    def _progress(self, now: float) -> int | None:
        measured = self.measure()
        if measured is not None:
            return measured
        if now - self._last_walk < WALK_SECONDS:
            return None
        self._last_walk = now
        return _tree_bytes(self.staging)


def run_restore(system: str, candidates: Sequence[Candidate], request: RestoreRequest,
                point_for: PointFor, *, restic_binary: str | None = None,
                cache_dir: Path | None = None,
                on_event: Callable[[RestoreEvent], None] | None = None,
                should_stop: Callable[[], bool] | None = None,
                stall_seconds: float = STALL_SECONDS) -> RestoreResult:
    """Restore ``system`` into ``request.target`` from the first of ``candidates`` that
    succeeds (they are tried in the given order).

    ``point_for(restic, repository)`` gives the restore point (it may read the
    repository's snapshots; it is asked once, at the first store that answers).
    ``cache_dir``: restic's cache (default: a fresh one in the target, removed after).

    Raises:
        UserError: a bad request, a target that is a file or not empty without
            ``overwrite``, a snapshot path that would land outside the target, an
            include that matches nothing; nothing is written then.
        RestoreFailed: every store failed (the attempts say why).
        RestoreInterrupted: ``should_stop`` said so.
        OperationError: the restored tree holds what the snapshot does not (refused and
            removed), or it could not be moved into the target.
    """
    request = request.checked()
    started = time.monotonic()
    emit = on_event or (lambda event: None)
    caller_stop = should_stop or (lambda: False)
    if not candidates:
        raise OperationError(f"system {system!r} is kept in no store this restore can read")
    target = request.target.absolute()
    created = staging.prepare_target(target, overwrite=request.overwrite)
    own_cache = cache_dir is None
    cache = staging.make_staging(target) if own_cache else cache_dir
    restic = Restic(restic_binary, cache_dir=cache)
    chosen: list[RestorePoint] = []
    attempts: list[Attempt] = []
    succeeded = False
    try:
        for candidate in candidates:
            emit(RestoreEvent("attempt", candidate.name))
            attempt_started = time.monotonic()
            try:
                tree = _attempt(restic, candidate, request, target, chosen, point_for,
                                emit, caller_stop, stall_seconds)
            except _StoreFailed as failure:
                error = str(failure)
                attempts.append(Attempt(candidate.name, time.monotonic() - attempt_started,
                                        error))
                log.warning("restore of %s from %s failed: %s", system, candidate.name,
                            error)
                emit(RestoreEvent("failed", candidate.name, error=error))
                continue
            attempts.append(Attempt(candidate.name, time.monotonic() - attempt_started))
            succeeded = True
            point = chosen[0]
            emit(RestoreEvent("done", candidate.name))
            return RestoreResult(system=system, snapshot=point.primary.id,
                                 snapshots=point.ids, time=point.primary.time.isoformat(),
                                 store=candidate.name, attempts=attempts, files=tree.files,
                                 bytes=tree.bytes, seconds=time.monotonic() - started,
                                 target=str(target))
        tried = "; ".join(f"{a.store}: {a.error}" for a in attempts)
        raise RestoreFailed(f"no store could restore {system} ({tried})", system=system,
                            attempts=attempts, snapshot=chosen[0].primary.id if chosen
                            else None, target=str(target),
                            seconds=time.monotonic() - started)
    finally:
        if own_cache:
            staging.remove_tree(cache)
        if created and not succeeded:
            _remove_if_empty(target)


def _attempt(restic: Restic, candidate: Candidate, request: RestoreRequest, target: Path,
             chosen: list[RestorePoint], point_for: PointFor,
             emit: Callable[[RestoreEvent], None], caller_stop: Callable[[], bool],
             stall_seconds: float) -> staging.Tree:
    """One store's attempt; returns the tree moved into the target.

    Raises _StoreFailed for what the store is to blame for, the rest as documented on
    :func:`run_restore`.
    """
    tree_root = staging.make_staging(target)
    kept = False
    try:
        try:
            repository = candidate.repository()
        except DrdError as error:
            raise _StoreFailed(f"cannot open the repository there: {error}") from None
        watchdog = _Watchdog(tree_root, candidate.probe, caller_stop, stall_seconds)
        try:
            if not chosen:
                chosen.append(point_for(restic, repository))
            point = chosen[0]
            nodes = {snapshot: restic.ls(repository, snapshot, should_stop=watchdog)
                     for snapshot in point.ids}
            selections = _selections(nodes, request.includes)
            expected = {path: kind for selection in selections
                        for path, kind in selection.entries.items()}
            emit(RestoreEvent("restoring", candidate.name, staging=tree_root,
                              expected_bytes=sum(s.bytes for s in selections)))
            for selection in selections:
                restic.restore(repository, selection.snapshot, tree_root,
                               includes=selection.includes, verify=request.verify,
                               should_stop=watchdog)
        except ResticStopped:
            if watchdog.interrupted:
                raise RestoreInterrupted("the restore was interrupted; the target is as it "
                                         "was") from None
            raise _StoreFailed(f"the store stopped answering mid-restore "
                               f"({watchdog.dead}); restic was stopped") from None
        except UserError:
            raise
        except (ResticError, OperationError) as error:
            if watchdog.dead:
                raise _StoreFailed(f"the store stopped answering ({watchdog.dead})") \
                    from None
            raise _StoreFailed(_short(error)) from None
        tree = staging.survey(tree_root)
        odd = staging.unexpected(tree, expected)
        if odd:
            raise OperationError(f"restic restored {len(odd)} entries the snapshot does not "
                                 f"list (e.g. {odd[0]!r}); refused, nothing was moved into "
                                 "the target")
        lacking = staging.missing(tree, expected)
        if lacking:
            raise _StoreFailed(f"{len(lacking)} entries of the snapshot were not restored "
                               f"(e.g. {lacking[0]!r})")
        emit(RestoreEvent("moving", candidate.name))
        try:
            staging.promote(tree_root, target)
        except OperationError:
            kept = True  # what was not moved stays in the staging tree, as promote says
            raise
        return tree
    finally:
        if not kept:
            staging.remove_tree(tree_root)


def _selections(nodes: Mapping[str, Sequence[Node]], includes: Sequence[str]
                ) -> list[Selection]:
    """What each snapshot of the point contributes; refuses unsafe paths and includes
    that match nothing (UserError)."""
    plan.check_nodes(nodes)
    unmatched = plan.unmatched_includes(includes, nodes)
    if unmatched:
        raise UserError(f"--include {unmatched[0]!r} is not in the snapshot (its paths "
                        "start with " + ", ".join(sorted({_top(n.path) for ns in
                                                          nodes.values() for n in ns
                                                          if n.path != "/"})[:5])
                        + "); see drd snapshots / restic ls")
    selections = [plan.select(snapshot, listed, includes) for snapshot, listed in
                  nodes.items()]
    return [selection for selection in selections if not selection.empty]


def _top(path: str) -> str:
    return "/" + path.lstrip("/").split("/", 1)[0]


def _short(error: Exception) -> str:
    """An error in one line for the attempts list: drd's first line, and restic's
    ``Fatal:`` line (or its last words)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    said = [line for line in lines[1:] if line != "restic said:"]
    fatal = [line for line in said if line.startswith("Fatal:")]
    if fatal or said:
        text += ": " + (fatal[-1] if fatal else said[-1])
    return mask(text)[:500]


def _remove_if_empty(target: Path) -> None:
    try:
        target.rmdir()
    except OSError:
        pass
