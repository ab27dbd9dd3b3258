"""Carrying out the key plan: make, rotate, confirm and disable systems' own store keys.

:func:`reconcile` reads the catalog, asks :func:`drd.credentials.plan.plan_keys` what to
do, and does it store by store. It is called by the leader every
:data:`RECONCILE_SECONDS` (so a retirement or a revoked token reaches every reachable
store within a minute), by enrollment (the preview makes the new system's keys), and by
the commands that change what a system may hold (``drd system retire``, ``drd system
rotate-credentials``, ``drd token revoke``, ``drd store set-keys``), which run it at once
and leave what failed to the leader (``drd policy apply`` leaves it all to the leader:
it needs no master key). The leader's pass makes at most ``issue_budget`` new keys, after
every disable that is due: a retirement never waits behind a thousand rotations.

Crash and concurrency rules
---------------------------
- A key is recorded before it is made: a ``pending`` row first (one live row per system
  and store, a unique index decides races), then the store call, then ``active`` with the
  encrypted secret. A crash in between leaves ``pending``: the next pass makes a new key
  (the lost one is found by :meth:`CredentialBroker.keys` and disabled before the next
  key of that principal is made, see :func:`sweep_orphans`).
- A row is *claimed* before its store call by moving ``next_attempt_at`` a lease ahead in
  a conditional update, so two daemons, or a daemon and a command, never act on one row at
  once; the result is written only if the row still holds that lease (a fencing value),
  so a pass that outlived its lease, or a retirement that took the row meanwhile, cannot
  record a key: the key it made is disabled at once instead.
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
from drd.credentials.plan import (
    KeyFacts,
    KeyState,
    Need,
    Step,
    StepKind,
    entitlement,
    plan_keys,
)
from drd.crypto.errors import CryptoError
from drd.crypto.masterkey import MasterKey
from drd.secrets import Secret
from drd.stores.credentials import (
    BROKERED_KINDS,
    CredentialBroker,
    CredentialsUnsupported,
    open_broker,
    principal_name,
    repository_scope,
)
from drd.stores.errors import StoreError, StoreUnavailable
from drd.stores.url import StoreSpec

log = logging.getLogger(__name__)

RECONCILE_SECONDS = 20
# longer than the slowest issue: a sweep, four IAM calls of two tries each, and up to
# 30 s for a new key to work (drd.stores.credentials.iam.READY_TIMEOUT_SECONDS)
LEASE = dt.timedelta(minutes=10)
LEADER_ISSUE_BUDGET = 200
BACKOFF_FIRST = dt.timedelta(seconds=15)
BACKOFF_MOST = dt.timedelta(minutes=15)
ACTOR = "daemon"


def credential_context(store: str, access_key_id: str) -> str:
    """The master key context of a system's secret key in ``store``."""
    return f"store-credential:{store}:{access_key_id}"


def store_secret_context(store: str) -> str:
    """The master key context of a store's own secret key (``stores.secret_encrypted``)."""
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
    """Where a system's repository sits in every store, under the store's prefix."""
    return f"{department}/{system}"


def _live_token_systems(session, role: str, now: dt.datetime) -> set[str]:
    """Systems named by a token of ``role`` that is neither revoked, expired nor (for a
    one-time enrollment token) used."""
    query = sa.select(Token.systems, Token.expires_at).where(Token.role == role,
                                                            Token.revoked_at.is_(None))
    if role == "enrollment":
        query = query.where(Token.used_at.is_(None))
    names: set[str] = set()
    for systems, expires_at in session.execute(query):
        if expires_at is None or expires_at > now:
            names.update(systems or ())
    return names


def store_spec(row: StoreRow) -> StoreSpec:
    """A registered store as the stores' layer takes it."""
    return StoreSpec(name=row.name, url=row.url, endpoint=row.endpoint, region=row.region,
                     object_lock=row.object_lock)


_KEY_COLUMNS = (StoreCredential.id, StoreCredential.system_id, StoreCredential.store_id,
                StoreCredential.state, StoreCredential.access_key_id,
                StoreCredential.issued_at, StoreCredential.confirmed_at,
                StoreCredential.next_attempt_at, StoreCredential.superseded_at,
                StoreCredential.secret_encrypted.is_not(None).label("has_secret"))


def _gather(session, system_ids: set[int] | None, issue_pending: set[int], now: dt.datetime
            ) -> tuple[list[Need], list[KeyFacts], dict[tuple[int, int], _Pair]]:
    stores = {row.id: row.name for row in session.execute(
        sa.select(StoreRow.id, StoreRow.name).where(StoreRow.credentials.in_(BROKERED_KINDS)))}
    key_query = sa.select(*_KEY_COLUMNS).where(StoreCredential.state != KeyState.DISABLED)
    # columns, not System objects: a lazy policy load per system would be a query each
    system_query = (sa.select(System.id, System.name, System.status, System.policy_id,
                              System.last_heartbeat, Department.name.label("department"))
                    .join(Department, System.department_id == Department.id))
    if system_ids is not None:
        key_query = key_query.where(StoreCredential.system_id.in_(system_ids))
        system_query = system_query.where(System.id.in_(system_ids))
    keys = [KeyFacts(id=row.id, system_id=row.system_id, store_id=row.store_id,
                     state=KeyState(row.state), access_key_id=row.access_key_id,
                     issued_at=row.issued_at, confirmed_at=row.confirmed_at,
                     next_attempt_at=row.next_attempt_at, has_secret=bool(row.has_secret),
                     superseded_at=row.superseded_at)
            for row in session.execute(key_query)]
    has_keys = {(key.system_id, key.store_id) for key in keys}
    agents = _live_token_systems(session, "agent", now)
    enrolling = _live_token_systems(session, "enrollment", now)
    policies = {policy_id: set(document.get("stores") or []) for policy_id, document in
                session.execute(sa.select(Policy.id, Policy.document))}
    needs: list[Need] = []
    pairs: dict[tuple[int, int], _Pair] = {}
    for system in session.execute(system_query):
        policy_stores = policies.get(system.policy_id, set())
        said = (system.last_heartbeat or {}).get("store_keys") or {}
        for store_id, store in stores.items():
            pair = (system.id, store_id)
            decision = entitlement(system.status, in_policy=store in policy_stores,
                                   agent_token=system.name in agents,
                                   enrollment_token=system.name in enrolling,
                                   has_keys=pair in has_keys,
                                   issue_pending=system.id in issue_pending)
            if decision is None:
                continue
            pairs[pair] = _Pair(system.name, system.department, store)
            in_use = said.get(store) if isinstance(said, dict) else None
            needs.append(Need(system.id, store_id, decision[0], decision[1],
                              in_use if isinstance(in_use, str) else None))
    return needs, keys, pairs


def determine_brokers(catalog: Catalog, master_key: MasterKey, timeout: float = 10.0
                      ) -> dict[str, str | None]:
    """Find and record the broker of every S3 store that has none recorded (a centre
    upgraded from before systems' own keys); ``{store: kind or None}`` for those tried.
    A store where none fits stays unrecorded: its policies are refused until an
    administrator chooses (``drd store check`` says so)."""
    from drd.stores.credentials import detect_broker

    with catalog.read_session() as session:
        rows = list(session.scalars(sa.select(StoreRow).where(StoreRow.credentials.is_(None))))
    found: dict[str, str | None] = {}
    for row in rows:
        spec = store_spec(row)
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
              actor: str = ACTOR, now: dt.datetime | None = None, timeout: float = 10.0,
              issue_budget: int | None = None, no_new_keys_in: Iterable[int] = ()
              ) -> ReconcileResult:
    """One pass over ``systems`` (all when None): plan, then act store by store, disables
    first.

    ``issue_pending``: pending (not yet enrolled) systems that get keys now (the
    enrollment preview). ``issue_budget``: the most keys made in this pass (None: no
    limit); the rest wait for the next. ``no_new_keys_in``: stores where this pass makes
    no key (a store whose broker is being replaced). Never raises for a store's failure:
    it is recorded on the key's row (so that ``drd status`` and the alert rules see it)
    and in the result; raises only for catalog errors.
    """
    now = now or utcnow()
    wanted_systems = set(systems) if systems is not None else None
    with catalog.read_session() as session:
        needs, keys, pairs = _gather(session, wanted_systems, set(issue_pending), now)
        store_rows = {row.id: row for row in session.scalars(sa.select(StoreRow))}
    steps = plan_keys(needs, keys, now, rotate_after)
    result = ReconcileResult()
    brokers: dict[int, CredentialBroker | StoreError] = {}
    down: set[int] = set()
    budget = issue_budget
    frozen = set(no_new_keys_in)
    for step in steps:
        store = store_rows.get(step.store_id)
        if store is None or step.store_id in down:
            continue
        if step.kind == StepKind.CONFIRM:
            _confirm(catalog, step, now)
            result.confirmed += 1
            continue
        if step.kind in (StepKind.ISSUE, StepKind.SUPERSEDE):
            if (budget is not None and budget <= 0) or step.store_id in frozen:
                continue
        if step.store_id not in brokers:
            brokers[step.store_id] = _open_broker(store, master_key, timeout)
        broker = brokers[step.store_id]
        pair = pairs.get((step.system_id, step.store_id))
        try:
            if step.kind == StepKind.DISABLE:
                if _disable(catalog, broker, store, step, actor, now):
                    result.disabled += 1
            elif step.kind == StepKind.SUPERSEDE and pair is not None:
                if isinstance(broker, StoreError):
                    _failed(catalog, step.key_id, broker, now)
                    raise broker
                if _supersede(catalog, step, actor, now):
                    result.superseded += 1
                    budget = None if budget is None else budget - 1
                    if _issue(catalog, master_key, broker, store, pair,
                              Step(StepKind.ISSUE, step.system_id, step.store_id), actor, now):
                        result.issued += 1
            elif step.kind == StepKind.ISSUE and pair is not None:
                budget = None if budget is None else budget - 1
                if _issue(catalog, master_key, broker, store, pair, step, actor, now):
                    result.issued += 1
        except StoreError as error:
            result.failures.append(str(error))
            log.warning("credentials: %s", error)
            if isinstance(error, StoreUnavailable):
                down.add(step.store_id)  # the rest of this store waits for the next pass
    return result


def _open_broker(store: StoreRow, master_key: MasterKey,
                 timeout: float) -> CredentialBroker | StoreError:
    """The store's broker, or the error that keeps it closed (recorded on each key)."""
    spec = store_spec(store)
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


def _claim(session, key_id: int, now: dt.datetime) -> dt.datetime | None:
    """Take the row for one store call (see the module docstring); return the lease's end,
    the fencing value the result is written under, or None when another holds the row."""
    until = now + LEASE
    taken = session.execute(
        sa.update(StoreCredential)
        .where(StoreCredential.id == key_id, StoreCredential.next_attempt_at <= now)
        .values(next_attempt_at=until)
        .execution_options(synchronize_session=False)).rowcount == 1
    return until if taken else None


def _failed(catalog: Catalog, key_id: int, error: StoreError, now: dt.datetime) -> None:
    with catalog.session() as session:
        row = session.get(StoreCredential, key_id)
        if row is None:
            return
        row.attempts += 1
        row.last_error = str(error)[:2000]
        row.next_attempt_at = now + min(BACKOFF_FIRST * 2 ** min(row.attempts - 1, 10),
                                        BACKOFF_MOST)


def _same_broker(session, store_id: int, broker: CredentialBroker | StoreError) -> bool:
    kind = session.scalar(sa.select(StoreRow.credentials).where(StoreRow.id == store_id))
    return isinstance(broker, StoreError) or kind == broker.kind


def _issue(catalog: Catalog, master_key: MasterKey, broker: CredentialBroker | StoreError,
           store: StoreRow, pair: _Pair, step: Step, actor: str, now: dt.datetime) -> bool:
    scope = repository_scope(store_spec(store), repository_path(pair.department, pair.system),
                             pair.system)
    principal = principal_name(scope)
    key_id = step.key_id
    with catalog.session() as session:
        if key_id is None:
            if session.scalar(sa.select(System.status).where(System.id == step.system_id)) \
                    == "retired" or not _same_broker(session, store.id, broker):
                return False  # retired, or the store's broker changed, since the plan
            row = StoreCredential(system_id=step.system_id, store_id=step.store_id,
                                  state=KeyState.PENDING, principal=principal,
                                  next_attempt_at=now)
            try:
                with session.begin_nested():  # a savepoint: losing a race spoils nothing
                    session.add(row)
            except sqlalchemy.exc.IntegrityError:
                return False  # another process made the live key first
            key_id = row.id
        lease = None if isinstance(broker, StoreError) else _claim(session, key_id, now)
    if isinstance(broker, StoreError):
        _failed(catalog, key_id, broker, now)  # a key to make, and why it is not made
        raise broker
    if lease is None:
        return False
    try:
        sweep_orphans(catalog, broker, store, step.system_id, principal)
        issued = broker.issue(scope)
    except StoreError as error:
        _failed(catalog, key_id, error, now)
        raise
    secret = master_key.encrypt(issued.secret_access_key.reveal().encode(),
                                credential_context(store.name, issued.access_key_id))
    with catalog.session() as session:
        made = session.execute(
            sa.update(StoreCredential)
            .where(StoreCredential.id == key_id, StoreCredential.state == KeyState.PENDING,
                   StoreCredential.next_attempt_at == lease,
                   sa.exists().where(StoreRow.id == store.id,
                                     StoreRow.credentials == broker.kind))
            .values(state=KeyState.ACTIVE, principal=issued.principal,
                    access_key_id=issued.access_key_id, secret_encrypted=secret,
                    issued_at=utcnow(), attempts=0, last_error=None, next_attempt_at=now)
            .execution_options(synchronize_session=False)).rowcount == 1
        if made:
            audit.record(session, actor, "credentials.issue", pair.system, store=store.name,
                         principal=issued.principal, access_key_id=issued.access_key_id)
    if not made:  # retired, revoked or taken over while the key was made: it must not live
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


def _disable(catalog: Catalog, broker: CredentialBroker | StoreError, store: StoreRow,
             step: Step, actor: str, now: dt.datetime) -> bool:
    with catalog.session() as session:
        row = session.get(StoreCredential, step.key_id)
        if row is None or row.state == KeyState.DISABLED:
            return False
        if row.state != KeyState.DISABLING:
            row.state = KeyState.DISABLING
            row.reason = step.reason or row.reason
            row.next_attempt_at = now
            session.flush()
        lease = _claim(session, row.id, now)
        if lease is None:
            return False
        principal, access_key_id, reason = row.principal, row.access_key_id, row.reason
        system = session.get(System, row.system_id)
        system_name, retired = system.name, system.status == "retired"
    try:
        if isinstance(broker, StoreError):
            raise broker
        if principal and access_key_id:
            broker.disable(principal, access_key_id)
        if principal and retired:
            broker.remove(principal)  # also any key a dead pass made and never recorded
    except StoreError as error:
        _failed(catalog, step.key_id, error, now)
        raise
    with catalog.session() as session:
        session.execute(sa.update(StoreCredential)
                        .where(StoreCredential.id == step.key_id)
                        .values(state=KeyState.DISABLED, disabled_at=utcnow(),
                                secret_encrypted=None, attempts=0, last_error=None)
                        .execution_options(synchronize_session=False))
        audit.record(session, actor, "credentials.disable", system_name, store=store.name,
                     principal=principal, access_key_id=access_key_id, reason=reason)
    return True
