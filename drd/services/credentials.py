"""Systems' own store keys as commands and requests see them.

- :func:`keys_for_assignment`: the keys an agent is handed (its own, never the store's,
  except in a store whose policy allows shared keys);
- :func:`keys_version`: a short digest of those keys' ids, in every heartbeat answer, so
  that an agent fetches its assignment again when its keys change;
- :func:`retire_system`, :func:`request_rotation`: ``drd system retire`` and ``drd system
  rotate-credentials``;
- :func:`apply_now`: run the reconciliation at once for a command that changed what a
  system may hold (what fails is left to the leader, which retries every
  :data:`~drd.credentials.reconcile.RECONCILE_SECONDS`);
- :func:`pending_work`: what ``drd status`` shows of keys not yet made or disabled.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drd.catalog import Catalog, audit
from drd.catalog.models import Store as StoreRow
from drd.catalog.models import StoreCredential, System, Token
from drd.catalog.types import utcnow
from drd.credentials.reconcile import (
    ReconcileResult,
    credential_context,
    reconcile,
    store_secret_context,
)
from drd.crypto.errors import CryptoError
from drd.crypto.masterkey import MasterKey
from drd.errors import OperationError, UserError
from drd.secrets import Secret
from drd.services.protocol import keys_digest

log = logging.getLogger(__name__)


@dataclass(frozen=True, repr=False)
class HandedKey:
    """A key for the agent: its id and secret (None: the store gets no key yet)."""

    access_key_id: str | None
    secret_access_key: Secret | None


def keys_for_assignment(session: Session, system: System, stores: Iterable[StoreRow],
                        master_key: MasterKey, allow_shared: bool) -> dict[str, HandedKey]:
    """The key handed to ``system``'s agent for each of ``stores``.

    Brokered stores: the system's ``active`` key (none while it is being made). Shared
    stores: the store's own keys, only when the policy says ``allow_shared_credentials``
    (validation refuses the policy otherwise; this is the last guard). Stores whose broker
    is not determined: none. Raises :class:`OperationError` when a secret cannot be
    decrypted with this centre's master key.
    """
    rows = {row.store_id: row for row in session.scalars(
        sa.select(StoreCredential).where(StoreCredential.system_id == system.id,
                                         StoreCredential.state == "active"))}
    handed: dict[str, HandedKey] = {}
    for store in stores:
        if store.credentials == "shared":
            if allow_shared and store.secret_encrypted is not None:
                handed[store.name] = HandedKey(store.access_key_id, _decrypt(
                    master_key, store.secret_encrypted, store_secret_context(store.name),
                    store.name))
            elif allow_shared:
                handed[store.name] = HandedKey(None, None)  # a file store: no keys at all
            continue
        row = rows.get(store.id)
        if row is None or row.secret_encrypted is None or row.access_key_id is None:
            continue
        handed[store.name] = HandedKey(row.access_key_id, _decrypt(
            master_key, row.secret_encrypted,
            credential_context(store.name, row.access_key_id), store.name))
    return handed


def _decrypt(master_key: MasterKey, blob: bytes, context: str, store: str) -> Secret:
    try:
        return Secret(master_key.decrypt(blob, context).decode())
    except CryptoError:
        raise OperationError(f"store {store!r}: a secret key cannot be decrypted with this "
                             "centre's master key") from None


_ACTIVE_KEYS = (sa.select(StoreCredential.access_key_id, StoreRow.name)
                .join(StoreRow, StoreCredential.store_id == StoreRow.id)
                .where(StoreCredential.system_id == sa.bindparam("system_id"),
                       StoreCredential.state == "active"))


def keys_version(session: Session, system: System) -> str:
    """:func:`~drd.services.protocol.keys_digest` of the ids of the system's active keys
    in its policy's stores: what the agent's assignment holds when it is current."""
    stores = set((system.policy.document.get("stores") or []) if system.policy else [])
    return keys_digest(key for key, store in session.execute(_ACTIVE_KEYS,
                                                             {"system_id": system.id})
                       if key and store in stores)


def _system(session: Session, name: str) -> System:
    system = session.scalar(sa.select(System).where(System.name == name))
    if system is None:
        raise UserError(f"no system named {name!r} (see drd status)")
    return system


def retire_system(catalog: Catalog, name: str, actor: str = "cli",
                  now: dt.datetime | None = None) -> int:
    """Retire ``name``: its agent and enrollment tokens are revoked and every key of it is
    marked for disabling (the stores are told by :func:`apply_now` or the leader); its
    snapshots stay restorable by the centre. Returns how many tokens were revoked.
    Retiring twice changes nothing. Raises :class:`UserError` for no such system."""
    now = now or utcnow()
    with catalog.session() as session:
        system = _system(session, name)
        revoked = 0
        for token in session.scalars(sa.select(Token).where(
                Token.role.in_(("agent", "enrollment")), Token.revoked_at.is_(None))):
            if token.systems == [name]:
                token.revoked_at = now
                revoked += 1
        if system.status != "retired":
            system.status = "retired"
            session.execute(sa.update(StoreCredential)
                            .where(StoreCredential.system_id == system.id,
                                   StoreCredential.state.in_(("pending", "active",
                                                              "superseded")))
                            .values(state="disabling", reason="retired", next_attempt_at=now))
            audit.record(session, actor, "system.retire", name, tokens_revoked=revoked)
    return revoked


def request_rotation(catalog: Catalog, name: str, actor: str = "cli",
                     now: dt.datetime | None = None) -> int:
    """Replace every active key of ``name`` (``drd system rotate-credentials``): each is
    superseded (it keeps working until the agent uses its new key, then it is disabled)
    and a new one is made by :func:`apply_now` or the leader. A key the agent never
    picked up, made by an earlier rotation while the agent still holds the older one, is
    disabled rather than superseded. A suspected theft calls for :func:`retire_system`
    (and a new enrollment), not a rotation: the agent's token fetches the new keys too. Returns
    how many keys are replaced. Raises :class:`UserError` for a system that is not
    enrolled."""
    now = now or utcnow()
    with catalog.session() as session:
        system = _system(session, name)
        if system.status != "enrolled":
            raise UserError(f"system {name!r} is {system.status}: only an enrolled system's "
                            "keys are rotated")
        rows = list(session.scalars(sa.select(StoreCredential).where(
            StoreCredential.system_id == system.id,
            StoreCredential.state.in_(("active", "superseded")))))
        waiting = {row.store_id for row in rows if row.state == "superseded"}
        replaced = 0
        for row in rows:
            if row.state != "active":
                continue
            if row.store_id in waiting and row.confirmed_at is None:
                # the agent still uses the older key: this one never reached it
                row.state, row.reason = "disabling", "rotated before the agent used it"
            else:
                row.state, row.reason, row.superseded_at = "superseded", "rotated", now
                for older in rows:  # the agent has moved on from those (AWS: 2 keys a user)
                    if older.store_id == row.store_id and older.state == "superseded" \
                            and older is not row:
                        older.state, older.reason = "disabling", "replaced twice"
                        older.next_attempt_at = now
            row.next_attempt_at = now
            replaced += 1
        audit.record(session, actor, "credentials.rotate", name, keys=replaced)
    return replaced


def system_id(catalog: Catalog, name: str) -> int:
    with catalog.read_session() as session:
        return _system(session, name).id


def apply_now(catalog: Catalog, master_key: MasterKey, systems: Iterable[int] | None = None,
              actor: str = "cli", timeout: float = 10.0) -> ReconcileResult:
    """Carry out the key plan for ``systems`` (all when None) at once; see
    :func:`drd.credentials.reconcile.reconcile`. What fails stays for the leader."""
    return reconcile(catalog, master_key, systems=systems, actor=actor, timeout=timeout)


@dataclass(frozen=True)
class PendingKey:
    """A key not in its final state: what is to be done, where, why, and the last error."""

    system: str
    store: str
    state: str
    reason: str | None
    attempts: int
    last_error: str | None
    since: dt.datetime

    def as_dict(self) -> dict:
        return {"system": self.system, "store": self.store, "state": self.state,
                "reason": self.reason, "attempts": self.attempts,
                "last_error": self.last_error, "since": self.since.isoformat()}


def pending_work(catalog: Catalog) -> list[PendingKey]:
    """Keys to be made (``pending``), to be disabled (``disabling``), waiting for the
    agent to take its new key (``superseded``), or made but not yet named by the agent's
    heartbeat (``unconfirmed``: an active key of an enrolled system), oldest first."""
    unsettled = sa.or_(
        StoreCredential.state.in_(("pending", "disabling", "superseded")),
        sa.and_(StoreCredential.state == "active", StoreCredential.confirmed_at.is_(None),
                System.status == "enrolled"))
    query = (sa.select(StoreCredential, System.name, StoreRow.name)
             .join(System, StoreCredential.system_id == System.id)
             .join(StoreRow, StoreCredential.store_id == StoreRow.id)
             .where(unsettled)
             .order_by(StoreCredential.created_at))
    with catalog.read_session() as session:
        return [PendingKey(system=system, store=store,
                           state="unconfirmed" if row.state == "active" else row.state,
                           reason=row.reason, attempts=row.attempts,
                           last_error=row.last_error,
                           since=row.superseded_at or row.issued_at or row.created_at)
                for row, system, store in session.execute(query)]
