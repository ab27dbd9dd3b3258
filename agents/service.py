"""What the agent's commands and its daemon do, on top of the home, the centre and restic.

- :func:`deliver_spool`: send what the centre has not received yet (start of every backup
  and heartbeat).
- :func:`backup_system`: one backup run of the enrolled system -- a fresh assignment when
  the centre answers, else the cached one; reports and manifests spooled, then delivered.
- :func:`send_heartbeat`: tell the centre the agent is alive; learn of "back up now" and
  of a new policy version.
- :func:`list_snapshots`: the repository's snapshots, read from the first store that
  answers.

One backup at a time per home (``backup.lock``).
"""

from __future__ import annotations

import fcntl
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from agents.assignment import (
    Assignment,
    current_assignment,
    parse_assignment,
    store_keys,
)
from agents.backup import (
    BackupResult,
    Progress,
    RunContext,
    plan_backup,
    run_backup,
    snapshot_report,
)
from agents.client import CentreClient, CentreRefused
from agents.home import AgentConfig, AgentHome, this_hostname
from agents.spool import MANIFEST, REPORT, DeliveryResult, Spool, SpoolEntry
from agents.target import DirectTarget, FanoutTarget, Target, open_stores
from drd import __version__
from drd.crypto.pem import load_escrow_public_key
from drd.errors import DrdError, OperationError, UserError
from drd.restic import Restic, Snapshot
from drd.secrets import mask
from drd.stores import Store

logger = logging.getLogger(__name__)

TargetFactory = Callable[[Assignment, list[Store], Any], Target]


def make_client(home: AgentHome, config: AgentConfig | None = None, **options: Any
                ) -> CentreClient:
    """A client for the enrolled centre, with the pinned CA and the agent token.

    Raises:
        UserError: not enrolled. OperationError: a secret file is unreadable.
    """
    config = config or home.require_enrolled()
    ca_pem = home.ca_pem() if config.server.startswith("https://") else None
    return CentreClient(config.server, ca_pem=ca_pem, agent_token=home.agent_token(),
                        **options)


def make_restic(home: AgentHome) -> Restic:
    """restic with its cache in the agent's home."""
    return Restic(cache_dir=home.cache_dir)


def _send(client: CentreClient) -> Callable[[SpoolEntry], None]:
    def send(entry: SpoolEntry) -> None:
        if entry.kind == REPORT:
            client.report_snapshot(entry.body)
        elif entry.kind == MANIFEST:
            client.put_manifest(entry.body["snapshot_id"], entry.body["manifest"],
                                entry.body["signature"], entry.body.get("sealed"))
    return send


def _permanent(error: Exception) -> bool:
    return isinstance(error, CentreRefused) and not error.transient


def deliver_spool(home: AgentHome, client: CentreClient | None) -> DeliveryResult:
    """Deliver the spool, oldest first; never raises for the centre being away."""
    spool = Spool(home.spool_dir)
    if client is None:
        return DeliveryResult(remaining=spool.count(), stopped_by="no centre")
    result = spool.deliver(_send(client), _permanent)
    if result.delivered or result.rejected:
        logger.info("delivered %d spooled item(s) to the centre (%d refused, %d left)",
                    result.delivered, result.rejected, result.remaining)
    if result.stopped_by:
        logger.info("%d item(s) stay spooled: %s", result.remaining, result.stopped_by)
    return result


@contextmanager
def backup_lock(home: AgentHome) -> Iterator[None]:
    """Hold ``backup.lock`` for a run.

    Raises:
        OperationError: another run of this home holds it.
    """
    descriptor = os.open(home.backup_lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OperationError("another backup of this system is running; wait for it "
                                 "to finish") from None
        yield
    finally:
        os.close(descriptor)


def escrow_key(assignment: Assignment) -> X25519PublicKey:
    """The centre's escrow public key from the assignment (manifests are sealed to it).

    Raises:
        OperationError: the key is not a usable X25519 public key.
    """
    try:
        return load_escrow_public_key(assignment.escrow_public_key_pem.encode())
    except UserError as error:
        raise OperationError(f"the centre's escrow key in the assignment is unusable: "
                             f"{error}") from None


def fanout_target(assignment: Assignment, stores: list[Store], password) -> Target:
    """The default target: the fan-out endpoint over the assignment's stores."""
    policy = assignment.policy
    return FanoutTarget(stores, password, min_copies=policy.min_copies,
                        object_lock_days=policy.object_lock_days,
                        display=f"{assignment.department}/{assignment.system}")


@dataclass
class BackupOutcome:
    """A run, and what became of its reports: ``delivery`` counts what reached the centre
    during the command (earlier spooled items included) and what stays spooled."""

    result: BackupResult
    delivery: DeliveryResult
    assignment_fresh: bool

    def as_dict(self) -> dict[str, Any]:
        document = self.result.as_dict()
        document["reports"] = {"delivered": self.delivery.delivered,
                               "spooled": self.delivery.remaining}
        document["assignment"] = "fresh" if self.assignment_fresh else "cached"
        return document


def backup_system(
    home: AgentHome,
    *,
    restic: Restic | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    target_factory: TargetFactory = fanout_target,
    client: CentreClient | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    hostname: str | None = None,
) -> BackupOutcome:
    """Run one backup of the enrolled system and deliver (or spool) its reports.

    Returns:
        The outcome; ``outcome.result.ok`` says whether the run succeeded.

    Raises:
        UserError: not enrolled. OperationError: another run holds the lock, no usable
            assignment, unreadable secrets.
    """
    config = home.require_enrolled()
    hostname = hostname or this_hostname(config.system)
    own_client = client is None
    client = client or make_client(home, config)
    try:
        with backup_lock(home):
            earlier = deliver_spool(home, client)
            assignment, fresh = current_assignment(home, client)
            stores = open_stores(assignment)
            password = home.password()
            plan = plan_backup(assignment.policy, run_id=str(uuid.uuid4()), host=config.system)
            context = RunContext(
                system=assignment.system, policy=assignment.policy,
                restic=restic or make_restic(home),
                target=target_factory(assignment, stores, password), stores=stores,
                identity_key=home.identity_key(), escrow_key=escrow_key(assignment),
                progress=progress,
                should_stop=should_stop, clock=clock)
            result = run_backup(context, plan)
            spool_results(home, result, hostname)
            _record(home, result)
            now = deliver_spool(home, client)
            delivery = DeliveryResult(delivered=earlier.delivered + now.delivered,
                                      rejected=earlier.rejected + now.rejected,
                                      remaining=now.remaining, stopped_by=now.stopped_by)
            return BackupOutcome(result=result, delivery=delivery, assignment_fresh=fresh)
    finally:
        if own_client:
            client.close()


def spool_results(home: AgentHome, result: BackupResult, hostname: str) -> None:
    """Put every snapshot's report, then its manifest, in the spool."""
    spool = Spool(home.spool_dir)
    for snapshot in result.snapshots:
        spool.add(REPORT, snapshot_report(result, snapshot, hostname))
        if snapshot.manifest is not None:
            spool.add(MANIFEST, {"snapshot_id": snapshot.snapshot_id,
                                 "manifest": snapshot.manifest.manifest,
                                 "signature": snapshot.manifest.signature_b64,
                                 "sealed": snapshot.manifest.seal_description()})


def _record(home: AgentHome, result: BackupResult) -> None:
    previous = home.last_backup() or {}
    state = {
        "run_id": result.run_id,
        "started": result.started,
        "finished": result.finished,
        "ok": result.ok,
        "snapshots": [snapshot.snapshot_id for snapshot in result.snapshots],
        "problems": result.problems,
        "last_success": result.finished if result.ok else previous.get("last_success"),
        "last_failure": previous.get("last_failure") if result.ok else {
            "at": result.finished, "error": failure_text("; ".join(result.problems))},
    }
    home.record_backup(state)


def failure_text(error: str) -> str:
    """A failure's reason for the centre: one line, URL passwords masked, 200 characters."""
    return mask(" ".join(error.split()))[:200] or "no reason recorded"


def record_failure(home: AgentHome, error: str, at: datetime | None = None) -> None:
    """Keep a run that failed before it could back up (``last_failure`` in the state).
    Raises OSError."""
    state = home.last_backup() or {}
    state["last_failure"] = {"at": at or datetime.now(UTC), "error": failure_text(error)}
    home.record_backup(state)


def last_failure(home: AgentHome) -> dict[str, str] | None:
    """The last failed run (``{"at": RFC 3339, "error": text}``), or None."""
    value = (home.last_backup() or {}).get("last_failure")
    if isinstance(value, dict) and isinstance(value.get("at"), str):
        return {"at": value["at"], "error": str(value.get("error") or "")}
    return None


def last_success(home: AgentHome) -> str | None:
    """When the last successful backup finished (RFC 3339), or None."""
    state = home.last_backup() or {}
    value = state.get("last_success")
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class HeartbeatAnswer:
    backup_now: bool
    policy_version: int | None
    keys_version: str | None = None


def send_heartbeat(home: AgentHome, client: CentreClient, *, restic_version: str,
                   hostname: str | None = None) -> HeartbeatAnswer:
    """Deliver the spool, then ``POST /v1/agent/heartbeat``.

    Raises:
        CentreError: the centre is unreachable or refused the heartbeat.
    """
    deliver_spool(home, client)
    answer = client.heartbeat({
        "hostname": hostname or this_hostname(home.require_enrolled().system),
        "agent_version": __version__,
        "restic_version": restic_version,
        "last_backup_at": last_success(home),
        "spooled_reports": Spool(home.spool_dir).count(),
        "last_failure": last_failure(home),
        "store_keys": _held_keys(home),
    })
    version = answer.get("policy_version")
    keys = answer.get("keys_version")
    return HeartbeatAnswer(backup_now=bool(answer.get("backup_now")),
                           policy_version=version if isinstance(version, int) else None,
                           keys_version=keys if isinstance(keys, str) else None)


def _held_keys(home: AgentHome) -> dict[str, str]:
    """The key ids of the cached assignment ({} when there is none to read)."""
    try:
        return store_keys(cached_assignment(home))
    except OperationError:
        return {}


def refresh_assignment(home: AgentHome, client: CentreClient) -> Assignment:
    """Fetch, check and cache the assignment.

    Raises:
        CentreError, OperationError: unreachable, refused, or unusable.
    """
    document = client.assignment()
    assignment = parse_assignment(document)
    home.save_assignment(document)
    return assignment


def cached_assignment(home: AgentHome) -> Assignment:
    """The assignment cached in the home. Raises OperationError when missing or damaged."""
    return parse_assignment(home.load_assignment())


def list_snapshots(home: AgentHome, *, restic: Restic | None = None) -> tuple[str, list[Snapshot]]:
    """The repository's snapshots from the first store that answers.

    Returns:
        ``(store name, snapshots oldest first)``.

    Raises:
        OperationError: no store answered (each store's error in the message).
    """
    home.require_enrolled()
    assignment = cached_assignment(home)
    restic = restic or make_restic(home)
    password = home.password()
    errors = []
    for store in open_stores(assignment):
        try:
            with DirectTarget(store, password, display=f"{assignment.repository_path} in "
                                                        f"{store.name}") as repository:
                return store.name, restic.snapshots(repository)
        except DrdError as error:
            errors.append(f"{store.name}: {error}")
    raise OperationError("no store of this system could be read: " + " | ".join(errors))
