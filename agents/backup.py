"""One backup run of a system's policy: hooks, restic, manifests, reports.

:func:`plan_backup` decides what a run does (pure). :func:`run_backup` does it:

1. ``before`` commands in order; the first failure fails the run and nothing is backed up.
2. One ``restic backup`` of all path sources (their excludes rooted at each source,
   :mod:`agents.excludes`), then one ``restic backup --stdin`` per command source (its
   stdout piped in; a failing command stops restic before end of data, so no snapshot of
   a truncated dump exists). Every snapshot of the run is tagged ``drd-run:<run id>``.
   All through one target (the fan-out endpoint), so the sources are read once.
3. The manifests: the files of the path sources hashed (a sample, if the policy says
   so) while the ``before`` commands' effect (a frozen application) still holds; a
   command's output was hashed as it streamed. Each is signed, and stored sealed to the
   centre's escrow key (:mod:`agents.manifest`).
4. ``after`` commands in order, always -- also when an earlier step failed or the run
   was cancelled.

A run that fails (a ``before`` command, a missing or unreadable path, a failing dump, a
cancelled run) marks every snapshot it made as ``partial``: the centre keeps them, never
as a good restore point. A run that is not durable (fewer than ``min_copies`` stores hold
every object) fails too, but its snapshots are complete; the stores' states say where
they are. A failing ``after`` command fails the run without making its snapshots partial.

Nothing here talks to the centre: :mod:`agents.service` delivers the reports.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from agents.commands import CommandFailed, CommandOutput, RunCancelled, environment, run_hook
from agents.excludes import rooted_patterns
from agents.manifest import (
    FileDigests,
    SignedManifest,
    build_manifest,
    command_digests,
    seal_manifest,
    sign_manifest,
    walk_sources,
)
from agents.target import Target, TargetOutcome, put_everywhere
from drd.errors import DrdError
from drd.restic import BackupSummary, ProgressEvent, Restic, ResticStopped, SourceMissing
from drd.stores import Store
from policies.schema import CommandSource, PathSource, Policy

logger = logging.getLogger(__name__)

RUN_TAG_PREFIX = "drd-run:"
PATHS = "paths"
COMMAND = "command"


# -- the plan (pure) ----------------------------------------------------------------------


@dataclass(frozen=True)
class BackupPlan:
    """What one run does, decided from the policy alone."""

    run_id: str
    host: str
    tags: tuple[str, ...]
    paths: tuple[str, ...]
    excludes: tuple[str, ...]
    commands: tuple[CommandSource, ...]
    before: tuple[tuple[str, ...], ...]
    after: tuple[tuple[str, ...], ...]
    sample_percent: float


def run_tag(run_id: str) -> str:
    return f"{RUN_TAG_PREFIX}{run_id}"


def plan_backup(policy: Policy, *, run_id: str, host: str) -> BackupPlan:
    """The plan of a run of ``policy`` (pure).

    Raises:
        UserError: an exclude pattern restic would refuse.
    """
    path_sources = [source for source in policy.sources if isinstance(source, PathSource)]
    return BackupPlan(
        run_id=run_id,
        host=host,
        tags=(run_tag(run_id),),
        paths=tuple(source.path for source in path_sources),
        excludes=tuple(rooted_patterns((source.path, source.exclude)
                                       for source in path_sources)),
        commands=tuple(source for source in policy.sources
                       if isinstance(source, CommandSource)),
        before=tuple(tuple(argv) for argv in policy.before),
        after=tuple(tuple(argv) for argv in policy.after),
        sample_percent=policy.manifest.sample_percent,
    )


# -- results ------------------------------------------------------------------------------


@dataclass
class SnapshotResult:
    """One snapshot a run made (``kind``: ``paths`` or ``command``)."""

    snapshot_id: str
    kind: str
    sources: tuple[str, ...]
    summary: BackupSummary | None = None
    partial: bool = False
    time: datetime | None = None
    tree: str = ""
    paths: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    digests: FileDigests | None = None
    manifest: SignedManifest | None = None
    report_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def files(self) -> int:
        return self.summary.total_files_processed if self.summary else 0

    @property
    def bytes(self) -> int:
        return self.summary.total_bytes_processed if self.summary else 0


@dataclass
class BackupResult:
    """What a run did. ``problems`` fail the run; ``warnings`` do not."""

    run_id: str
    started: datetime
    finished: datetime | None = None
    duration_seconds: float = 0.0
    snapshots: list[SnapshotResult] = field(default_factory=list)
    outcome: TargetOutcome | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def failure(self) -> str:
        """The reason the run failed, as one message."""
        return "backup failed: " + "; ".join(self.problems)

    def as_dict(self) -> dict[str, Any]:
        """The ``drd-agent backup --json`` object."""
        first = self.snapshots[0] if self.snapshots else None
        stores = ({name: state.complete for name, state in self.outcome.stores.items()}
                  if self.outcome else {})
        return {
            "ok": self.ok,
            "run_id": self.run_id,
            "snapshot_id": first.snapshot_id if first else None,
            "time": _iso(first.time) if first else None,
            "stores": stores,
            "durable": self.outcome.durable if self.outcome else False,
            "files": sum(snapshot.files for snapshot in self.snapshots),
            "bytes": sum(snapshot.bytes for snapshot in self.snapshots),
            "duration_seconds": round(self.duration_seconds, 3),
            "started": _iso(self.started),
            "snapshots": [
                {"snapshot_id": s.snapshot_id, "kind": s.kind, "time": _iso(s.time),
                 "paths": list(s.paths or s.sources), "files": s.files, "bytes": s.bytes,
                 "partial": s.partial,
                 "manifest_sha256": s.manifest.sha256 if s.manifest else None}
                for s in self.snapshots
            ],
            "problems": list(self.problems),
            "warnings": list(self.warnings),
        }


def snapshot_report(result: BackupResult, snapshot: SnapshotResult, hostname: str) -> dict:
    """The contract's SnapshotReport for one snapshot of a run (pure)."""
    stores = ({name: state.as_report() for name, state in result.outcome.stores.items()}
              if result.outcome else {})
    duration = snapshot.summary.total_duration if snapshot.summary else result.duration_seconds
    return {
        "report_id": snapshot.report_id,
        "snapshot_id": snapshot.snapshot_id,
        "time": _iso(snapshot.time or result.started),
        "hostname": hostname,
        "paths": list(snapshot.paths or snapshot.sources),
        "tags": list(snapshot.tags or (run_tag(result.run_id),)),
        "tree": snapshot.tree,
        "files": snapshot.files,
        "bytes": snapshot.bytes,
        "duration_seconds": round(float(duration), 3),
        "stores": stores,
        "manifest_sha256": snapshot.manifest.sha256 if snapshot.manifest else None,
        "partial": snapshot.partial,
    }


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- the run ------------------------------------------------------------------------------


Progress = Callable[[ProgressEvent], None]


@dataclass
class RunContext:
    """Everything a run needs besides the plan.

    ``target`` is where restic writes (the fan-out endpoint over ``stores``);
    ``stores`` also receive the manifests, signed with ``identity_key`` and sealed to
    ``escrow_key`` (the centre's, from the assignment). ``should_stop`` is polled during
    the run; when it turns true, restic is stopped (SIGINT: its lock is removed) and the
    run ends as cancelled, after the ``after`` commands.
    """

    system: str
    policy: Policy
    restic: Restic
    target: Target
    stores: Sequence[Store]
    identity_key: Ed25519PrivateKey
    escrow_key: X25519PublicKey
    progress: Progress | None = None
    should_stop: Callable[[], bool] = lambda: False
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    command_env: dict[str, str] | None = None
    hook_timeout: float | None = None


def run_backup(context: RunContext, plan: BackupPlan) -> BackupResult:
    """Run ``plan``; return what happened (never raises for a failed run: see
    ``problems``).

    Raises:
        OSError, DrdError: only for faults outside the run's own steps (the target
            could not start, the manifests could not be signed).
    """
    started_clock = time.monotonic()
    result = BackupResult(run_id=plan.run_id, started=context.clock())
    env = context.command_env if context.command_env is not None else environment()
    try:
        if _run_before(context, plan, env, result):
            _run_sources(context, plan, env, result)
            _hash_paths(context, plan, result)
    finally:
        for argv in plan.after:
            try:
                run_hook(argv, stage="after", env=env, timeout=context.hook_timeout)
            except CommandFailed as error:
                result.problems.append(str(error))
    _sign_and_store_manifests(context, plan, result)
    result.finished = context.clock()
    result.duration_seconds = time.monotonic() - started_clock
    for problem in result.problems:
        logger.error("backup %s: %s", plan.run_id, problem)
    return result


def _run_before(context: RunContext, plan: BackupPlan, env: dict[str, str],
                result: BackupResult) -> bool:
    for argv in plan.before:
        if context.should_stop():
            result.cancelled = True
            result.problems.append("the run was cancelled before the backup started")
            return False
        try:
            run_hook(argv, stage="before", env=env, timeout=context.hook_timeout)
        except CommandFailed as error:
            result.problems.append(f"{error}; nothing was backed up")
            return False
    return True


def _run_sources(context: RunContext, plan: BackupPlan, env: dict[str, str],
                 result: BackupResult) -> None:
    def on_progress(event: ProgressEvent) -> None:
        if context.should_stop():
            raise RunCancelled("the agent is stopping")
        if context.progress is not None:
            context.progress(event)

    def hopeless() -> bool:
        return not context.target.can_be_durable()

    restic = context.restic
    try:
        with context.target as repository:
            if plan.paths:
                _backup_paths(restic, repository, plan, on_progress, result, hopeless)
                _cancelled(context, result)
            for source in plan.commands:
                if _cancelled(context, result) or hopeless():
                    break
                _backup_command(restic, repository, plan, source, env, context, on_progress,
                                result, hopeless)
            _cancelled(context, result)
            if result.snapshots:
                _describe_snapshots(restic, repository, plan, result)
    except (DrdError, OSError) as error:
        result.problems.append(f"the backup could not run: {error}")
    _mark_partial(result)
    result.outcome = context.target.outcome()
    if result.snapshots and not result.outcome.durable:
        result.problems.append("the backup is not durable: "
                               + result.outcome.describe_shortfall())


def _cancelled(context: RunContext, result: BackupResult) -> bool:
    if context.should_stop() and not result.cancelled:
        result.cancelled = True
        result.problems.append("the run was cancelled (the agent is stopping)")
    return result.cancelled


NOT_DURABLE = ("too few stores can take the backup (fewer than the policy's min_copies): "
               "restic was stopped rather than left to retry")


def _stopped_not_durable(result: BackupResult) -> None:
    if NOT_DURABLE not in result.problems:
        result.problems.append(NOT_DURABLE)


def _backup_paths(restic: Restic, repository, plan: BackupPlan, on_progress: Progress,
                  result: BackupResult, hopeless: Callable[[], bool]) -> None:
    try:
        summary = restic.backup(repository, plan.paths, excludes=plan.excludes,
                                tags=plan.tags, host=plan.host, progress=on_progress,
                                should_stop=hopeless)
    except SourceMissing as error:
        result.problems.append(str(error))
        if error.snapshot_id:
            result.snapshots.append(SnapshotResult(error.snapshot_id, PATHS, plan.paths,
                                                   partial=True))
        return
    except ResticStopped:
        _stopped_not_durable(result)
        return
    except DrdError as error:
        if not isinstance(error, RunCancelled):  # said once, by _cancelled
            result.problems.append(f"backup of {', '.join(plan.paths)} failed: {error}")
        return
    snapshot = SnapshotResult(summary.snapshot_id, PATHS, plan.paths, summary=summary,
                              partial=summary.partial)
    result.snapshots.append(snapshot)
    if summary.partial:
        unread = "; ".join(f"{item.item}: {item.message}" for item in summary.errors[:5])
        result.problems.append(f"restic could not read {len(summary.errors)} item(s) "
                               f"({unread}); snapshot {summary.short_id} lacks them")


def _backup_command(restic: Restic, repository, plan: BackupPlan, source: CommandSource,
                    env: dict[str, str], context: RunContext, on_progress: Progress,
                    result: BackupResult, hopeless: Callable[[], bool]) -> None:
    output = CommandOutput(source.command, env=env, should_stop=context.should_stop)

    def on_dump_progress(event: ProgressEvent) -> None:
        if context.should_stop():
            # the command may be silent (blocked): kill it, or restic's stdin feeder
            # would wait for its next chunk before restic can be stopped
            output.terminate()
        on_progress(event)

    try:
        summary = restic.backup_stdin(repository, output, source.filename, tags=plan.tags,
                                      host=plan.host, progress=on_dump_progress,
                                      should_stop=hopeless)
    except ResticStopped:
        _stopped_not_durable(result)
        return
    except DrdError as error:
        if not context.should_stop():  # a cancelled run says so once, by _cancelled
            result.problems.append(f"the dump {source.filename} failed: {error}")
        return
    finally:
        output.terminate()
    result.snapshots.append(SnapshotResult(
        summary.snapshot_id, COMMAND, (f"/{source.filename}",), summary=summary,
        digests=command_digests(source.filename, output.size, output.sha256)))


def _describe_snapshots(restic: Restic, repository, plan: BackupPlan,
                        result: BackupResult) -> None:
    """Fill in time, tree, paths and tags from ``restic snapshots`` (one call per run)."""
    try:
        listed = {snapshot.id: snapshot
                  for snapshot in restic.snapshots(repository, tags=plan.tags)}
    except DrdError as error:
        result.warnings.append(f"could not list the run's snapshots: {error}")
        return
    for snapshot in result.snapshots:
        found = listed.get(snapshot.snapshot_id)
        if found is None:
            result.warnings.append(f"snapshot {snapshot.snapshot_id[:8]} is not listed")
            continue
        snapshot.time = found.time
        snapshot.tree = found.tree
        snapshot.paths = found.paths
        snapshot.tags = found.tags


def _mark_partial(result: BackupResult) -> None:
    """A run whose sources failed keeps no snapshot as a good restore point."""
    if result.problems:
        for snapshot in result.snapshots:
            snapshot.partial = True


def _hash_paths(context: RunContext, plan: BackupPlan, result: BackupResult) -> None:
    for snapshot in result.snapshots:
        if snapshot.kind == PATHS and snapshot.digests is None:
            digests = walk_sources(plan.paths, plan.excludes, plan.sample_percent,
                                   should_stop=context.should_stop)
            # a walk cut short by a stop lists too few files: no manifest beats a wrong one
            snapshot.digests = None if context.should_stop() else digests


def _sign_and_store_manifests(context: RunContext, plan: BackupPlan,
                              result: BackupResult) -> None:
    retain_until = None
    if context.policy.object_lock_days > 0:
        retain_until = context.clock() + timedelta(days=context.policy.object_lock_days)
    for snapshot in result.snapshots:
        if snapshot.digests is None:
            result.warnings.append(f"no manifest for snapshot {snapshot.snapshot_id[:8]}: "
                                   "its files were not hashed")
            continue
        document = build_manifest(
            system=context.system, snapshot_id=snapshot.snapshot_id, run_id=plan.run_id,
            created=result.started, kind=snapshot.kind, sources=snapshot.sources,
            excludes=plan.excludes if snapshot.kind == PATHS else (),
            sample_percent=plan.sample_percent if snapshot.kind == PATHS else 100,
            digests=snapshot.digests)
        snapshot.manifest = seal_manifest(sign_manifest(context.identity_key, document),
                                          context.escrow_key, context.system)
        failed: dict[str, str] = {}
        for key, data in snapshot.manifest.stored_objects().items():
            failed.update(put_everywhere(context.stores, key, data, retain_until=retain_until))
        for store_name, error in sorted(failed.items()):
            result.warnings.append(f"the manifest of snapshot {snapshot.snapshot_id[:8]} is "
                                   f"not in store {store_name}: {error}")
