"""Running a restore drill: restore from one store into a sandbox, check, time, sign.

:func:`run_drill` is the one entry point (``drd drill run`` and the daemon's ``drill``
jobs). In order, each phase timed:

1. **unseal** the system's restic password from escrow (an ``escrow.unseal`` audit entry);
1a. **repair**, in a store that keeps versions (Object Lock): what a delete marker hides
   or an overwrite covers there is brought back from its newest good version before
   restic reads the store (restic reads only current versions), each with an
   ``object.repair`` audit entry (:func:`~drd.services.restore.centre.repair_before_reading`);
   the report lists them under ``repair``, and a ``repair`` check fails the drill when an
   object stays covered with no good version in that store;
2. **restore** the restore point (:mod:`restore_drills.plan`) from the chosen store alone
   (a repository opened on that store only, with a restic cache of its own inside the
   sandbox, so that nothing is read from another store or an earlier run) into a fresh
   0700 sandbox, with ``restic restore --verify`` (**verify**: restic re-reads every
   restored file against its blob hashes);
3. **count** the restored files and bytes against the snapshot;
4. **manifest**: the agent's signed manifests, signature checked first, compared with
   the restored files (the catalog's; where it has none, the store's sealed copy,
   unsealed with an ``escrow.unseal_manifest`` audit entry);
5. **control**: one byte of a restored file changed; the manifest check must catch it;
6. **checks**: the policy's application checks against the restored tree.

The verdict is :func:`restore_drills.verdict.decide`; the report (schema 1,
``docs/drills.md``) is signed by the centre's signing key and kept in the catalog with the
drill; the sandbox is removed in every case. A store that cannot be read, or a sandbox
too small, ends the drill early as *failed*, with the reason: a store that cannot be
drilled is reported, never skipped.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import drd
from drd.catalog import Catalog
from drd.catalog.types import utcnow
from drd.config import Config
from drd.crypto.errors import BadSignature, CryptoError
from drd.crypto.keystore import KeyStore
from drd.crypto.masterkey import MasterKey
from drd.crypto.pem import load_signing_public_key
from drd.crypto.signing import public_key_fingerprint, verify
from drd.errors import DrdError, OperationError
from drd.recorded.keys import manifest_keys, sealed_manifest_keys
from drd.restic import Repository, Restic, ResticError, ResticStopped
from drd.secrets import Secret
from drd.services.escrow import unseal_manifest, unseal_password
from drd.services.repositories import RepositoryStore
from drd.services.restore.centre import open_store_repository, repair_before_reading
from drd.services.restore.staging import remove_tree
from drd.stores.errors import ObjectNotFound
from restore_drills import records
from restore_drills.checks import (
    CheckOutcome,
    ManifestComparison,
    RestoredFile,
    compare_manifest,
    count_check,
    file_sha256,
    manifest_entries,
    negative_control,
    restored_files,
    run_application_check,
    whole_error_path,
)
from restore_drills.plan import (
    ALL,
    DrillSettings,
    RestorePoint,
    Selection,
    choose_restore_point,
    include_batches,
    select_files,
    settings_from_policy,
)
from restore_drills.posture import StoreCopy, assess
from restore_drills.report import REPORT_SCHEMA, sign_report
from restore_drills.rotation import choose_store
from restore_drills.verdict import Targets, Verdict, decide, rto_of

log = logging.getLogger("restore_drills")

SPACE_MARGIN = 1.05
"""Free space a restore needs, as a multiple of the bytes it restores."""

@dataclass
class DrillProgress:
    """What a drill tells its caller as it goes: the phase, and for ``restore`` the
    bytes expected (for a progress bar that watches the sandbox fill)."""

    phase: str
    sandbox: Path | None = None
    expected_bytes: int = 0


@dataclass
class DrillOutcome:
    """A finished drill: its catalog ``id``, the signed ``report`` and its signature."""

    id: int
    report: dict[str, Any] = field(repr=False)
    signature: bytes = field(repr=False)

    @property
    def passed(self) -> bool:
        return bool(self.report["passed"])

    def summary(self) -> dict[str, Any]:
        """What ``drd drill run --json`` prints."""
        report = self.report
        keys = ("id", "system", "store", "snapshot", "passed", "rto_seconds", "rpo_seconds",
                "reasons", "checks", "phases", "affected_files", "targets", "restore",
                "repair", "posture", "started_at", "finished_at")
        return {key: report.get(key) for key in keys}


class _Stopped(Exception):
    """The drill cannot go on (a store that cannot be read, a sandbox too small): the
    check that says so, failed, with its detail."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"{check}: {detail}")
        self.check = check
        self.detail = detail


class DrillInterrupted(OperationError):
    """The drill was asked to stop (the daemon is stopping): no verdict; it runs again."""


def run_drill(catalog: Catalog, master_key: MasterKey, keystore: KeyStore, config: Config,
              home: Path, system: str, *, store: str | None = None,
              snapshot: str | None = None, actor: str = "cli", trigger: str = "cli",
              on_phase: Callable[[DrillProgress], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> DrillOutcome:
    """Drill ``system`` from ``store`` (default: the next store in rotation), restoring
    ``snapshot``'s restore point (default: the policy's ``drill.snapshot``, ``latest``).

    Returns the outcome, passed or failed; a failed drill is also an open
    ``drill_failed`` alert. ``should_stop`` is asked while restic runs and between
    phases; once it returns True the drill ends without a verdict (and without an
    alert): :class:`DrillInterrupted`.

    Raises:
        UserError: an unknown system, a store the system is not kept in, an unknown or
            unusable snapshot id.
        OperationError: the system has no good snapshot yet.
        DrillInterrupted: ``should_stop`` said so.
    """
    subject = records.load_subject(catalog, system)
    settings = settings_from_policy(subject.document, home)
    if not subject.stores:
        raise OperationError(f"system {system!r} is kept in no registered store")
    chosen = subject.store(store) if store is not None else subject.store(
        choose_store([s.name for s in subject.stores], subject.last_attempt))
    point = choose_restore_point(subject.snapshots, settings.snapshot, snapshot)
    started_at = utcnow()
    drill_id = records.start_drill(catalog, subject, chosen, point.primary, started_at,
                                   stale_after=max(dt.timedelta(days=1), 2 * settings.rto))
    log.info("drill %d: %s from %s, snapshot %s", drill_id, system, chosen.name,
             point.primary.restic_id[:12])
    try:
        runner = _DrillRun(catalog, master_key, keystore, config, subject, chosen, point,
                           settings, actor, on_phase or (lambda progress: None),
                           should_stop or (lambda: False))
        report = runner.run(drill_id, started_at, trigger,
                            judge_rpo=snapshot is None and settings.snapshot == "latest")
        signature = sign_report(keystore.signing_private_key(), report)
        records.finish_drill(catalog, drill_id, report, signature, subject=subject,
                             store=chosen)
    except BaseException as error:
        # never leave it "running": that would hold its snapshots back from retention
        try:
            if isinstance(error, DrillInterrupted | KeyboardInterrupt):
                # not an attempt: no verdict, no alert, no turn of the rotation used up
                records.discard_drill(catalog, drill_id)
            else:
                records.abandon_drill(catalog, drill_id,
                                      f"the drill stopped: {type(error).__name__}")
        except Exception as recording:  # noqa: BLE001 - the first error is the news
            log.error("drill %d could not be closed: %s", drill_id, recording)
        raise
    if subject.document.get("drill"):
        # without a plan, no period to be overdue against
        records.flag_overdue(catalog, subject, settings.period, utcnow())
    verdict = "passed" if report["passed"] else "FAILED"
    log.log(logging.INFO if report["passed"] else logging.ERROR,
            "drill %d of %s from %s %s (RTO %.1f s)", drill_id, system, chosen.name, verdict,
            report["rto_seconds"] or 0.0)
    return DrillOutcome(drill_id, report, signature)


class _DrillRun:
    """One drill's work, phase by phase; :meth:`run` returns the unsigned report."""

    def __init__(self, catalog: Catalog, master_key: MasterKey, keystore: KeyStore,
                 config: Config, subject: records.Subject, store: records.StoreInfo,
                 point: RestorePoint, settings: DrillSettings, actor: str,
                 on_phase: Callable[[DrillProgress], None],
                 should_stop: Callable[[], bool]) -> None:
        self.catalog, self.master_key, self.keystore = catalog, master_key, keystore
        self.config, self.subject, self.store = config, subject, store
        self.point, self.settings, self.actor = point, settings, actor
        self.on_phase = on_phase
        self.should_stop = should_stop
        self.phases: dict[str, float] = {}
        self.checks: dict[str, CheckOutcome] = {}
        self.affected: set[str] = set()
        self.restore_info: dict[str, Any] = {"mode": settings.mode,
                                             "percent": settings.percent,
                                             "paths": list(settings.paths)}
        self.manifest_kinds: dict[str, str] = {}
        self.repair_info: dict[str, Any] | None = None

    # -- the flow ---------------------------------------------------------------------------

    def run(self, drill_id: int, started_at: dt.datetime, trigger: str, *,
            judge_rpo: bool) -> dict[str, Any]:
        stopped = None
        sandbox = None
        try:
            sandbox = self._make_sandbox(drill_id)
            self._drill(sandbox)
        except _Stopped as stop:
            self.checks[stop.check] = CheckOutcome(False, stop.detail)
            stopped = str(stop)
        finally:
            if sandbox is not None:
                remove_sandbox(sandbox)
        # a drill that stopped before its restore measured no recovery time
        rto = rto_of(self.phases) if stopped is None else None
        rpo = max(0.0, (started_at - self.point.time).total_seconds())
        targets = Targets(self.settings.rto, self.settings.rpo, judge_rpo=judge_rpo)
        verdict = decide(self.checks, rto, rpo, targets, stopped_early=stopped)
        return self._report(drill_id, started_at, trigger, verdict, rto, rpo)

    def _drill(self, sandbox: Path) -> None:
        restored = sandbox / "restored"
        restored.mkdir(mode=0o700)
        password = self._timed("unseal", self._unseal)
        repository, target = self._open_repository(password)
        self._repair(target)
        selections = self._timed("list", lambda: self._selections(repository, sandbox))
        expected = {path: size for selection in selections.values()
                    for path, size in selection.files.items()}
        self._check_space(sandbox, sum(expected.values()))
        self.on_phase(DrillProgress("restore", restored, sum(expected.values())))
        self._restore(repository, target, sandbox, restored, selections)
        found = restored_files(restored)
        count, size, unlike = count_check(found, expected)
        self.checks["file_count"], self.checks["bytes"] = count, size
        disagreement = self._reported_totals(selections)
        if disagreement is not None:
            self.checks["file_count"] = disagreement
        self.affected.update(unlike)
        self.restore_info.update(files=len(found), bytes=sum(f.size for f in found.values()),
                                 expected_files=len(expected),
                                 expected_bytes=sum(expected.values()))
        self.on_phase(DrillProgress("manifest"))
        comparison = self._timed("manifest", lambda: self._manifest(target, restored, found,
                                                                    expected))
        self.on_phase(DrillProgress("control"))
        if comparison is not None:
            self.checks["negative_control"] = self._timed(
                "control", lambda: negative_control(restored, comparison.matched, found))
        if self.should_stop():
            raise DrillInterrupted("the drill was interrupted before its checks")
        self.on_phase(DrillProgress("checks"))
        self._timed("checks", lambda: self._application_checks(restored))

    # -- phases -----------------------------------------------------------------------------

    def _timed(self, phase: str, work: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            return work()
        finally:
            self.phases[phase] = self.phases.get(phase, 0.0) + time.monotonic() - started

    def _make_sandbox(self, drill_id: int) -> Path:
        root = self.settings.sandbox
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            sandbox = Path(tempfile.mkdtemp(prefix=f"drill-{drill_id}-", dir=root))
        except OSError as error:
            raise _Stopped("sandbox", f"cannot create a directory under {root}: "
                                      f"{error.strerror or error}") from None
        os.chmod(sandbox, 0o700)
        return sandbox

    def _unseal(self) -> Secret:
        self.on_phase(DrillProgress("unseal"))
        try:
            return unseal_password(self.catalog, self.keystore, self.subject.system,
                                   actor=self.actor,
                                   reason=f"restore drill from {self.store.name}")
        except OperationError as error:
            raise _Stopped("unseal", str(error)) from None

    def _open_repository(self, password: Secret) -> tuple[Repository, RepositoryStore]:
        try:
            return open_store_repository(self.catalog, self.master_key, self.subject.system,
                                         self.store.name, password)
        except (DrdError, ValueError) as error:
            raise _Stopped("restic_verify", f"store {self.store.name} cannot be opened: "
                                            f"{error}") from None

    def _repair(self, target: RepositoryStore) -> None:
        """Bring back what is covered in the drilled store, before restic reads it (the
        drill's caller holds the system's lock). Timed as the ``repair`` phase where the
        store keeps versions: recovering from this store needs it."""
        self.on_phase(DrillProgress("repair"))
        started = time.monotonic()
        repair = repair_before_reading(self.catalog, self.subject.system, target,
                                       actor=self.actor, lock=False)
        if not repair.keeps_versions:
            return
        self.phases["repair"] = time.monotonic() - started
        self.repair_info = {key: repair.as_dict()[key]
                            for key in ("looked_at", "repaired", "unrepaired", "errors")}
        if repair.repaired or not repair.ok:
            brought = ", ".join(f"{item.key} ({item.reason})" for item in repair.repaired)
            detail = (f"{len(repair.repaired)} object(s) brought back from their newest good "
                      f"version in {self.store.name} (audit object.repair)"
                      + (f": {brought}" if brought else ""))
            if not repair.ok:
                stuck = [f"{item.key} ({item.reason}): {item.detail}"
                         for item in repair.unrepaired] + repair.errors
                detail += "; not repaired: " + "; ".join(stuck)
            self.checks["repair"] = CheckOutcome(repair.ok, detail[:2000])

    def _restic(self, sandbox: Path) -> Restic:
        # a cache of its own: every byte of this drill comes from this store, now
        return Restic(self.config.restic_binary, cache_dir=sandbox / "cache")

    def _selections(self, repository: Repository, sandbox: Path) -> dict[str, Selection]:
        """What to restore and expect back, per snapshot id, from this store's listing."""
        restic = self._restic(sandbox)
        selections = {}
        for snapshot in self.point.snapshots:
            try:
                nodes = restic.ls(repository, snapshot.restic_id, should_stop=self.should_stop)
            except ResticStopped:
                raise DrillInterrupted("the drill was interrupted while listing") from None
            except ResticError as error:
                raise _Stopped("restic_verify", f"store {self.store.name} could not be "
                                                f"listed: {error}") from None
            selections[snapshot.restic_id] = select_files(nodes, self.settings)
        return selections

    def _reported_totals(self, selections: Mapping[str, Selection]) -> CheckOutcome | None:
        """For a full restore: the store's listing against what the agent reported when
        it made the snapshots (a store holding an older or truncated tree shows here)."""
        if self.settings.mode != ALL:
            return None
        problems = []
        for snapshot in self.point.snapshots:
            listed = selections[snapshot.restic_id].files
            reported = (snapshot.file_count, snapshot.size_bytes)
            if reported[0] is None or reported[1] is None:
                continue
            if (len(listed), sum(listed.values())) != reported:
                problems.append(f"snapshot {snapshot.restic_id[:12]} lists {len(listed)} "
                                f"files ({sum(listed.values())} bytes); the agent reported "
                                f"{reported[0]} ({reported[1]} bytes)")
        if problems:
            return CheckOutcome(False, "; ".join(problems))
        return None

    def _check_space(self, sandbox: Path, needed: int) -> None:
        limit = self.settings.max_sandbox_bytes
        if limit is not None and needed > limit:
            raise _Stopped("sandbox", f"the restore needs {needed} bytes, over the limit "
                                      f"{limit} (drill.sandbox.max_size)")
        free = shutil.disk_usage(sandbox).free
        if needed * SPACE_MARGIN > free:
            raise _Stopped("sandbox", f"the restore needs {needed} bytes and "
                                      f"{sandbox.parent} has {free} free")

    def _restore(self, repository: Repository, target: RepositoryStore, sandbox: Path,
                 restored: Path, selections: Mapping[str, Selection]) -> None:
        restic = self._restic(sandbox)
        verified, errors = 0, []
        verify_ran = True
        for snapshot in self.point.snapshots:
            selection = selections[snapshot.restic_id]
            if not selection.everything and not selection.includes:
                continue  # the sample holds no file of this snapshot
            for includes in include_batches(selection.includes):
                try:
                    summary = restic.restore(repository, snapshot.restic_id, restored,
                                             includes=includes, verify=True, keep_going=True,
                                             should_stop=self.should_stop)
                except ResticStopped:
                    raise DrillInterrupted("the drill was interrupted while restoring") \
                        from None
                except ResticError as error:
                    raise _Stopped("restic_verify", f"the restore from {self.store.name} "
                                                    f"failed: {error}") from None
                self.phases["restore"] = self.phases.get("restore", 0.0) + \
                    (summary.restore_seconds or 0.0)
                self.phases["verify"] = self.phases.get("verify", 0.0) + \
                    (summary.verify_seconds or 0.0)
                if summary.verify_seconds is None:
                    verify_ran = False
                verified += summary.files_verified or 0
                errors.extend((whole_error_path(path, reason, selection.files), reason)
                              for path, reason in summary.file_errors)
                if summary.error_count > len(summary.file_errors):
                    errors.append(("", f"{summary.error_count - len(summary.file_errors)} "
                                       "more errors not listed by restic"))
        paths = sorted({path for path, _ in errors if path})
        self.affected.update(paths)
        if errors:
            first = next((f"{path}: {reason}" for path, reason in errors if path),
                         errors[0][1])
            detail = (f"restic could not restore {len(paths)} file(s) from "
                      f"{self.store.name} ({first}); verification did not run")
            self.checks["restic_verify"] = CheckOutcome(False, detail)
        elif not verify_ran:
            self.checks["restic_verify"] = CheckOutcome(False, "restic's verification did "
                                                               "not run")
        else:
            self.checks["restic_verify"] = CheckOutcome(
                True, f"restic restore --verify: {verified} files re-read against their "
                      "blob hashes")

    def _manifest(self, target: RepositoryStore, restored: Path,
                  found: Mapping[str, RestoredFile], expected: Mapping[str, int]
                  ) -> ManifestComparison | None:
        manifests = []
        problems = []
        fingerprints = set()
        try:
            public_key = load_signing_public_key((self.subject.agent_public_key or "").encode())
        except (CryptoError, ValueError):
            public_key = None
        recorded = records.load_manifests(self.catalog, [s.id for s in self.point.snapshots])
        for snapshot in self.point.snapshots:
            signed = recorded.get(snapshot.id) or _manifest_from_store(
                target, snapshot.restic_id, self._unsealer(target, snapshot.restic_id))
            if signed is None:
                problems.append(f"no manifest for snapshot {snapshot.restic_id[:12]}")
                continue
            content, signature = signed
            if public_key is None:
                problems.append("the agent's enrolled public key is missing or unreadable")
                continue
            try:
                verify(public_key, content, signature)
            except BadSignature:
                problems.append(f"the manifest of snapshot {snapshot.restic_id[:12]} does "
                                "not verify with the agent's enrolled key")
                continue
            fingerprints.add(public_key_fingerprint(public_key))
            manifest = json.loads(content)
            if manifest.get("snapshot_id") != snapshot.restic_id:
                problems.append(f"the manifest of snapshot {snapshot.restic_id[:12]} names "
                                "another snapshot")
                continue
            self.manifest_kinds[snapshot.restic_id] = str(manifest.get("kind") or "")
            manifests.append(manifest)
        if problems:
            self.checks["manifest_signature"] = CheckOutcome(False, "; ".join(problems))
            return None
        self.checks["manifest_signature"] = CheckOutcome(
            True, f"{len(manifests)} manifest(s), signed by the agent's key "
                  f"{', '.join(sorted(fp[:16] for fp in fingerprints))}")
        # only what the snapshot holds: the agent hashes the tree after restic read it,
        # so a file created in between is in the manifest and rightly not in the snapshot
        everything = manifest_entries(manifests, self.settings.sample_percent, None)
        entries = [entry for entry in everything if entry["path"] in expected]
        comparison = compare_manifest(entries, found, lambda path: file_sha256(restored, path))
        if self.settings.mode == ALL:
            comparison.changed.extend(entry["path"] for entry in everything
                                      if entry["path"] not in expected)
        self.checks["manifest"] = comparison.outcome()
        self.affected.update(comparison.differ)
        self.affected.update(comparison.missing)
        return comparison

    def _unsealer(self, target: RepositoryStore, restic_id: str) -> Callable[[bytes], bytes]:
        """Unseals ``restic_id``'s manifest read from ``target``, with an audit entry."""
        def unseal_blob(sealed: bytes) -> bytes:
            return unseal_manifest(
                self.catalog, self.keystore, self.subject.system, restic_id, sealed,
                actor=self.actor, store=target.name,
                reason=f"drill: the catalog has no manifest of snapshot {restic_id[:12]}")
        return unseal_blob

    def _application_checks(self, restored: Path) -> None:
        for check in self.settings.checks:
            self.checks[f"app:{check['name']}"] = run_application_check(check, restored)

    # -- the report -------------------------------------------------------------------------

    def _report(self, drill_id: int, started_at: dt.datetime, trigger: str, verdict: Verdict,
                rto: float | None, rpo: float) -> dict[str, Any]:
        primary = self.point.primary
        drill_errors = 0 if verdict.passed else 1
        copies = [StoreCopy(name=store.name, region=store.region,
                            complete=store.name in self.subject.copies.get(primary.id, set()),
                            object_lock=store.object_lock)
                  for store in self.subject.stores]
        posture = assess(copies, verification_errors=self.subject.damaged_objects,
                         drill_errors=drill_errors,
                         object_lock_days=int(self.subject.document.get("object_lock_days")
                                              or 0))
        return {
            "schema": REPORT_SCHEMA,
            "id": drill_id,
            "system": self.subject.system,
            "department": self.subject.department,
            "policy": self.subject.policy,
            "store": self.store.name,
            "region": self.store.region,
            "snapshot": primary.restic_id,
            "snapshot_time": self.point.time.isoformat(),
            "snapshots": [{"id": s.restic_id, "kind": self.manifest_kinds.get(s.restic_id)
                           or ("paths" if s is primary else "command"),
                           "time": s.time.isoformat(), "paths": list(s.paths)}
                          for s in self.point.snapshots],
            "started_at": started_at.isoformat(),
            "finished_at": utcnow().isoformat(),
            "trigger": trigger,
            "passed": verdict.passed,
            "reasons": list(verdict.reasons),
            "rto_seconds": round(rto, 3) if rto is not None else None,
            "rpo_seconds": round(rpo, 3),
            "targets": {"rto_seconds": self.settings.rto.total_seconds(),
                        "rpo_seconds": self.settings.rpo.total_seconds(),
                        "rpo_judged": "rpo" in verdict.checks},
            "phases": {name: round(seconds, 3) for name, seconds in self.phases.items()},
            "checks": {name: outcome.as_dict() for name, outcome in verdict.checks.items()},
            "affected_files": sorted(self.affected),
            "restore": self.restore_info,
            "repair": self.repair_info,
            "posture": posture.as_dict(),
            "versions": {"drd": drd.__version__, "restic": _restic_version(self.config)},
        }


def _restic_version(config: Config) -> str | None:
    try:
        return str(Restic(config.restic_binary).version())
    except DrdError:
        return None


def _manifest_from_store(target: RepositoryStore, restic_id: str,
                         unseal_blob: Callable[[bytes], bytes]
                         ) -> tuple[bytes, bytes] | None:
    """A manifest and its signature as the agent wrote them beside the repository, when
    the catalog has none (a report that has not arrived yet): the sealed manifest,
    opened by ``unseal_blob`` (which writes the audit entry), else the plaintext an
    older agent stored. None when the store holds neither, or it cannot be read."""
    sealed_key, signature_key = sealed_manifest_keys(restic_id)
    try:
        try:
            content = unseal_blob(target.store.read(sealed_key))
        except ObjectNotFound:
            content = target.store.read(manifest_keys(restic_id)[0])
        document = json.loads(target.store.read(signature_key))
        return content, base64.b64decode(document["signature"])
    except (DrdError, ValueError, KeyError, TypeError) as error:
        log.warning("no manifest of snapshot %s from %s: %s", restic_id[:12], target.name,
                    error)
        return None


def remove_sandbox(sandbox: Path) -> None:
    """Remove a drill's sandbox, also where restic restored read-only directories
    (:func:`drd.services.restore.staging.remove_tree`: never through a symbolic link)."""
    remove_tree(sandbox)
