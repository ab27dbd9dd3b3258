"""``drd repair STORE [SYSTEM]``: bring back, in one store, every object of each system
that a delete marker hides or an overwrite covers, from its newest good version there.

For each system kept in the store (or the one named), :func:`repair_store` runs
:func:`drd.repair.repository.repair_repository`: one listing of the repository's versions,
each covered key judged newest first against its name or the catalog's record, the
newest good version put back as the current one (with the policy's Object Lock
retention), an ``object.repair`` audit entry and a ``tamper`` alert per object. A dry run
judges the same and changes nothing.

Idempotent and resumable: a second run finds every repaired object's current version
good and does nothing; a run stopped half-way (``should_stop``, Ctrl-C, ``kill``) is
finished by the next. Per-system failure isolation: a system whose repository cannot be
listed, or an object that cannot be brought back, is reported and the others go on.
Only this store is written to; what it holds no good version of is verification's to
heal from another store (``drd verify SYSTEM --store STORE``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from drd.catalog import Catalog
from drd.catalog.types import utcnow
from drd.crypto.masterkey import MasterKey
from drd.errors import UserError
from drd.repair.repository import ObjectRepair, RepositoryRepair, repair_repository
from drd.restic import ProgressEvent
from drd.services.repositories import open_repositories
from drd.verification.run import undamage

RETRY_ATTEMPTS = 4
RETRY_BACKOFF = 0.5


@dataclass
class RepairReport:
    """What :func:`repair_store` did: one :class:`RepositoryRepair` per system."""

    store: str
    dry_run: bool
    runs: list[RepositoryRepair] = field(default_factory=list)
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None

    def _all(self, name: str) -> list[ObjectRepair]:
        return [item for run in self.runs for item in getattr(run, name)]

    @property
    def repaired(self) -> list[ObjectRepair]:
        return self._all("repaired")

    @property
    def unrepaired(self) -> list[ObjectRepair]:
        return self._all("unrepaired")

    @property
    def unchecked(self) -> list[ObjectRepair]:
        return self._all("unchecked")

    @property
    def errors(self) -> list[str]:
        return [f"{run.system}: {error}" for run in self.runs for error in run.errors]

    @property
    def keeps_versions(self) -> bool:
        return any(run.keeps_versions for run in self.runs)

    @property
    def stopped(self) -> bool:
        return any(run.stopped for run in self.runs)

    @property
    def ok(self) -> bool:
        return all(run.ok for run in self.runs) and not self.stopped

    def as_dict(self) -> dict[str, Any]:
        return {"store": self.store, "dry_run": self.dry_run, "ok": self.ok,
                "keeps_versions": self.keeps_versions,
                "started_at": self.started_at.isoformat() if self.started_at else None,
                "finished_at": self.finished_at.isoformat() if self.finished_at else None,
                "repaired": len(self.repaired), "unrepaired": len(self.unrepaired),
                "unchecked": len(self.unchecked), "errors": self.errors,
                "stopped": self.stopped, "systems": [run.as_dict() for run in self.runs]}


def repair_store(catalog: Catalog, master_key: MasterKey, store: str,
                 systems: Iterable[str] | None = None, *, actor: str,
                 dry_run: bool = False,
                 progress: Callable[[ProgressEvent], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 now: Callable[[], dt.datetime] = utcnow) -> RepairReport:
    """Repair ``systems`` (names; None: every enrolled system kept in ``store``) in
    ``store``, as the module docstring says. The caller holds the systems' locks
    (shared), as for verification.

    ``progress`` gets a :class:`~drd.restic.ProgressEvent` per key looked at (keys as
    ``files``), per system. A store's or an object's failure is in the report, never
    raised.

    Raises:
        UserError: an unknown store or system, or a named system not kept in ``store``.
    """
    wanted = None if systems is None else list(systems)
    repositories = open_repositories(catalog, master_key, wanted, stores=[store],
                                     retry_attempts=RETRY_ATTEMPTS,
                                     retry_backoff=RETRY_BACKOFF)
    if wanted:
        kept = {repository.system for repository in repositories}
        for name in wanted:
            if name not in kept:
                raise UserError(f"system {name!r} is not kept in store {store!r} (see its "
                                "policy's stores)")
    report = RepairReport(store=store, dry_run=dry_run, started_at=now())
    for repository in repositories:
        if should_stop is not None and should_stop():
            break
        holder = repository.store(store)

        def step(done: int, total: int) -> None:
            if progress is not None:
                progress(ProgressEvent(percent_done=done / total if total else 1.0,
                                       files_done=done, total_files=total))

        run = repair_repository(
            catalog, system_id=repository.system_id, system=repository.system,
            holder=holder, lock_days=int(repository.policy.get("object_lock_days") or 0),
            actor=actor, dry_run=dry_run, progress=step, should_stop=should_stop, now=now)
        if run.repaired and not dry_run:
            undamage(catalog, repository.system_id)
        report.runs.append(run)
    report.finished_at = now()
    return report
