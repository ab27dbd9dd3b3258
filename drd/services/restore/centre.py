"""``drd restore`` on the centre: any system, from its catalog and escrowed password.

:func:`restore_system` chooses the restore point from the catalog's snapshots, orders
the system's stores by health (:func:`~drd.services.restore.plan.order_stores`: a
present copy, reachable, fewest problems first), unseals the system's password (an
``escrow.unseal`` audit entry) and runs :func:`~drd.services.restore.engine.run_restore`.
Every restore, done or failed, is written to the audit log as ``system.restore`` (actor,
system, snapshot, store, target, attempts).

Before restic reads a store, :func:`repair_before_reading` brings back what delete
markers or overwrites cover there (restic reads only current versions; see that function
for why a repair rather than a fall-back to the next store).

:func:`open_store_repository` is also how restore drills open one store's copy.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from drd.catalog import Catalog, audit
from drd.catalog.models import Replica, Snapshot, SnapshotCopy, StoreObject, System
from drd.catalog.models import Store as StoreRow
from drd.config import Config
from drd.crypto.keystore import KeyStore
from drd.crypto.masterkey import MasterKey
from drd.daemon.locks import SystemBusy, system_lock
from drd.errors import OperationError, UserError
from drd.repair.repository import RepositoryRepair, repair_repository
from drd.restic import Repository
from drd.secrets import Secret
from drd.services.escrow import unseal_password
from drd.services.repositories import RepositoryStore, open_repositories
from drd.services.restore import plan
from drd.services.restore.engine import (
    Candidate,
    RestoreEvent,
    RestoreFailed,
    RestoreRequest,
    RestoreResult,
    run_restore,
)
from drd.services.restore.plan import RestorePoint, SnapshotInfo, StoreHealth
from drd.services.restore.staging import check_target

PROBE_OPTIONS = {"retry_attempts": 1, "connect_timeout": 3.0, "read_timeout": 10.0,
                 "check_timeout": 5.0}
"""A probe of a store that may be dead: one try, short waits."""
REPAIR_LOCK_WAIT = 60.0
"""How long a restore waits for retention to let go of the system before it repairs."""

log = logging.getLogger("drd.restore")


def open_store_repository(catalog: Catalog, master_key: MasterKey, system: str, store: str,
                          password: Secret, **options) -> tuple[Repository, RepositoryStore]:
    """``system``'s repository in ``store`` alone, as restic opens it, with the store
    itself (rooted at the repository). ``options`` go to the store
    (:func:`~drd.stores.url.open_store`).

    Raises:
        UserError: an unknown system or store, or a store the system is not kept in.
        DrdError, ValueError: the store cannot be opened (bad URL, no keys).
    """
    (opened,) = open_repositories(catalog, master_key, [system], stores=[store], **options)
    target = opened.store(store)
    url, env = target.store.restic_location()
    return (Repository(url=url, password=password, env=env, display=f"{store}/{system}"),
            target)


def load_snapshots(catalog: Catalog, system: str) -> list[SnapshotInfo]:
    """The system's snapshots in the catalog, oldest first.

    Raises:
        UserError: no such system, or it has no policy (nothing says where it is kept).
    """
    with catalog.read_session() as session:
        row = session.scalar(sa.select(System).where(System.name == system))
        if row is None:
            raise UserError(f"no system named {system!r} (see drd status)")
        if row.policy_id is None:
            raise UserError(f"system {system!r} has no policy: nothing says where its "
                            "backups are")
        return [SnapshotInfo(id=s.restic_id, time=s.time, paths=tuple(s.paths or ()),
                             tags=tuple(s.tags or ()), status=s.status,
                             partial=bool(s.partial))
                for s in session.scalars(sa.select(Snapshot).where(
                    Snapshot.system_id == row.id).order_by(Snapshot.time, Snapshot.id))]


def policy_stores(catalog: Catalog, system: str) -> list[str]:
    """The registered stores of ``system``'s policy, in the policy's order."""
    with catalog.read_session() as session:
        row = session.scalar(sa.select(System).options(selectinload(System.policy))
                             .where(System.name == system))
        if row is None or row.policy is None:
            return []
        wanted = list(row.policy.document.get("stores") or [])
        known = set(session.scalars(sa.select(StoreRow.name).where(
            StoreRow.name.in_(wanted))))
        return [name for name in wanted if name in known]


def store_health(catalog: Catalog, system: str, stores: list[str], point: RestorePoint
                 ) -> list[StoreHealth]:
    """What the catalog knows of each of ``stores`` (the policy's, in its order) for
    restoring ``point``: copies, the last probe, damaged objects, replication."""
    with catalog.read_session() as session:
        system_id = session.scalar(sa.select(System.id).where(System.name == system))
        rows = {row.name: row for row in session.scalars(
            sa.select(StoreRow).where(StoreRow.name.in_(stores)))}
        states: dict[str, list[str | None]] = {name: [] for name in stores}
        copies = {(snapshot_id, store_id): state for snapshot_id, store_id, state in
                  session.execute(
                      sa.select(Snapshot.restic_id, SnapshotCopy.store_id, SnapshotCopy.state)
                      .join(Snapshot, Snapshot.id == SnapshotCopy.snapshot_id)
                      .where(Snapshot.system_id == system_id,
                             Snapshot.restic_id.in_(point.ids)))}
        for name, row in rows.items():
            states[name] = [copies.get((snapshot, row.id)) for snapshot in point.ids]
        damaged = dict(session.execute(
            sa.select(StoreObject.store_id, sa.func.count()).where(
                StoreObject.system_id == system_id,
                StoreObject.state.in_(("corrupt", "missing", "lost")))
            .group_by(StoreObject.store_id)).all())
        replicas = {replica.store_id: replica for replica in session.scalars(
            sa.select(Replica).where(Replica.system_id == system_id))}
        health = []
        for position, name in enumerate(stores):
            row = rows.get(name)
            if row is None:
                continue
            replica = replicas.get(row.id)
            health.append(StoreHealth(
                name=name, position=position, copy=plan.worst_copy(states[name]),
                reachable=row.reachable, damaged_objects=int(damaged.get(row.id, 0)),
                lag_objects=int(replica.lag_objects or 0) if replica else 0,
                replica_error=bool(replica and replica.last_error)))
        return health


def restore_system(catalog: Catalog, master_key: MasterKey, keystore: KeyStore,
                   config: Config, system: str, request: RestoreRequest, *,
                   actor: str, on_event: Callable[[RestoreEvent], None] | None = None,
                   should_stop: Callable[[], bool] | None = None,
                   now: dt.datetime | None = None) -> RestoreResult:
    """Restore ``system`` as ``request`` says, into a plain directory path (also how an
    API may call it later), and audit it.

    Raises:
        UserError: bad input (see :func:`~drd.services.restore.engine.run_restore`), an
            unknown system or store, a store the system is not kept in.
        RestoreFailed: every store failed (exit 1).
        OperationError: no good snapshot yet; the password does not unseal; see
            :func:`~drd.services.restore.engine.run_restore`.
    """
    request = request.checked()
    snapshots = load_snapshots(catalog, system)
    point = plan.choose_point(snapshots, snapshot=request.snapshot, at=request.at)
    names = policy_stores(catalog, system)
    if request.store is not None:
        if request.store not in names:
            raise UserError(f"system {system!r} is not kept in store {request.store!r} "
                            f"(its stores: {', '.join(names) or 'none'})")
        order = [request.store]
    else:
        order = [health.name for health in
                 plan.order_stores(store_health(catalog, system, names, point))]
    target = str(Path(request.target).absolute())
    check_target(Path(target), overwrite=request.overwrite)  # before the password
    password = unseal_password(catalog, keystore, system, actor=actor,
                               reason=f"restore into {target}")
    candidates = [_candidate(catalog, master_key, system, name, password, actor)
                  for name in order]
    try:
        result = run_restore(system, candidates, request, lambda restic, repo: point,
                             restic_binary=config.restic_binary, on_event=on_event,
                             should_stop=should_stop)
    except RestoreFailed as failure:
        _audit(catalog, actor, system, point, None, target, failure.attempts,
               outcome="failed")
        raise
    _audit(catalog, actor, system, point, result.store, target, result.attempts,
           outcome="done", files=result.files, bytes=result.bytes)
    return result


def repair_before_reading(catalog: Catalog, system: str, holder: RepositoryStore, *,
                          actor: str, lock: bool = True) -> RepositoryRepair:
    """Bring back, in ``holder``, every object of ``system`` that a delete marker hides
    or an overwrite covers, from its newest good version there (:mod:`drd.repair`), before
    restic reads that store: restic reads only current versions, and cannot read past a
    marker.

    Why a repair, and not a fall-back to the next store: the bytes brought back are
    proven (they hash to the object's name, or match the catalog's record) and written
    as a new version, so nothing the store held is removed or changed; the store read is
    still the one the catalog's health chose (a fall-back may go to a store that lags);
    the store is whole again for the next restore and the delete is alerted (``tamper``)
    and audited (``object.repair``) instead of passed over; and where the same keys
    covered the object in every store, only a repair restores anything at all. What it
    cannot bring back (no good version there) is left to restic: the object may be one
    this restore does not need; if it is, the attempt fails and the next store is tried.

    ``lock``: hold the system's lock, shared (retention's prune deletes objects before it
    tombstones them: a repair beside it would bring them back); a system busy for
    :data:`REPAIR_LOCK_WAIT` seconds is not repaired now. Callers that hold it already
    (drills) pass False. Never raises for the store's failures: they are in the result.

    Raises:
        UserError: an unknown system.
    """
    with catalog.read_session() as session:
        row = session.scalar(sa.select(System).options(selectinload(System.policy))
                             .where(System.name == system))
        if row is None:
            raise UserError(f"no system named {system!r} (see drd status)")
        system_id = row.id
        lock_days = int(((row.policy.document if row.policy else None) or {})
                        .get("object_lock_days") or 0)

    def repair() -> RepositoryRepair:
        return repair_repository(catalog, system_id=system_id, system=system, holder=holder,
                                 lock_days=lock_days, actor=actor)

    if not lock:
        result = repair()
    else:
        try:
            with system_lock(catalog, system_id, system, exclusive=False,
                             wait=REPAIR_LOCK_WAIT):
                result = repair()
        except SystemBusy as busy:
            log.warning("%s: not repaired before reading it (%s); restic reads it as it is",
                        holder.name, busy)
            return RepositoryRepair(system, holder.name, errors=[str(busy)])
    for problem in result.unrepaired:
        log.warning("%s: %s/%s stays %s: %s", holder.name, system, problem.key,
                    problem.reason, problem.detail)
    for error in result.errors:
        log.warning("%s: %s", holder.name, error)
    return result


def _candidate(catalog: Catalog, master_key: MasterKey, system: str, store: str,
               password: Secret, actor: str) -> Candidate:
    """A store to try; opened when tried (on the caller's thread, with the catalog), its
    probe then too, so that the watchdog's thread touches no catalog. What delete markers
    or overwrites cover there is brought back first (:func:`repair_before_reading`)."""
    prober: list[RepositoryStore] = []

    def repository() -> Repository:
        try:
            opened, holder = open_store_repository(catalog, master_key, system, store,
                                                   password)
            prober[:] = [open_store_repository(catalog, master_key, system, store, password,
                                               **PROBE_OPTIONS)[1]]
        except ValueError as error:
            raise OperationError(f"store {store} cannot be opened: {error}") from None
        repair_before_reading(catalog, system, holder, actor=actor)
        return opened

    def probe() -> None:
        if prober:
            prober[0].store.head("config")

    return Candidate(store, repository, probe)


def _audit(catalog: Catalog, actor: str, system: str, point: RestorePoint, store: str | None,
           target: str, attempts, *, outcome: str, **details) -> None:
    with catalog.session() as session:
        audit.record(session, actor=actor, action="system.restore", target=system,
                     snapshot=point.primary.id, snapshots=point.ids, store=store,
                     directory=target, outcome=outcome,
                     attempts=[attempt.as_dict() for attempt in attempts], **details)

