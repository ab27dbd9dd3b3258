"""Enrollment: ``drd-agent enroll --server URL --token-file FILE`` (``docs/agent-protocol.md``).

Steps, in this order, so that a failure anywhere leaves nothing marked enrolled and a
retry resumes where the last attempt stopped:

1. Parse the token; refuse an expired one, or one issued for another server (no network).
2. Fetch ``/v1/ca.pem`` (unverified), check ``sha256(DER)`` against the token's
   ``ca_sha256``; from then on trust only that CA.
3. Preview: the system, department and assignment (the token is not consumed).
4. Make the identity key and a random restic password in ``pending/`` (or reuse those of
   an earlier attempt at the same enrollment).
5. Seal the password to the centre's escrow key (context ``drd-repository-password:`` +
   system) and keep the blob in ``pending/``; a retry reuses it (while the escrow key is
   the same), so the stores, where a write-once store refuses other bytes under a name
   it holds, and the centre, which records the blob's digest, see one blob.
6. ``restic init`` in every store through the fan-out endpoint; a repository that is
   already there is reused when the pending password opens it (an earlier attempt made
   it), refused when it does not.
7. Put the sealed password in every store (``drd/escrow/password.sealed``).
8. Enroll: the centre consumes the token, records the digests of the sealed password and
   of ``config`` (read back from the stores) that every copy must have, and answers with
   the agent's credential, which is kept in ``pending/`` at once.
9. Write the secrets and the assignment, then ``agent.yaml`` last; remove ``pending/``.

If step 9 fails after the centre answered, the next ``drd-agent enroll`` with the same
token finishes it from ``pending/`` without asking the centre to enroll again.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agents.assignment import Assignment, parse_assignment
from agents.client import CentreClient, CentreRefused, ca_fingerprint
from agents.home import (
    AgentConfig,
    AgentHome,
    PendingEnrollment,
    identity_key_pem,
    this_hostname,
)
from agents.target import Target, open_stores, put_everywhere
from agents.token import normalise_server_url, parse_token
from drd.crypto.pem import load_escrow_public_key, public_key_pem
from drd.crypto.seal import password_context, seal
from drd.errors import OperationError, UserError
from drd.recorded.keys import CONFIG
from drd.restic import Restic, ResticRepositoryExists, ResticWrongPassword
from drd.secrets import Secret
from drd.stores import Store, StoreError, parse_store_url

logger = logging.getLogger(__name__)

ESCROW_KEY = "drd/escrow/password.sealed"
PASSWORD_BYTES = 32


def new_password() -> Secret:
    """A random restic password: 32 random bytes, base64url without padding (43 chars)."""
    return Secret(base64.urlsafe_b64encode(secrets.token_bytes(PASSWORD_BYTES))
                  .rstrip(b"=").decode())


@dataclass(frozen=True)
class EnrollmentResult:
    """A completed enrollment."""

    system: str
    department: str
    server: str
    home: Path
    stores: tuple[str, ...]
    repository: str  # "created" or "reused"
    resumed: bool

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "department": self.department, "server": self.server,
                "home": str(self.home), "stores": list(self.stores),
                "repository": self.repository, "resumed": self.resumed}


TargetFactory = Callable[[Assignment, list[Store], Secret], Target]


def enroll(
    home: AgentHome,
    server: str,
    token_text: str,
    *,
    restic: Restic,
    target_factory: TargetFactory,
    now: datetime | None = None,
    hostname: str | None = None,
    transport: Any = None,
) -> EnrollmentResult:
    """Enroll this system with the centre at ``server`` using ``token_text``.

    Args:
        home: the agent's home (created 0700 if missing).
        server: the centre's URL as the user typed it.
        token_text: the enrollment token.
        restic: the restic runner.
        target_factory: makes the fan-out target over the stores, for ``restic init``.
        now: the current time (tests); hostname: this machine's name (tests).
        transport: an httpx transport (tests).

    Returns:
        What was enrolled.

    Raises:
        UserError: a bad, expired, used or forged token, a token for another server, a
            CA that does not match the token, or a home that is already enrolled.
        OperationError: the centre unreachable, a store or restic failing, a repository
            in the stores that another password made.
    """
    now = now or datetime.now(UTC)
    token = parse_token(token_text, now)
    server_url = normalise_server_url(server, what="--server")
    if server_url != token.server:
        raise UserError(f"the token was issued for {token.server}, not {server_url}: run "
                        f"'drd-agent enroll --server {token.server} ...', or ask for a token "
                        "for this server")
    home.ensure()
    if home.is_enrolled():
        config = home.require_enrolled()
        raise UserError(f"{home.root} is already enrolled as system {config.system!r} with "
                        f"{config.server}; use another --home to enroll again")
    hostname = hostname or this_hostname(token.system)
    ca_pem = CentreClient.fetch_ca_pem(server_url, transport=transport)
    if ca_fingerprint(ca_pem) != token.ca_sha256:
        raise UserError("the server's CA does not match the token: wrong server? (the token "
                        f"pins CA {token.ca_sha256[:16]}..., {server_url} serves another)")
    with CentreClient(server_url, ca_pem=ca_pem, transport=transport) as client:
        pending = home.pending()
        if pending is not None and (pending.server, pending.system) == (server_url,
                                                                         token.system):
            pending_token = home.pending_agent_token()
            if pending_token is not None:
                return _finish(home, server_url, ca_pem, pending, pending_token, hostname,
                               transport=transport, repository="reused", resumed=True)
        else:
            pending = None
        preview = _enrollment_call(lambda: client.preview(token.text))
        assignment = parse_assignment(preview.get("assignment"))
        if assignment.system != token.system:
            raise OperationError(f"the centre previewed system {assignment.system!r} for a "
                                 f"token naming {token.system!r}; refusing to enroll")
        identity, password, resumed = _pending_secrets(home, pending, server_url, assignment)
        sealed = _sealed_password(home, assignment, password)
        stores = open_stores(assignment)
        _prepare_file_stores(assignment)
        repository = _init_repository(restic, target_factory(assignment, stores, password),
                                      assignment)
        _escrow(stores, assignment, sealed, now)
        config = config_digest(stores)
        answer = _enrollment_call(lambda: client.enroll(
            token.text, hostname=hostname,
            agent_public_key_pem=public_key_pem(identity.public_key()).decode(),
            sealed_password_b64=base64.b64encode(sealed).decode(), config=config))
        agent_token = answer.get("agent_token")
        if not isinstance(agent_token, str) or not agent_token:
            raise OperationError("the centre enrolled the system but sent no agent_token; "
                                 "ask the centre's administrator to reissue a token")
        home.keep_pending_agent_token(Secret(agent_token))
        pending = home.pending()
        return _finish(home, server_url, ca_pem, pending, Secret(agent_token), hostname,
                       transport=transport, repository=repository, resumed=resumed,
                       assignment_document=dict(assignment.document),
                       department=str(answer.get("department") or assignment.department))


def _enrollment_call(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A call whose credential is the token: its refusals are the user's to fix."""
    try:
        return call()
    except CentreRefused as error:
        if error.status in (400, 401, 403, 404, 409, 410):
            raise UserError(f"the centre refused the enrollment token: {error.detail}") \
                from None
        raise


def _pending_secrets(home: AgentHome, pending: PendingEnrollment | None, server: str,
                     assignment: Assignment) -> tuple[Ed25519PrivateKey, Secret, bool]:
    """The identity key and password of this enrollment: an earlier attempt's, or new."""
    if pending is not None:
        try:
            return home.pending_identity_key(), home.pending_password(), True
        except OperationError as error:
            logger.warning("starting the enrollment afresh: %s", error)
    identity = Ed25519PrivateKey.generate()
    password = new_password()
    home.start_pending(PendingEnrollment(server=server, system=assignment.system,
                                         department=assignment.department),
                       identity_key_pem(identity), password)
    return identity, password, False


def _sealed_password(home: AgentHome, assignment: Assignment, password: Secret) -> bytes:
    """The pending password sealed to the centre's escrow key: the blob an earlier attempt
    kept in ``pending/`` when it is sealed to the same key, else a new one, kept there
    before any store sees it.

    Sealing is randomised (a fresh ephemeral key), so sealing again on a retry would put
    other bytes under ``drd/escrow/password.sealed``: a write-once store refuses them next
    to the first attempt's (locked) copy, and the copies would differ from what the centre
    records. Raises :class:`OperationError` for an unusable escrow key, OSError when
    ``pending/`` cannot be written.
    """
    try:
        escrow_key = load_escrow_public_key(assignment.escrow_public_key_pem.encode())
    except UserError as error:
        raise OperationError(f"the centre's escrow key is unusable: {error}") from None
    recipient = escrow_key.public_bytes_raw()
    kept = home.pending_sealed_password(recipient)
    if kept is not None:
        return kept
    sealed = seal(escrow_key, password.reveal().encode(), password_context(assignment.system))
    home.keep_pending_sealed_password(sealed, recipient)
    return sealed


def _prepare_file_stores(assignment: Assignment) -> None:
    """Make the repository's directory in file stores whose own directory exists.

    Raises:
        OperationError: a file store's directory is missing (not mounted?) or unwritable.
    """
    for store in assignment.stores:
        parsed = parse_store_url(store.url)
        if parsed.kind != "file":
            continue
        base = Path(parsed.path)
        if not base.is_dir():
            raise OperationError(f"store {store.name}: directory {base} does not exist on this "
                                 "system; mount it (or create it) and enroll again")
        target = base / assignment.repository_path
        try:
            target.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise OperationError(f"store {store.name}: cannot create {target}: "
                                 f"{error.strerror or error}") from None


def _init_repository(restic: Restic, target: Target, assignment: Assignment) -> str:
    """``restic init`` through ``target``; reuse a repository our password opens.

    Returns ``"created"`` or ``"reused"``.
    """
    where = f"{assignment.repository_path} in stores {', '.join(s.name for s in assignment.stores)}"
    with target as repository:
        try:
            restic.init(repository)
            state = "created"
        except ResticRepositoryExists:
            try:
                restic.config(repository)
            except ResticWrongPassword:
                raise OperationError(
                    f"the stores already hold a restic repository at {where} that this "
                    "enrollment's password does not open (another enrollment of the system "
                    "made it): the centre's administrator must move it away, or enroll the "
                    "system under another name") from None
            state = "reused"
            logger.info("reusing the repository at %s made by an earlier attempt", where)
    outcome = target.outcome()
    if not outcome.durable:
        raise OperationError(f"the repository at {where} could not be initialised in enough "
                             f"stores: {outcome.describe_shortfall()}")
    for name, store_state in outcome.stores.items():
        if not store_state.complete:
            logger.warning("store %s lacks %d object(s) of the new repository; the centre "
                           "will repair it", name, store_state.missing_objects)
    return state


def config_digest(stores: list[Store]) -> tuple[str, int] | None:
    """SHA-256 (hex) and size of the ``config`` that ``restic init`` stored, read back
    from the stores, for the centre to check every copy against (``drd.recorded``).

    None (with a warning) when no store could be read: the centre then learns it from a
    locked copy. Raises :class:`OperationError` when the stores hold different configs.
    """
    seen: dict[str, tuple[str, int]] = {}
    for store in stores:
        try:
            data = store.read(CONFIG)
        except StoreError as error:
            logger.warning("store %s: the repository's config could not be read back: %s",
                           store.name, error)
            continue
        seen[store.name] = (hashlib.sha256(data).hexdigest(), len(data))
    if len(set(seen.values())) > 1:
        raise OperationError("the stores hold different restic config objects for this "
                             f"repository ({', '.join(sorted(seen))}): the centre's "
                             "administrator must look into it before this system enrolls")
    return next(iter(seen.values()), None)


def _escrow(stores: list[Store], assignment: Assignment, sealed: bytes, now: datetime) -> None:
    """Put the sealed password in every store; fail unless ``min_copies`` took it."""
    days = assignment.policy.object_lock_days
    retain_until = now + timedelta(days=days) if days > 0 else None
    failures = put_everywhere(stores, ESCROW_KEY, sealed, retain_until=retain_until)
    stored = len(stores) - len(failures)
    if stored < min(assignment.policy.min_copies, len(stores)):
        raise OperationError(
            f"the sealed repository password could be stored in only {stored} of "
            f"{len(stores)} stores (the policy needs {assignment.policy.min_copies}): "
            + "; ".join(f"{name}: {error}" for name, error in sorted(failures.items())))


def _finish(home: AgentHome, server: str, ca_pem: bytes, pending: PendingEnrollment | None,
            agent_token: Secret, hostname: str, *, transport: Any, repository: str,
            resumed: bool, assignment_document: dict[str, Any] | None = None,
            department: str | None = None) -> EnrollmentResult:
    """Install the enrolled files; ``agent.yaml`` last; then drop ``pending/``."""
    if pending is None:
        raise OperationError(f"the pending enrollment in {home.pending_dir} is unreadable; "
                             "ask the centre for a new token and enroll again")
    if assignment_document is None:
        with CentreClient(server, ca_pem=ca_pem, agent_token=agent_token,
                          transport=transport) as client:
            assignment_document = client.assignment()
        parse_assignment(assignment_document)
    identity = home.pending_identity_key()
    password = home.pending_password()
    try:
        home.install(ca_pem=ca_pem, identity_key_pem=identity_key_pem(identity),
                     password=password, agent_token=agent_token,
                     assignment=assignment_document)
        home.write_config(AgentConfig(
            server=server, ca_file=str(home.ca_file), system=pending.system,
            department=department or pending.department, hostname=hostname,
            enrolled_at=datetime.now(UTC).isoformat()))
    except OSError as error:
        raise OperationError(f"the centre enrolled this system but {home.root} could not be "
                             f"written ({error.strerror or error}); fix it and run the same "
                             "'drd-agent enroll' again to finish") from None
    home.discard_pending()
    stores = tuple(store.get("name", "?") for store in assignment_document.get("stores", ())
                   if isinstance(store, dict))
    return EnrollmentResult(system=pending.system, department=department or pending.department,
                            server=server, home=home.root, stores=stores,
                            repository=repository, resumed=resumed)
