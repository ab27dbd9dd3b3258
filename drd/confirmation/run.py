"""The confirmation step: look for a system's reported snapshots in its stores, then let
each count, wait, or be rejected (:func:`confirm_reports`).

Every snapshot of the system still ``unconfirmed`` is looked for in each of the
policy's stores, keyless: ``HEAD snapshots/<id>``, then its bytes (a snapshot object is
a few hundred bytes; one over :data:`SNAPSHOT_OBJECT_LIMIT` is not read), whose SHA-256
must be its name. The stores are asked in parallel; a store that fails to answer (after
the short retries of its :class:`~drd.stores.retry.RetryingStore`) is not asked again in
this look. :func:`drd.confirmation.decide.judge` decides, and:

- **confirmed**: the snapshot becomes ``active`` and counts from now on. Each copy's
  state is set from what was found: ``present`` where the store holds the snapshot and
  the agent reported the copy complete, or replication has brought the store up to date
  since the report (its watermark is at or after it); ``missing`` where the agent
  reported objects missing there (replication repairs them), or where the store does not
  hold the snapshot at all; ``pending`` where the agent said complete but the store could
  not be asked;
- **rejected**: the snapshot becomes ``rejected``: never a restore point, never counted.
  Its copy rows (claims the stores contradicted) are removed; a ``forged_report`` alert
  names the system and the snapshot, and a ``snapshot.reject`` audit entry keeps the
  evidence and what the agent had claimed;
- **waiting**: nothing changes; the next look decides. Until then the copies show what
  the agent claimed, and the snapshot does not count.

The look reads the catalog before it asks a store, so every report it judges was
recorded -- and its snapshot written by the agent -- before the stores were asked.

Crash and idempotence: each snapshot's outcome is one transaction that changes the row
only while it is still ``unconfirmed`` (a conditional update), so a second look, or two
daemons looking at once, change nothing more; a kill before the commit leaves the
report unconfirmed for the next look.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from drd.catalog import Catalog, audit
from drd.catalog.models import Replica, Snapshot, SnapshotCopy, System
from drd.catalog.models import Store as StoreRow
from drd.catalog.types import utcnow
from drd.confirmation.decide import CONFIRM_WITHIN, Evidence, Judgement, Verdict, judge
from drd.crypto.masterkey import MasterKey
from drd.errors import UserError
from drd.services.alerts import raise_alert
from drd.services.repositories import RepositoryStore, SystemRepository, open_repositories
from drd.stores.base import Store
from drd.stores.errors import ObjectNotFound, StoreError

log = logging.getLogger("drd.confirmation")

SNAPSHOT_OBJECT_LIMIT = 1 << 20
"""The largest ``snapshots/`` object read: restic's are a few hundred bytes."""
RETRY_ATTEMPTS = 3
RETRY_BACKOFF = 0.5
"""A store that is down costs about a second and a half of one look, not minutes."""
ALERT_KIND = "forged_report"
REJECT_ACTION = "snapshot.reject"
SHORT_ID = 8


@dataclass
class ConfirmationReport:
    """What one look did, by restic id: ``confirmed``, ``rejected`` (id -> reason),
    ``waiting`` (id -> why); ``unreachable``: the stores that could not be asked, each
    with its error (one line)."""

    system: str
    confirmed: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    waiting: dict[str, str] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "confirmed": list(self.confirmed),
                "rejected": dict(self.rejected), "waiting": dict(self.waiting),
                "unreachable": dict(self.unreachable)}


@dataclass(frozen=True)
class _Reported:
    row_id: int
    restic_id: str
    time: dt.datetime
    reported_at: dt.datetime


def unconfirmed_reports(catalog: Catalog, system_id: int) -> list[_Reported]:
    """The system's ``unconfirmed`` snapshots, oldest report first."""
    with catalog.read_session() as session:
        return [_Reported(*row) for row in session.execute(
            sa.select(Snapshot.id, Snapshot.restic_id, Snapshot.time, Snapshot.reported_at)
            .where(Snapshot.system_id == system_id, Snapshot.status == "unconfirmed")
            .order_by(Snapshot.reported_at, Snapshot.id))]


def confirm_reports(catalog: Catalog, master_key: MasterKey, system: str, *,
                    actor: str = "scheduler", now: dt.datetime | None = None,
                    within: dt.timedelta = CONFIRM_WITHIN) -> ConfirmationReport:
    """Look for ``system``'s unconfirmed snapshots in its stores and confirm, reject or
    leave each (see the module docstring). Opens no store when nothing waits.

    A store's failure is never raised: it is in ``unreachable``, and the snapshots it
    could have held wait. ``actor`` names who looked, in the audit log.

    Raises:
        UserError: no such system, or it has no policy.
        OperationError: the catalog cannot be reached.
    """
    report = ConfirmationReport(system=system)
    with catalog.read_session() as session:
        system_id = session.scalar(sa.select(System.id).where(System.name == system))
    if system_id is None:
        raise UserError(f"no system named {system!r} (see drd status)")
    pending = unconfirmed_reports(catalog, system_id)
    if not pending:
        return report
    repositories = open_repositories(catalog, master_key, [system],
                                     retry_attempts=RETRY_ATTEMPTS,
                                     retry_backoff=RETRY_BACKOFF)
    if not repositories:  # a policy that names no store: nothing can confirm them
        report.waiting = {snapshot.restic_id: "the policy names no store"
                          for snapshot in pending}
        return report
    (repository,) = repositories
    found = _look_everywhere(repository.stores, [snapshot.restic_id for snapshot in pending],
                             report)
    now = now or utcnow()
    min_copies = max(int(repository.policy.get("min_copies") or 1), 1)
    for snapshot in pending:
        evidence = Evidence.of(
            held=[name for name, holds in found.items() if holds.get(snapshot.restic_id)],
            lacking=[name for name, holds in found.items()
                     if holds.get(snapshot.restic_id) is False],
            unknown=[name for name, holds in found.items()
                     if holds.get(snapshot.restic_id) is None])
        judgement = judge(evidence, min_copies=min_copies, reported_at=snapshot.reported_at,
                          now=now, within=within)
        short = snapshot.restic_id[:SHORT_ID]
        if judgement.verdict is Verdict.CONFIRM:
            if _confirm(catalog, repository, snapshot, evidence):
                report.confirmed.append(snapshot.restic_id)
                log.info("snapshot %s of %s confirmed: %s", short, system, judgement.reason)
        elif judgement.verdict is Verdict.REJECT:
            if _reject(catalog, repository, snapshot, evidence, judgement, actor, now):
                report.rejected[snapshot.restic_id] = judgement.reason
        else:
            report.waiting[snapshot.restic_id] = judgement.reason
            log.info("snapshot %s of %s not confirmed yet: %s", short, system,
                     judgement.reason)
    return report


def systems_waiting(catalog: Catalog, systems: Sequence[str] | None = None) -> list[str]:
    """The enrolled systems with a policy (of ``systems``, or all) that have unconfirmed
    snapshots, by name."""
    with catalog.read_session() as session:
        query = (sa.select(System.name).where(
            System.status == "enrolled", System.policy_id.is_not(None),
            sa.exists().where(Snapshot.system_id == System.id,
                              Snapshot.status == "unconfirmed"))
            .order_by(System.name))
        if systems is not None:
            query = query.where(System.name.in_(list(systems)))
        return list(session.scalars(query))


# -- looking ---------------------------------------------------------------------------------


def holds_snapshot(store: Store, restic_id: str) -> bool:
    """True when ``store`` (rooted at the repository) holds ``snapshots/<restic_id>`` and
    its bytes hash to the name; False when it answers without it.

    Raises :class:`StoreError` (but not :class:`ObjectNotFound`) when it cannot tell.
    """
    key = f"snapshots/{restic_id}"
    try:
        if store.head(key).size > SNAPSHOT_OBJECT_LIMIT:
            log.warning("store %s: %s is %s, too large for a snapshot: not it", store.name,
                        key, "over 1 MiB")
            return False
        data = store.read(key)
    except ObjectNotFound:
        return False
    if hashlib.sha256(data).hexdigest() != restic_id:
        log.warning("store %s: the bytes under %s are not that snapshot (their SHA-256 "
                    "differs from the name); verification repairs the copy", store.name, key)
        return False
    return True


def _look(store: RepositoryStore, restic_ids: Sequence[str]
          ) -> tuple[dict[str, bool | None], str | None]:
    """Each snapshot's presence in one store (None: not asked), and the store's error."""
    found: dict[str, bool | None] = {}
    for restic_id in restic_ids:
        try:
            found[restic_id] = holds_snapshot(store.store, restic_id)
        except StoreError as error:
            # down, refused, or its directory missing: not asked again in this look
            return {restic_id: found.get(restic_id) for restic_id in restic_ids}, str(error)
    return found, None


def _look_everywhere(stores: Sequence[RepositoryStore], restic_ids: Sequence[str],
                     report: ConfirmationReport) -> dict[str, dict[str, bool | None]]:
    """Per store name: what :func:`_look` found there, the stores asked in parallel."""
    found: dict[str, dict[str, bool | None]] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(stores)),
                                               thread_name_prefix="confirm") as pool:
        futures = {store.name: pool.submit(_look, store, restic_ids) for store in stores}
        for name, future in futures.items():
            found[name], problem = future.result()
            if problem is not None:
                report.unreachable[name] = problem
                log.warning("confirmation of %s: %s could not be asked: %s", report.system,
                            name, problem)
    return found


# -- the outcomes ----------------------------------------------------------------------------


def copy_state_found(claimed: str | None, where: str, caught_up: bool) -> str:
    """A copy's state once its snapshot is confirmed (pure).

    ``claimed``: the state the agent's report gave the copy (``present``, ``missing``;
    None when it named no copy there); ``where``: ``held``, ``lacking`` or ``unknown``
    (as :class:`~drd.confirmation.decide.Evidence`); ``caught_up``: the store's
    replication watermark is at or after the report.
    """
    if where == "held":
        if claimed == "present" or caught_up:
            return "present"
        return "missing" if claimed is not None else "pending"
    if where == "lacking":
        return "missing"
    return "missing" if claimed == "missing" else "pending"


def _confirm(catalog: Catalog, repository: SystemRepository, snapshot: _Reported,
             evidence: Evidence) -> bool:
    """Make ``snapshot`` active with its copies' states as found; False when another
    look settled it first."""
    key = f"snapshots/{snapshot.restic_id}"
    with catalog.session() as session:
        changed = session.execute(
            sa.update(Snapshot).where(Snapshot.id == snapshot.row_id,
                                      Snapshot.status == "unconfirmed")
            .values(status="active")).rowcount
        if not changed:
            return False
        watermarks = dict(session.execute(
            sa.select(Replica.store_id, Replica.watermark_at)
            .where(Replica.system_id == repository.system_id)).all())
        copies = {copy.store_id: copy for copy in session.scalars(
            sa.select(SnapshotCopy).where(SnapshotCopy.snapshot_id == snapshot.row_id))}
        for store in repository.stores:
            where = ("held" if store.name in evidence.held else
                     "lacking" if store.name in evidence.lacking else "unknown")
            mark = watermarks.get(store.store_id)
            caught_up = mark is not None and mark >= snapshot.reported_at
            copy = copies.get(store.store_id)
            state = copy_state_found(copy.state if copy else None, where, caught_up)
            if copy is None:
                copy = SnapshotCopy(snapshot_id=snapshot.row_id, store_id=store.store_id,
                                    missing_objects=0, missing=[])
                session.add(copy)
            copy.state = state
            if state == "present":
                copy.missing_objects, copy.missing = 0, []
            elif where == "lacking" and key not in (copy.missing or []):
                copy.missing = [*(copy.missing or []), key]
                copy.missing_objects = (copy.missing_objects or 0) + 1
    return True


def _reject(catalog: Catalog, repository: SystemRepository, snapshot: _Reported,
            evidence: Evidence, judgement: Judgement, actor: str, now: dt.datetime) -> bool:
    """Mark ``snapshot`` rejected, drop its claimed copies, alert and audit; False when
    another look settled it first."""
    short = snapshot.restic_id[:SHORT_ID]
    with catalog.session() as session:
        changed = session.execute(
            sa.update(Snapshot).where(Snapshot.id == snapshot.row_id,
                                      Snapshot.status == "unconfirmed")
            .values(status="rejected")).rowcount
        if not changed:
            return False
        claimed = {name: state for name, state in session.execute(
            sa.select(StoreRow.name, SnapshotCopy.state)
            .join(StoreRow, StoreRow.id == SnapshotCopy.store_id)
            .where(SnapshotCopy.snapshot_id == snapshot.row_id))}
        session.execute(sa.delete(SnapshotCopy)
                        .where(SnapshotCopy.snapshot_id == snapshot.row_id))
        details = {"snapshot": snapshot.restic_id, "time": snapshot.time.isoformat(),
                   "reported_at": snapshot.reported_at.isoformat(),
                   "reason": judgement.reason, "claimed": claimed, **evidence.as_dict()}
        raise_alert(session, ALERT_KIND,
                    f"{repository.system} reported snapshot {short} (time "
                    f"{snapshot.time.isoformat(timespec='seconds')}) that the stores do not "
                    f"hold: rejected, never a restore point ({judgement.reason}); check the "
                    "system and its agent",
                    system_id=repository.system_id, details=details, now=now)
        audit.record(session, actor, REJECT_ACTION, repository.system, **details)
    return True
