"""The centre's side of an enrolled agent: who it is, what it must do, what it says.

- :func:`authenticate_agent`: a bearer token -> the one system it may act for;
- :func:`build_assignment`: the policy, stores (with their keys) and escrow key of a
  system, as the agent needs them;
- :func:`record_heartbeat`: the agent is alive; hand it a pending "back up now";
- :func:`request_backup`: ``drd backup-now SYSTEM``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drd.catalog import Catalog, audit
from drd.catalog.models import Department, System, Token
from drd.catalog.models import Store as StoreRow
from drd.catalog.types import utcnow
from drd.credentials.reconcile import repository_path
from drd.crypto.masterkey import MasterKey
from drd.errors import OperationError, UserError
from drd.services.credentials import HandedKey, keys_for_assignment, keys_version
from drd.services.enrollment_token import token_state
from drd.services.protocol import Assignment, HeartbeatRequest, HeartbeatResponse, StoreAccess
from drd.services.refusals import Conflict, NotAllowed, NotAuthenticated
from drd.services.tokens import TOKEN_BY_HASH
from drd.stores.credentials import BROKERED_KINDS, guarantees_of


@dataclass(frozen=True)
class AgentIdentity:
    """The system an authenticated agent acts for (and nothing else)."""

    system_id: int
    system: str
    department: str
    token_id: int

    @property
    def actor(self) -> str:
        """How the audit log names this agent."""
        return f"agent:{self.system}"


_AGENT_SYSTEM = (sa.select(System.id, System.name, System.status, Department.name)
                 .join(Department, System.department_id == Department.id)
                 .where(System.name == sa.bindparam("name", type_=sa.String())))


def authenticate_agent(catalog: Catalog, credential: str | None,
                       now: dt.datetime | None = None) -> AgentIdentity:
    """Resolve an agent's bearer token to its system.

    Raises :class:`NotAuthenticated` for no token, an unknown, revoked or expired one;
    :class:`NotAllowed` for a token of another role (an enrollment token, say) or one
    whose system is not enrolled (retired, or never enrolled).
    """
    if not credential or not credential.strip():
        raise NotAuthenticated("no credential: send 'Authorization: Bearer <agent token>' "
                               "with the token that enrollment returned")
    now = now or utcnow()
    with catalog.read_session() as session:
        token = session.scalar(TOKEN_BY_HASH, {"token_hash": Token.hash_token(credential.strip())})
        if token is None:
            raise NotAuthenticated("unknown agent token: this centre did not issue it "
                                   "(was the agent enrolled with another centre?)")
        state = token_state(expires_at=token.expires_at, used_at=None,
                            revoked_at=token.revoked_at, now=now)
        if state != "valid":
            raise NotAuthenticated(f"this agent token is {state}: ask the centre's "
                                   "administrator for a new enrollment")
        if token.role != "agent" or len(token.systems) != 1:
            hint = " (enroll first: drd-agent enroll)" if token.role == "enrollment" else ""
            raise NotAllowed(f"a token of role {token.role!r} cannot call the agent API{hint}")
        row = session.execute(_AGENT_SYSTEM, {"name": token.systems[0]}).one_or_none()
        if row is None or row.status != "enrolled":
            status = "removed" if row is None else row.status
            raise NotAllowed(f"system {token.systems[0]!r} is not enrolled ({status})")
        return AgentIdentity(system_id=row.id, system=row.name, department=row[3],
                             token_id=token.id)


def build_assignment(session: Session, system: System, master_key: MasterKey,
                     escrow_public_key_pem: str) -> Assignment:
    """What ``system``'s agent needs: its policy, its stores with its own keys for each,
    the escrow key.

    The keys are the system's own, scoped to its repository
    (:func:`drd.services.credentials.keys_for_assignment`); a store's own keys are handed
    out only where the policy allows shared keys. A store whose key is not made yet is
    listed without keys (the agent skips it until it has one). Secrets are decrypted here,
    for this answer only. Raises :class:`Conflict` if the system has no policy,
    :class:`OperationError` if a store of the policy is not registered or a secret cannot
    be decrypted with this centre's master key.
    """
    policy = system.policy
    if policy is None:
        raise Conflict(f"system {system.name!r} has no policy: issue a new token with "
                       "'drd system token --policy P'")
    names = list(policy.document.get("stores", []))
    rows = {row.name: row for row in session.scalars(
        sa.select(StoreRow).where(StoreRow.name.in_(names)))}
    missing = [name for name in names if name not in rows]
    if missing:
        raise OperationError(f"policy {policy.name!r} names stores that are not registered: "
                             f"{', '.join(missing)} (see drd store list)")
    handed = keys_for_assignment(session, system, rows.values(), master_key,
                                 bool(policy.document.get("allow_shared_credentials")))
    return Assignment(
        system=system.name,
        department=system.department.name,
        repository_path=repository_path(system.department.name, system.name),
        policy=policy.document,
        policy_version=policy.version,
        stores=[_store_access(rows[name], handed.get(name)) for name in names],
        escrow_public_key=escrow_public_key_pem,
    )


def _store_access(row: StoreRow, key: HandedKey | None) -> StoreAccess:
    secret = key.secret_access_key.reveal() if key and key.secret_access_key else None
    return StoreAccess(name=row.name, kind=row.kind, url=row.url, endpoint=row.endpoint,
                       region=row.region, object_lock=row.object_lock,
                       access_key_id=key.access_key_id if key else None,
                       secret_access_key=secret, credentials=row.credentials,
                       write_once=guarantees_of(row.credentials).write_once,
                       locked_by_bucket=row.object_lock and row.credentials in BROKERED_KINDS)


def assignment_for(catalog: Catalog, agent: AgentIdentity, master_key: MasterKey,
                   escrow_public_key_pem: str) -> Assignment:
    """The assignment of an authenticated agent's system (see :func:`build_assignment`)."""
    with catalog.session() as session:
        system = session.get(System, agent.system_id)
        return build_assignment(session, system, master_key, escrow_public_key_pem)


def record_heartbeat(catalog: Catalog, agent: AgentIdentity, heartbeat: HeartbeatRequest,
                     now: dt.datetime | None = None) -> HeartbeatResponse:
    """Note that the agent is alive and what it said; hand it a pending backup request.

    ``backup_now`` is true for exactly one heartbeat after ``drd backup-now``: the
    request is cleared by a conditional update, so two heartbeats racing cannot both
    receive it.
    """
    now = now or utcnow()
    said = heartbeat.model_dump(mode="json")
    with catalog.session() as session:
        # the first statement writes, so SQLite takes its write lock before reading
        session.execute(sa.update(System).where(System.id == agent.system_id)
                        .values(last_seen_at=now, last_heartbeat=said))
        handed = session.execute(
            sa.update(System)
            .where(System.id == agent.system_id, System.backup_requested_at.is_not(None))
            .values(backup_requested_at=None)
        ).rowcount
        system = session.get(System, agent.system_id)
        version = system.policy.version if system.policy is not None else 0
        keys = keys_version(session, system)
    return HeartbeatResponse(backup_now=handed == 1, policy_version=version, keys_version=keys)


def request_backup(catalog: Catalog, system_name: str, actor: str = "cli",
                   now: dt.datetime | None = None) -> dt.datetime:
    """Ask ``system_name``'s agent to back up at its next heartbeat; return the request time.

    A request already pending stays as it is (the agent backs up once). Raises
    :class:`UserError` if there is no such system or it is not enrolled.
    """
    now = now or utcnow()
    with catalog.session() as session:
        system = session.scalar(sa.select(System).where(System.name == system_name))
        if system is None:
            raise UserError(f"no system named {system_name!r} (see drd status)")
        if system.status != "enrolled":
            raise UserError(f"system {system_name!r} is {system.status}, not enrolled: its "
                            "agent must enroll first (drd-agent enroll)")
        if system.backup_requested_at is None:
            system.backup_requested_at = now
        audit.record(session, actor, "system.backup_now", system_name)
        return system.backup_requested_at
