"""Enrollment: one-time tokens (``drd system token``) and the agent's preview and enroll.

The catalog keeps only the SHA-256 of a token. Issuing a token for a system that has
not enrolled yet revokes the earlier unused tokens of that system, so that only the
newest one works. Enrolling consumes the token and marks the system enrolled in one
transaction whose first statement claims the token with a conditional update: of two
agents enrolling with the same token at once, exactly one succeeds and the other gets
:class:`Conflict`, on PostgreSQL and on SQLite alike.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drd.catalog import Catalog, audit
from drd.catalog.models import Department, Policy, StoreCredential, System, Token
from drd.catalog.types import utcnow
from drd.config import Config
from drd.credentials.reconcile import reconcile
from drd.credentials.retention import ensure_default_retention
from drd.crypto import seal
from drd.crypto.masterkey import MasterKey
from drd.crypto.pem import load_signing_public_key, public_key_pem
from drd.crypto.signing import public_key_fingerprint
from drd.errors import UserError
from drd.names import require_name
from drd.recorded.catalog import record_bytes, record_object
from drd.recorded.keys import CONFIG, ESCROW_KEY
from drd.secrets import Secret
from drd.services.agents import build_assignment
from drd.services.enrollment_token import (
    EnrollmentToken,
    TokenFormatError,
    decode_token,
    new_token,
    token_state,
)
from drd.services.protocol import EnrollPreviewResponse, EnrollRequest
from drd.services.refusals import BadRequest, Conflict, NotAuthenticated

log = logging.getLogger(__name__)

DEFAULT_EXPIRY = dt.timedelta(hours=24)
MAX_EXPIRY = dt.timedelta(days=30)
AGENT_TOKEN_BYTES = 32
# drd.crypto.seal's blob: version (1) + ephemeral key (32) + nonce (12) + GCM tag (16)
_SEALED_MINIMUM = 1 + 32 + 12 + 16
_SEALED_MAXIMUM = _SEALED_MINIMUM + 1024


@dataclass(frozen=True, repr=False)
class IssuedToken:
    """A token just issued; ``token.text`` is shown once and never kept."""

    token: EnrollmentToken
    department: str
    policy: str
    system_created: bool
    revoked_earlier: int

    def __repr__(self) -> str:
        return f"IssuedToken({self.token!r}, department={self.department!r})"


@dataclass(frozen=True, repr=False)
class Enrolled:
    """A system just enrolled; ``agent_token`` is shown to the agent once."""

    system: str
    department: str
    agent_token: Secret

    def __repr__(self) -> str:
        return f"Enrolled(system={self.system!r}, department={self.department!r})"


def server_url(config: Config, override: str | None = None) -> str:
    """The URL put in tokens: ``override``, else ``public_url``, else ``https://<listen>``.

    Raises :class:`UserError` for a URL that is not ``http(s)://HOST[:PORT][/PATH]``.
    """
    url = (override or config.public_url or f"https://{config.listen}").rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- parsing the port is the check
    except ValueError:
        raise UserError(f"bad server URL {url!r}: give https://HOST:PORT with a port from "
                        "1 to 65535 (and brackets around an IPv6 address)") from None
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query \
            or parts.fragment or parts.username:
        raise UserError(f"bad server URL {url!r}: give https://HOST:PORT, the address agents "
                        "reach the centre at (--server, or public_url in drd.yaml)")
    return url


def is_wildcard_url(url: str) -> bool:
    """True when ``url`` names a wildcard address (``0.0.0.0``, ``::``) agents cannot reach."""
    return urlsplit(url).hostname in ("0.0.0.0", "::")


def issue_token(catalog: Catalog, *, system: str, department: str, policy: str,
                ca_sha256: str, server: str, expires_in: dt.timedelta = DEFAULT_EXPIRY,
                actor: str = "cli", now: dt.datetime | None = None) -> IssuedToken:
    """Issue a one-time enrollment token for ``system`` and register the system as pending.

    The department is created if it does not exist. A pending system is reused (its
    department and policy set to those given) and its earlier unused tokens revoked.
    Raises :class:`UserError` for a bad name or expiry, a policy that is not applied,
    or a system that is enrolled already or retired. Nothing is written on failure.
    """
    require_name(system, "system name")
    require_name(department, "department name")
    if not dt.timedelta(minutes=1) <= expires_in <= MAX_EXPIRY:
        raise UserError("--expires must be between 1m and 30d")
    now = now or utcnow()
    token = new_token(server, ca_sha256, system, now + expires_in)
    with catalog.session() as session:
        policy_row = session.scalar(sa.select(Policy).where(Policy.name == policy))
        if policy_row is None:
            raise UserError(f"no policy named {policy!r} is applied: apply it first with "
                            "'drd policy apply FILE' (see drd policy list)")
        department_row = session.scalar(sa.select(Department).where(
            Department.name == department))
        if department_row is None:
            department_row = Department(name=department)
            session.add(department_row)
            audit.record(session, actor, "department.create", department)
        system_row = session.scalar(sa.select(System).where(System.name == system))
        created = system_row is None
        if system_row is None:
            system_row = System(name=system, department=department_row, policy=policy_row,
                                status="pending")
            session.add(system_row)
        elif system_row.status == "enrolled":
            raise UserError(f"system {system!r} is already enrolled: a token enrolls a new "
                            "system only")
        elif system_row.status != "pending":
            raise UserError(f"system {system!r} is {system_row.status}: it cannot be enrolled")
        else:
            system_row.department = department_row
            system_row.policy = policy_row
            # whoever previewed an earlier token got keys of this system: a new token
            # means new keys (made at its preview), and those go
            session.execute(sa.update(StoreCredential)
                            .where(StoreCredential.system_id == system_row.id,
                                   StoreCredential.state.in_(("pending", "active",
                                                              "superseded")))
                            .values(state="disabling", next_attempt_at=now,
                                    reason="enrollment token replaced")
                            .execution_options(synchronize_session=False))
        revoked = _revoke_unused_tokens(session, system, now)
        session.add(Token(name=f"enroll:{system}", role="enrollment", token_hash=token.hash,
                          departments=[department], systems=[system],
                          expires_at=token.expires))
        audit.record(session, actor, "system.token", system, department=department,
                     policy=policy, server=token.server,
                     expires=token.expires.isoformat(), revoked_earlier=revoked)
    return IssuedToken(token=token, department=department, policy=policy,
                       system_created=created, revoked_earlier=revoked)


def _revoke_unused_tokens(session: Session, system: str, now: dt.datetime) -> int:
    rows = session.scalars(sa.select(Token).where(
        Token.role == "enrollment", Token.used_at.is_(None), Token.revoked_at.is_(None)))
    revoked = 0
    for row in rows:
        if row.systems == [system]:
            row.revoked_at = now
            revoked += 1
    return revoked


def _decode(text: str) -> EnrollmentToken:
    try:
        return decode_token(text)
    except TokenFormatError as problem:
        raise NotAuthenticated(str(problem)) from None


def _refuse(row: Token | None, token: EnrollmentToken, now: dt.datetime) -> None:
    """Raise why the token ``row`` (None: unknown) cannot be used; return if it can."""
    if row is None or row.role != "enrollment":
        raise NotAuthenticated(
            "unknown enrollment token: this centre did not issue it, or it was mistyped; "
            "ask for a new one ('drd system token' on the centre)")
    if row.systems != [token.system]:
        raise NotAuthenticated("a forged enrollment token: its system does not match")
    state = token_state(expires_at=row.expires_at, used_at=row.used_at,
                        revoked_at=row.revoked_at, now=now)
    if state == "used":
        raise Conflict(f"this enrollment token was used already ({_minute(row.used_at)}): "
                       "a token enrolls once; ask for a new one if the system is not "
                       "enrolled")
    if state == "revoked":
        raise NotAuthenticated("this enrollment token was replaced by a newer one for the "
                               "same system: use the newest token")
    if state == "expired":
        raise NotAuthenticated(f"this enrollment token expired ({_minute(row.expires_at)}): "
                               "ask for a new one ('drd system token' on the centre)")


def _minute(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%MZ")


def _pending_system(session: Session, name: str) -> System:
    system = session.scalar(sa.select(System).where(System.name == name))
    if system is None:
        raise Conflict(f"system {name!r} no longer exists on the centre: ask for a new token")
    if system.status == "enrolled":
        raise Conflict(f"system {name!r} is already enrolled")
    if system.status != "pending":
        raise Conflict(f"system {name!r} is {system.status}: it cannot be enrolled")
    return system


def preview(catalog: Catalog, token_text: str, master_key: MasterKey,
            escrow_public_key_pem: str, now: dt.datetime | None = None
            ) -> EnrollPreviewResponse:
    """What enrolling with ``token_text`` would give: the system, department, assignment.

    The token is checked, not consumed. The system's own keys in its policy's stores are
    made here (once: a second preview hands out the same keys), since the agent
    initialises its repository and escrows its password before it enrolls; a store that
    cannot make one now is left out of the assignment, and the leader makes it later.
    Raises :class:`NotAuthenticated` (forged, unknown, revoked or expired token) or
    :class:`Conflict` (used, or the system is enrolled already).
    """
    now = now or utcnow()
    token = _decode(token_text)
    with catalog.read_session() as session:
        row = session.scalar(sa.select(Token).where(Token.token_hash == token.hash))
        _refuse(row, token, now)
        pending = _pending_system(session, token.system)
        system_id = pending.id
        stores = list((pending.policy.document.get("stores") or []) if pending.policy else [])
    # before the agent first writes: the buckets lock what it writes (it may not itself)
    ensure_default_retention(catalog, master_key, stores, actor=f"enrollment:{token.system}")
    made = reconcile(catalog, master_key, systems=[system_id], issue_pending=[system_id],
                     actor=f"enrollment:{token.system}")
    for failure in made.failures:
        log.warning("enrollment preview of %s: %s", token.system, failure)
    with catalog.session() as session:
        system = _pending_system(session, token.system)
        assignment = build_assignment(session, system, master_key, escrow_public_key_pem)
        return EnrollPreviewResponse(system=system.name, department=system.department.name,
                                     assignment=assignment)


def check_sealed_password(text: str) -> bytes:
    """The sealed password blob from its base64 text.

    Only the form is checked (base64, the seal format's version byte, a plausible
    length): the centre does not unseal it, since every unsealing must be a deliberate,
    audited act. Raises :class:`BadRequest` saying what is wrong.
    """
    try:
        blob = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("sealed_password: not base64") from None
    if not blob or blob[0] != seal.VERSION:
        raise BadRequest("sealed_password: not a drd.crypto.seal blob of a known version")
    if not _SEALED_MINIMUM < len(blob) <= _SEALED_MAXIMUM:
        raise BadRequest(f"sealed_password: a sealed password is {_SEALED_MINIMUM + 1} to "
                         f"{_SEALED_MAXIMUM} bytes, not {len(blob)}")
    return blob


def check_agent_public_key(pem: str) -> str:
    """The agent's Ed25519 public key, re-encoded as canonical PEM.

    Raises :class:`BadRequest` for anything but an Ed25519 public key in PEM form.
    """
    try:
        key = load_signing_public_key(pem.encode())
    except UserError:
        raise BadRequest("agent_public_key: not an Ed25519 public key in PEM form") from None
    return public_key_pem(key).decode()


def enroll(catalog: Catalog, request: EnrollRequest, now: dt.datetime | None = None,
           master_key: MasterKey | None = None) -> Enrolled:
    """Consume the token, mark the system enrolled and issue its agent token, atomically.

    The keys the preview made are superseded in the same transaction: whoever else saw
    the preview (a leaked enrollment token) holds keys that stop working once the agent
    has taken the new ones, which are made at once with ``master_key`` (else by the
    leader) and reach the agent at its first heartbeat.

    Stores the hostname, the agent's public key and the sealed password; the catalog
    keeps only the agent token's hash. Raises :class:`BadRequest` for a bad key or
    sealed password, :class:`NotAuthenticated` or :class:`Conflict` as :func:`preview`
    does; on any refusal nothing changes.
    """
    now = now or utcnow()
    token = _decode(request.token)
    public_key = check_agent_public_key(request.agent_public_key)
    sealed = check_sealed_password(request.sealed_password)
    agent_token = Secret(secrets.token_urlsafe(AGENT_TOKEN_BYTES))
    with catalog.session() as session:
        claimed = session.execute(
            sa.update(Token)
            .where(Token.token_hash == token.hash, Token.role == "enrollment",
                   Token.used_at.is_(None), Token.revoked_at.is_(None),
                   Token.expires_at > now)
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        row = session.scalar(sa.select(Token).where(Token.token_hash == token.hash))
        if claimed != 1:
            _refuse(row, token, now)
            raise Conflict("this enrollment token was used already")  # lost a race
        if row.systems != [token.system]:
            raise NotAuthenticated("a forged enrollment token: its system does not match")
        system = _pending_system(session, token.system)
        enrolled = session.execute(
            sa.update(System)
            .where(System.id == system.id, System.status == "pending")
            .values(status="enrolled", enrolled_at=now, hostname=request.hostname,
                    agent_public_key=public_key, sealed_password=sealed)
            .execution_options(synchronize_session=False)
        ).rowcount
        if enrolled != 1:
            raise Conflict(f"system {token.system!r} is already enrolled")
        department, system_id = system.department.name, system.id
        session.execute(sa.update(StoreCredential)
                        .where(StoreCredential.system_id == system.id,
                               StoreCredential.state == "active")
                        .values(state="superseded", superseded_at=now,
                                reason="made for the enrollment preview")
                        .execution_options(synchronize_session=False))
        session.add(Token(name=f"agent:{token.system}", role="agent",
                          token_hash=Token.hash_token(agent_token), departments=[department],
                          systems=[token.system]))
        fingerprint = public_key_fingerprint(load_signing_public_key(public_key.encode()))
        audit.record(session, f"agent:{token.system}", "system.enroll", token.system,
                     department=department, hostname=request.hostname,
                     agent_key_sha256=fingerprint, enrollment_token_id=row.id)
        record_enrolled_objects(session, system.id, request, sealed, now)
    log.info("system %s (%s) enrolled from host %s", token.system, department,
             request.hostname)
    if master_key is not None:
        made = reconcile(catalog, master_key, systems=[system_id],
                         actor=f"agent:{token.system}")
        for failure in made.failures:
            log.warning("enrollment of %s: %s", token.system, failure)
    return Enrolled(system=token.system, department=department, agent_token=agent_token)


def record_enrolled_objects(session: Session, system_id: int, request: EnrollRequest,
                            sealed: bytes, now: dt.datetime) -> None:
    """Record what the agent put in every store before it enrolled, so that each copy is
    checked against it rather than against the other copies (:mod:`drd.recorded`): the
    sealed password (the very bytes sent here) and ``config`` (its digest, when the
    agent sent one; for older agents the centre learns it from a locked copy)."""
    record_bytes(session, system_id, ESCROW_KEY, sealed, source="agent at enrollment",
                 now=now, replace=True)
    if request.config_sha256 is not None and request.config_size is not None:
        record_object(session, system_id, CONFIG, sha256=request.config_sha256,
                      size=request.config_size, source="agent at enrollment", now=now,
                      replace=True)
