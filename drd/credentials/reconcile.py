"""Carrying out the key plan: make, rotate, confirm and disable systems' own store keys.

:func:`reconcile` reads the catalog, asks :func:`drd.credentials.plan.plan_keys` what to
do, and does it store by store. It is called by the leader every
:data:`RECONCILE_SECONDS` (so a retirement or a revoked token reaches every reachable
store within a minute), by enrollment (the preview makes the new system's keys), and by
the commands that change what a system may hold (``drd system retire``, ``drd system
rotate-credentials``, ``drd token revoke``, ``drd policy apply``, ``drd store set-keys``),
which run it at once and leave what failed to the leader.

Crash and concurrency rules
---------------------------
- A key is recorded before it is made: a ``pending`` row first (one live row per system
  and store, a unique index decides races), then the store call, then ``active`` with the
  encrypted secret. A crash in between leaves ``pending``: the next pass makes a new key
  (the lost one is found by :meth:`CredentialBroker.keys` and disabled before the next
  key of that principal is made, see :func:`sweep_orphans`).
- A row is *claimed* before its store call by moving ``next_attempt_at`` a lease ahead in
  a conditional update, so two daemons, or a daemon and a command, never act on one row at
  once.
- A key is marked ``disabling`` (committed) before the store is asked to delete it, and
  ``disabled`` after: a key the catalog calls disabled is gone from the store.
- A store that fails is retried with backoff (``attempts``, ``next_attempt_at``,
  ``last_error``, shown by ``drd status``); one store down never stops the others.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
import sqlalchemy.exc

from drd.catalog import Catalog, audit
from drd.catalog.models import Department, Policy, StoreCredential, System, Token
from drd.catalog.models import Store as StoreRow
from drd.catalog.types import utcnow
from drd.credentials.plan import KeyFacts, KeyState, Need, Step, StepKind, plan_keys
from drd.crypto.errors import CryptoError
from drd.crypto.masterkey import MasterKey
from drd.secrets import Secret
from drd.stores.credentials import (
    CredentialBroker,
    CredentialsUnsupported,
    open_broker,
    principal_name,
    repository_scope,
)
from drd.stores.errors import StoreError, StoreUnavailable

log = logging.getLogger(__name__)

BROKERED = ("seaweedfs", "aws-iam")
RECONCILE_SECONDS = 20
LEASE = dt.timedelta(seconds=120)
BACKOFF_FIRST = dt.timedelta(seconds=15)
BACKOFF_MOST = dt.timedelta(minutes=15)
ACTOR = "daemon"


def credential_context(store: str, access_key_id: str) -> str:
    """The master key context of a system's secret key in ``store``."""
    return f"store-credential:{store}:{access_key_id}"


def store_secret_context(store: str) -> str:
    """The master key context of a store's own secret (``drd.services.stores``)."""
    return f"store:{store}"


@dataclass
class ReconcileResult:
    """What one pass did; ``failures`` names each store call that failed, in one line."""

    issued: int = 0
    superseded: int = 0
    disabled: int = 0
    confirmed: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.issued or self.superseded or self.disabled or self.confirmed)


@dataclass(frozen=True)
class _Pair:
    system: str
    department: str
    store: str


def repository_path(department: str, system: str) -> str:
    return f"{department}/{system}"


def _live_agent_systems(session) -> set[str]:
    """Systems that hold an agent token that is neither revoked nor expired."""
    now = utcnow()
    names: set[str] = set()
    for systems, expires_at in session.execute(
            sa.select(Token.systems, Token.expires_at)
            .where(Token.role == "agent", Token.revoked_at.is_(None))):
        if expires_at is None or expires_at > now:
            names.update(systems or ())
    return names


def _gather(session, system_ids: set[int] | None, issue_pending: set[int]
            ) -> tuple[list[Need], list[KeyFacts], dict[tuple[int, int], _Pair]]:
    stores = {row.id: row for row in session.scalars(
        sa.select(StoreRow).where(StoreRow.credentials.in_(BROKERED)))}
    key_query = sa.select(StoreCredential).where(StoreCredential.state != "disabled")
    # columns, not System objects: a lazy policy load per system would be a query each
    system_query = (sa.select(System.id, System.name, System.status, System.policy_id,
                              System.last_heartbeat, Department.name.label("department"))
                    .join(Department, System.department_id == Department.id))
    if system_ids is not None:
        key_query = key_query.where(StoreCredential.system_id.in_(system_ids))
        system_query = system_query.where(System.id.in_(system_ids))
    rows = list(session.scalars(key_query))
    keys = [KeyFacts(id=row.id, system_id=row.system_id, store_id=row.store_id,
                     state=KeyState(row.state), access_key_id=row.access_key_id,
                     issued_at=row.issued_at, confirmed_at=row.confirmed_at,
                     next_attempt_at=row.next_attempt_at,
                     has_secret=row.secret_encrypted is not None) for row in rows]
    has_keys = {(row.system_id, row.store_id) for row in rows}
    agents = _live_agent_systems(session)
    policies = {policy_id: set(document.get("stores") or []) for policy_id, document in
                session.execute(sa.select(Policy.id, Policy.document))}
    needs: list[Need] = []
    pairs: dict[tuple[int, int], _Pair] = {}
    for system in session.execute(system_query):
        department = system.department
        policy_stores = policies.get(system.policy_id, set())
        said = (system.last_heartbeat or {}).get("store_keys") or {}
        for store in stores.values():
            pair = (system.id, store.id)
            in_policy = store.name in policy_stores
            if not in_policy and pair not in has_keys:
                continue
            pairs[pair] = _Pair(system.name, department, store.name)
            if system.status == "retired":
                wanted, reason = False, "retired"
            elif not in_policy:
                wanted, reason = False, "store left the policy"
            elif system.status == "enrolled":
                wanted = system.name in agents
                reason = "" if wanted else "agent token revoked"
            elif system.id in issue_pending or pair in has_keys:
                wanted, reason = True, ""  # pending: keys made by the enrollment preview
            else:
                continue
            in_use = said.get(store.name) if isinstance(said, dict) else None
            needs.append(Need(system.id, store.id, wanted, reason,
                              in_use if isinstance(in_use, str) else None))
    return needs, keys, pairs


def determine_brokers(catalog: Catalog, master_key: MasterKey, timeout: float = 10.0
                      ) -> dict[str, str | None]:
    """Find and record the broker of every S3 store that has none recorded (a centre
    upgraded from before systems' own keys); ``{store: kind or None}`` for those tried.
    A store where none fits stays unrecorded: its policies are refused until an
    administrator chooses (``drd store check`` says so)."""
    from drd.stores.credentials import detect_broker
    from drd.stores.url import StoreSpec

    with catalog.read_session() as session:
        rows = list(session.scalars(sa.select(StoreRow).where(StoreRow.credentials.is_(None))))
    found: dict[str, str | None] = {}
    for row in rows:
        spec = StoreSpec(name=row.name, url=row.url, endpoint=row.endpoint, region=row.region,
                         object_lock=row.object_lock)
        try:
            secret = (Secret(master_key.decrypt(row.secret_encrypted,
                                                store_secret_context(row.name)))
                      if row.secret_encrypted is not None else None)
        except CryptoError:
            continue
        kind = found[row.name] = detect_broker(spec, row.access_key_id, secret, timeout)
        if kind is None:
            continue
        with catalog.session() as session:
            if session.execute(sa.update(StoreRow).where(StoreRow.id == row.id,
                                                         StoreRow.credentials.is_(None))
                               .values(credentials=kind)).rowcount:
                audit.record(session, ACTOR, "store.set", row.name, credentials=kind)
    return found


def reconcile(catalog: Catalog, master_key: MasterKey, *, systems: Iterable[int] | None = None,
              issue_pending: Iterable[int] = (), rotate_after: dt.timedelta | None = None,
              actor: str = ACTOR, now: dt.datetime | None = None,
              timeout: float = 10.0) -> ReconcileResult:
    """One pass over ``systems`` (all when None): plan, then act store by store.

    ``issue_pending``: pending (not yet enrolled) systems that get keys now (the
    enrollment preview). Never raises for a store's failure: it is recorded on the key's
    row and in the result; raises only for catalog errors.
    """
    now = now or utcnow()
    wanted_systems = set(systems) if systems is not None else None
    with catalog.read_session() as session:
        needs, keys, pairs = _gather(session, wanted_systems, set(issue_pending))
        store_rows = {row.id: row for row in session.scalars(sa.select(StoreRow))}
    steps = plan_keys(needs, keys, now, rotate_after)
    result = ReconcileResult()
    brokers: dict[int, CredentialBroker | Exception] = {}
    down: set[int] = set()
    for step in steps:
        if step.store_id in down:
            continue
        pair = pairs.get((step.system_id, step.store_id))
        store = store_rows.get(step.store_id)
        if store is None:
            continue
        broker = brokers.get(step.store_id)
        if broker is None:
            broker = brokers[step.store_id] = _open_broker(store, master_key, timeout)
        try:
            if step.kind == StepKind.CONFIRM:
                _confirm(catalog, step, now)
                result.confirmed += 1
                continue
            if isinstance(broker, Exception):
                raise broker
            if step.kind == StepKind.DISABLE:
                if _disable(catalog, broker, store, step, actor, now):
                    result.disabled += 1
            elif step.kind == StepKind.SUPERSEDE:
                if _supersede(catalog, step, actor, now):
                    result.superseded += 1
                    if pair and _issue(catalog, master_key, broker, store, pair,
                                       Step(StepKind.ISSUE, step.system_id, step.store_id),
                                       actor, now):
                        result.issued += 1
            elif step.kind == StepKind.ISSUE and pair is not None:
                if _issue(catalog, master_key, broker, store, pair, step, actor, now):
                    result.issued += 1
        except StoreError as error:
            result.failures.append(str(error))
            log.warning("credentials: %s", error)
            if isinstance(error, StoreUnavailable | CredentialsUnsupported):
                down.add(step.store_id)
    return result


def _open_broker(store: StoreRow, master_key: MasterKey,
                 timeout: float) -> CredentialBroker | Exception:
    from drd.stores.url import StoreSpec

    spec = StoreSpec(name=store.name, url=store.url, endpoint=store.endpoint,
                     region=store.region, object_lock=store.object_lock)
    try:
        secret = (Secret(master_key.decrypt(store.secret_encrypted,
                                            store_secret_context(store.name)))
                  if store.secret_encrypted is not None else None)
        return open_broker(store.credentials, spec, store.access_key_id, secret,
                           iam_endpoint=store.iam_endpoint, timeout=timeout)
    except CryptoError:
        return CredentialsUnsupported(store.name, "its secret key cannot be decrypted with "
                                                  "this centre's master key")
    except StoreError as error:
        return error


def _claim(session, key_id: int, now: dt.datetime) -> bool:
    """Take the row for one store call (see the module docstring)."""
    return session.execute(
        sa.update(StoreCredential)
        .where(StoreCredential.id == key_id, StoreCredential.next_attempt_at <= now)
        .values(next_attempt_at=now + LEASE)
        .execution_options(synchronize_session=False)).rowcount == 1


def _failed(catalog: Catalog, key_id: int, error: StoreError, now: dt.datetime) -> None:
    with catalog.session() as session:
        row = session.get(StoreCredential, key_id)
        if row is None:
            return
        row.attempts += 1
        row.last_error = str(error)[:2000]
        row.next_attempt_at = now + min(BACKOFF_FIRST * 2 ** min(row.attempts - 1, 10),
                                        BACKOFF_MOST)


def _issue(catalog: Catalog, master_key: MasterKey, broker: CredentialBroker,
           store: StoreRow, pair: _Pair, step: Step, actor: str, now: dt.datetime) -> bool:
    key_id = step.key_id
    with catalog.session() as session:
        if key_id is None:
            row = StoreCredential(system_id=step.system_id, store_id=step.store_id,
                                  state="pending", next_attempt_at=now)
            session.add(row)
            try:
                session.flush()
            except sqlalchemy.exc.IntegrityError:
                return False  # another process made the live key first
            key_id = row.id
        if not _claim(session, key_id, now):
            return False
    from drd.stores.url import StoreSpec

    spec = StoreSpec(name=store.name, url=store.url, endpoint=store.endpoint,
                     region=store.region)
    scope = repository_scope(spec, repository_path(pair.department, pair.system), pair.system)
    try:
        sweep_orphans(catalog, broker, store, step.system_id, principal_name(scope))
        issued = broker.issue(scope)
    except StoreError as error:
        _failed(catalog, key_id, error, now)
        raise
    secret = master_key.encrypt(issued.secret_access_key.reveal().encode(),
                                credential_context(store.name, issued.access_key_id))
    with catalog.session() as session:
        made = session.execute(
            sa.update(StoreCredential)
            .where(StoreCredential.id == key_id, StoreCredential.state == "pending")
            .values(state="active", principal=issued.principal,
                    access_key_id=issued.access_key_id, secret_encrypted=secret,
                    issued_at=utcnow(), attempts=0, last_error=None, next_attempt_at=now)
            .execution_options(synchronize_session=False)).rowcount == 1
        if made:
            audit.record(session, actor, "credentials.issue", pair.system, store=store.name,
                         principal=issued.principal, access_key_id=issued.access_key_id)
    if not made:  # retired or revoked while the key was being made: it must not live
        broker.disable(issued.principal, issued.access_key_id)
    return made


def sweep_orphans(catalog: Catalog, broker: CredentialBroker, store: StoreRow, system_id: int,
                  principal: str) -> list[str]:
    """Disable the principal's keys the catalog does not know (made by a pass that died
    before it recorded them): no key may work that the centre cannot account for, and AWS
    allows two keys per user. Returns the ids disabled."""
    with catalog.read_session() as session:
        known = set(session.scalars(
            sa.select(StoreCredential.access_key_id)
            .where(StoreCredential.system_id == system_id,
                   StoreCredential.store_id == store.id,
                   StoreCredential.state != "disabled",
                   StoreCredential.access_key_id.is_not(None))))
    orphans = [key for key in broker.keys(principal) if key not in known]
    for access_key_id in orphans:
        broker.disable(principal, access_key_id)
        log.warning("store %s: key %s of %s was not in the catalog: disabled", store.name,
                    access_key_id, principal)
    return orphans


def _supersede(catalog: Catalog, step: Step, actor: str, now: dt.datetime) -> bool:
    with catalog.session() as session:
        row = session.get(StoreCredential, step.key_id)
        if row is None or row.state != "active":
            return False
        row.state = "superseded"
        row.superseded_at = now
        row.reason = step.reason or "rotated"
        system = session.get(System, row.system_id)
        audit.record(session, actor, "credentials.rotate", system.name,
                     store=row.store.name, access_key_id=row.access_key_id,
                     reason=row.reason)
    return True


def _confirm(catalog: Catalog, step: Step, now: dt.datetime) -> None:
    with catalog.session() as session:
        session.execute(sa.update(StoreCredential)
                        .where(StoreCredential.id == step.key_id,
                               StoreCredential.confirmed_at.is_(None))
                        .values(confirmed_at=now)
                        .execution_options(synchronize_session=False))


def _disable(catalog: Catalog, broker: CredentialBroker, store: StoreRow, step: Step,
             actor: str, now: dt.datetime) -> bool:
    with catalog.session() as session:
        row = session.get(StoreCredential, step.key_id)
        if row is None or row.state == "disabled":
            return False
        if row.state != "disabling":
            row.state = "disabling"
            row.reason = step.reason or row.reason
            row.next_attempt_at = now
            session.flush()
        if not _claim(session, row.id, now):
            return False
        principal, access_key_id, reason = row.principal, row.access_key_id, row.reason
        system = session.get(System, row.system_id)
        system_name, retired = system.name, system.status == "retired"
    try:
        if principal and access_key_id:
            broker.disable(principal, access_key_id)
        if principal and retired:
            broker.remove(principal)
    except StoreError as error:
        _failed(catalog, step.key_id, error, now)
        raise
    with catalog.session() as session:
        session.execute(sa.update(StoreCredential)
                        .where(StoreCredential.id == step.key_id)
                        .values(state="disabled", disabled_at=utcnow(), secret_encrypted=None,
                                attempts=0, last_error=None)
                        .execution_options(synchronize_session=False))
        audit.record(session, actor, "credentials.disable", system_name, store=store.name,
                     principal=principal, access_key_id=access_key_id, reason=reason)
    return True
