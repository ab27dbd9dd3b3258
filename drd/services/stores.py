"""The centre's stores: adding, listing, opening and checking them.

A store's secret access key is encrypted under the master key (context
``store:<name>``) before it reaches the catalog, and is decrypted only to open the
store. Adding a store checks it first, so the catalog never names a store that was
not reachable with the keys given.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from drd.catalog import Catalog, audit
from drd.catalog.models import Store as StoreRow
from drd.catalog.types import utcnow
from drd.credentials.reconcile import determine_brokers, store_secret_context, store_spec
from drd.crypto.errors import CryptoError
from drd.crypto.masterkey import MasterKey
from drd.errors import UserError
from drd.names import require_name
from drd.secrets import Secret
from drd.stores.base import Store, StoreCheck
from drd.stores.credentials import (
    BROKER_KINDS,
    SHARED,
    CredentialsUnsupported,
    detect_broker,
    guarantees_of,
    open_broker,
)
from drd.stores.errors import StoreError
from drd.stores.url import StoreSpec, open_store, validate_spec
from policies.rules import StoreFacts

CREDENTIAL_CHOICES = ("auto", *BROKER_KINDS)


# the master key context of a store's own secret key, and a registered store as a spec:
# defined once, with the keys' reconciliation that needs them too
secret_context = store_secret_context
spec_of = store_spec


def validate_store_name(name: str) -> str:
    return require_name(name, "store name")


def describe(row: StoreRow) -> dict:
    """A store as shown to people and scripts: everything but the secret."""
    return {
        "name": row.name,
        "kind": row.kind,
        "url": row.url,
        "endpoint": row.endpoint,
        "region": row.region,
        "object_lock": row.object_lock,
        "access_key_id": row.access_key_id,
        "credentials": row.credentials,
        "iam_endpoint": row.iam_endpoint,
        "created_at": row.created_at,
    }


def choose_broker(spec: StoreSpec, access_key_id: str | None, secret_access_key: Secret | None,
                  credentials: str = "auto", iam_endpoint: str | None = None) -> str:
    """Which credential broker the store gets, checked: ``credentials`` as asked, or the
    one :func:`~drd.stores.credentials.detect_broker` finds for ``auto``.

    Raises :class:`UserError` when ``auto`` finds none, or a file store is asked for a
    broker; :class:`~drd.stores.credentials.CredentialsUnsupported` (exit 1) when the
    broker cannot make users with the store's keys (the message says what to set up).
    """
    if credentials not in CREDENTIAL_CHOICES:
        raise UserError(f"--credentials must be one of {', '.join(CREDENTIAL_CHOICES)}")
    is_file = validate_spec(spec).kind == "file"
    if is_file and credentials not in ("auto", SHARED):
        raise UserError(f"store {spec.name!r}: a file:// store cannot tell agents apart; "
                        "its credentials are 'shared'")
    kind = credentials
    if kind == "auto":
        kind = detect_broker(spec, access_key_id, secret_access_key)
        if kind is None:
            raise UserError(
                f"store {spec.name!r}: drd cannot make keys of their own for each system at "
                f"{spec.endpoint} (it is neither SeaweedFS nor an IAM API); give "
                "--credentials aws-iam --iam-endpoint URL if its IAM API is elsewhere, or "
                "--credentials shared to hand every agent the store's own keys (policies "
                "must then say allow_shared_credentials: true)")
    if kind != SHARED:
        open_broker(kind, spec, access_key_id, secret_access_key, iam_endpoint).check()
    return kind


def prove_broker(spec: StoreSpec, kind: str, access_key_id: str | None,
                 secret_access_key: Secret | None, iam_endpoint: str | None = None) -> str:
    """What a system's key there measurably can and cannot do (a probe key tried as an
    attacker would, :func:`drd.stores.credentials.proof.prove`), in one line; for a shared
    store, what sharing means. Raises what ``prove`` raises."""
    guarantees = guarantees_of(kind)
    if kind == SHARED:
        return guarantees.summary
    from drd.stores.credentials.proof import prove

    broker = open_broker(kind, spec, access_key_id, secret_access_key, iam_endpoint)
    proof = prove(broker, spec, access_key_id or "", secret_access_key or Secret(""))
    return f"{kind}: {guarantees.summary}; {proof.summary()}"


def change_broker(catalog: Catalog, master_key: MasterKey, name: str, credentials: str,
                  iam_endpoint: str | None = None, actor: str = "cli") -> str:
    """Give store ``name`` another credential broker (``drd store set --credentials``):
    checked as at ``store add``; the applied policies naming the store must still hold
    under the credential rules; keys systems hold there under the old broker are disabled
    first (with it), and the change is refused while any still works. Returns the kind.

    Raises :class:`UserError` (an unknown store, a policy the change would break, keys
    that could not be disabled) or a store error as :func:`choose_broker` does.
    """
    from drd.catalog.models import Policy as PolicyRow
    from drd.catalog.models import StoreCredential
    from drd.credentials.reconcile import reconcile
    from policies.rules import check_policy
    from policies.schema import Policy

    (row,) = store_rows(catalog, [name])
    kind = choose_broker(spec_of(row), row.access_key_id, _store_secret(row, master_key),
                         credentials, iam_endpoint)
    facts = store_facts(catalog)
    facts[name] = StoreFacts(credentials=kind, object_lock=row.object_lock,
                             needs_object_lock=guarantees_of(kind).needs_object_lock)
    with catalog.read_session() as session:
        documents = [(policy.name, policy.document) for policy in session.scalars(
            sa.select(PolicyRow))]
    for policy_name, document in documents:
        if name not in (document.get("stores") or []):
            continue
        problems = [message for path, message in check_policy(
            Policy.model_validate(document), store_regions(catalog), facts)
            if path[:1] == ("stores",)]
        if problems:
            raise UserError(f"policy {policy_name!r} would no longer hold: {problems[0]}")
    if kind != row.credentials:
        with catalog.session() as session:
            session.execute(sa.update(StoreCredential)
                            .where(StoreCredential.store_id == row.id,
                                   StoreCredential.state.in_(("pending", "active",
                                                              "superseded")))
                            .values(state="disabling", next_attempt_at=utcnow(),
                                    reason=f"the store's broker changed to {kind}"))
        reconcile(catalog, master_key, actor=actor, no_new_keys_in=[row.id])
    live = sa.exists().where(StoreCredential.store_id == row.id,
                             StoreCredential.state != "disabled")
    with catalog.session() as session:
        # one statement decides: a key the leader made meanwhile keeps the old broker
        switched = session.execute(
            sa.update(StoreRow).where(StoreRow.id == row.id, ~live)
            .values(credentials=kind, iam_endpoint=iam_endpoint)).rowcount == 1
        if switched:
            audit.record(session, actor, "store.set", name, credentials=kind,
                         iam_endpoint=iam_endpoint)
    if not switched:
        raise UserError(f"store {name!r}: system keys made by its current broker could not "
                        "all be disabled yet (drd status says why); the broker stays as it "
                        "is: try again when the store answers")
    return kind


def store_facts(catalog: Catalog) -> dict[str, StoreFacts]:
    """What the policy rules need of every registered store (its broker, Object Lock)."""
    return {row.name: StoreFacts(credentials=row.credentials, object_lock=row.object_lock,
                                 needs_object_lock=guarantees_of(row.credentials)
                                 .needs_object_lock)
            for row in store_rows(catalog)}


def add_store(catalog: Catalog, master_key: MasterKey, spec: StoreSpec,
              access_key_id: str | None, secret_access_key: Secret | None,
              actor: str = "cli", credentials: str = "auto",
              iam_endpoint: str | None = None) -> StoreCheck:
    """Check the store (creating its bucket or directory if missing) and register it,
    with the credential broker that makes each system's own keys there
    (:func:`choose_broker`).

    Raises :class:`UserError` for a bad name, URL or region, or a name already taken;
    :class:`~drd.stores.errors.StoreError` (exit 1) when the store cannot be reached,
    the keys are wrong or it cannot be written, or its broker cannot make users.
    Nothing is registered on failure.
    """
    validate_store_name(spec.name)
    parsed = validate_spec(spec)
    if not spec.region:
        raise UserError(f"store {spec.name!r} needs --region (policies spread copies over "
                        "regions)")
    with catalog.session() as session:
        if session.scalar(sa.select(StoreRow.id).where(StoreRow.name == spec.name)):
            raise UserError(f"a store named {spec.name!r} exists already (see drd store list)")
    # the broker first: a store where systems cannot get keys of their own is refused
    # before its bucket is made
    broker = choose_broker(spec, access_key_id, secret_access_key, credentials, iam_endpoint)
    store = open_store(spec, access_key_id, secret_access_key, retry_attempts=2,
                       retry_backoff=0.5)
    store.create_if_missing(object_lock=spec.object_lock)
    result = store.check()
    if spec.object_lock and not result.object_lock:
        raise UserError(
            f"store {spec.name!r}: the bucket exists without Object Lock, which cannot be "
            "turned on later here; use a new bucket or drop --object-lock"
        )
    if parsed.kind == "s3":
        prove_broker(spec, broker, access_key_id, secret_access_key, iam_endpoint)
    encrypted = (master_key.encrypt(secret_access_key.reveal().encode(),
                                    secret_context(spec.name))
                 if secret_access_key else None)
    with catalog.session() as session:
        session.add(StoreRow(
            name=spec.name, kind=parsed.kind, url=spec.url, endpoint=spec.endpoint,
            region=spec.region, object_lock=spec.object_lock,
            access_key_id=access_key_id if parsed.kind == "s3" else None,
            secret_encrypted=encrypted if parsed.kind == "s3" else None,
            credentials=broker, iam_endpoint=iam_endpoint,
        ))
        audit.record(session, actor, "store.add", spec.name, url=spec.url,
                     endpoint=spec.endpoint, region=spec.region, object_lock=spec.object_lock,
                     credentials=broker)
    return result


def store_rows(catalog: Catalog, names: Iterable[str] = ()) -> list[StoreRow]:
    """The registered stores (all, or those named), by name.

    Raises :class:`UserError` naming any store that is not registered.
    """
    wanted = list(names)
    with catalog.session() as session:
        query = sa.select(StoreRow).order_by(StoreRow.name)
        if wanted:
            query = query.where(StoreRow.name.in_(wanted))
        rows = list(session.scalars(query))
    missing = sorted(set(wanted) - {row.name for row in rows})
    if missing:
        raise UserError(f"no store named {', '.join(missing)} (see drd store list)")
    return rows


def store_regions(catalog: Catalog) -> dict[str, str]:
    """Every registered store's region, for the policies' region rule."""
    return {row.name: row.region or "" for row in store_rows(catalog)}


def open_registered(row: StoreRow, master_key: MasterKey, **options) -> Store:
    """Open a registered store with its decrypted keys."""
    return open_store(spec_of(row), row.access_key_id, _store_secret(row, master_key),
                      **options)


@dataclass(frozen=True)
class StoreHealth:
    """One store's check: reachable (``check``) or why not (``error``), and what its
    credential broker gives (``credentials``: kind and what a system's key cannot do, or
    ``credentials_error`` when the broker cannot make users)."""

    name: str
    ok: bool
    check: StoreCheck | None = None
    error: str | None = None
    credentials: str | None = None
    credentials_error: str | None = None

    def as_dict(self) -> dict:
        result = {"name": self.name, "ok": self.ok, "error": self.error,
                  "credentials": self.credentials, "credentials_error": self.credentials_error}
        if self.check:
            result.update(location=self.check.location, object_lock=self.check.object_lock,
                          versioning=self.check.versioning,
                          seconds=round(self.check.seconds, 3))
        return result


def _store_secret(row: StoreRow, master_key: MasterKey) -> Secret | None:
    if row.secret_encrypted is None:
        return None
    return Secret(master_key.decrypt(row.secret_encrypted, secret_context(row.name)))


def check_credentials(row: StoreRow, master_key: MasterKey) -> tuple[str | None, str | None]:
    """``(kind and what a system's key cannot do, None)`` or ``(kind, why the broker cannot
    make users)`` for a registered store whose broker is known."""
    kind = row.credentials
    try:
        secret = _store_secret(row, master_key)
        if kind != SHARED:
            open_broker(kind, spec_of(row), row.access_key_id, secret,
                        row.iam_endpoint).check()
        return prove_broker(spec_of(row), kind, row.access_key_id, secret,
                            row.iam_endpoint), None
    except (StoreError, CredentialsUnsupported) as problem:
        return kind, str(problem)


def check_stores(rows: Iterable[StoreRow], master_key: MasterKey,
                 catalog: Catalog | None = None) -> list[StoreHealth]:
    """Check each store on its own, and what its credential broker gives; one store
    failing does not stop the others. With ``catalog``, a store whose broker is not
    recorded yet gets one determined and recorded.

    A store whose secret cannot be decrypted or whose recorded settings no longer
    validate is reported as failed like one that cannot be reached.
    """
    results = []
    for row in rows:
        try:
            store = open_registered(row, master_key, retry_attempts=2, retry_backoff=0.5)
            check = store.check()
            if row.credentials is None and catalog is not None:
                row.credentials = determine_brokers(catalog, master_key).get(row.name)
            if row.credentials is None:
                credentials, problem = None, ("not determined: choose one with drd store set "
                                              f"{row.name} --credentials KIND (see "
                                              "docs/administrators.md)")
            else:
                credentials, problem = check_credentials(row, master_key)
            results.append(StoreHealth(row.name, problem is None, check=check,
                                       credentials=credentials, credentials_error=problem))
        except CryptoError:
            results.append(StoreHealth(row.name, False, error=(
                f"store {row.name!r}: its secret key cannot be decrypted with this centre's "
                "master key (was the catalog copied from another centre?)")))
        except (StoreError, UserError) as problem:
            results.append(StoreHealth(row.name, False, error=str(problem)))
    return results
