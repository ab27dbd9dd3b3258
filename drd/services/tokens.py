"""People's API tokens: create, list, revoke, and resolve a bearer token to a principal.

Roles (``admin``, ``operator``, ``owner``; agents' tokens come from enrollment):

- ``admin``: reads everything and may change things;
- ``operator``: reads everything;
- ``owner``: reads only the systems of its ``departments`` and its ``systems``, and may ask
  for a backup or a restore of those;
- ``agent``: its own system only (:func:`drd.services.agents.authenticate_agent`).

A token is 32 random bytes, shown once; the catalog keeps only its SHA-256
(:meth:`drd.catalog.models.Token.hash_token`), so a stolen catalog yields no usable
token. Each token has a unique name: the audit log names the token that did a thing
(``token:<name>``). Scope decisions are pure (:class:`Principal`).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from drd.catalog import Catalog, audit
from drd.catalog.models import Department, System, Token
from drd.catalog.types import utcnow
from drd.errors import UserError
from drd.secrets import Secret
from drd.services.enrollment_token import token_state
from drd.services.refusals import NotAuthenticated

log = logging.getLogger("drd.tokens")

PEOPLE_ROLES = ("admin", "operator", "owner")
"""The roles ``drd token create`` gives."""
TOKEN_BYTES = 32
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class Principal:
    """Who a bearer token speaks for, and what it may see and do (pure decisions)."""

    token_id: int
    name: str
    role: str
    departments: tuple[str, ...] = ()
    systems: tuple[str, ...] = ()

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"token:{self.name}"

    @property
    def reads_everything(self) -> bool:
        return self.role in ("admin", "operator")

    @property
    def may_change(self) -> bool:
        """Changes to the centre (stores, policies, tokens) are for admins alone."""
        return self.role == "admin"

    def may_read(self, department: str, system: str) -> bool:
        """Whether this caller may see ``system`` of ``department``."""
        if self.reads_everything:
            return True
        if self.role == "owner":
            return department in self.departments or system in self.systems
        if self.role == "agent":
            return system in self.systems
        return False

    def may_request(self, department: str, system: str) -> bool:
        """Whether this caller may ask for a backup or a restore of ``system``."""
        if self.role == "admin":
            return True
        return self.role == "owner" and self.may_read(department, system)


@dataclass(frozen=True)
class TokenView:
    """A token as ``drd token list`` shows it (never its value)."""

    id: int
    name: str
    role: str
    departments: tuple[str, ...]
    systems: tuple[str, ...]
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    state: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "role": self.role,
                "departments": list(self.departments), "systems": list(self.systems),
                "created_at": self.created_at.isoformat(),
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
                "state": self.state}


@dataclass
class Created:
    """A new token: its ``view`` and its value, to be shown once."""

    view: TokenView
    token: Secret = field(repr=False)


def check_scope(role: str, departments: Sequence[str], systems: Sequence[str]) -> None:
    """Refuse scopes that make no sense for ``role`` (pure).

    Raises :class:`UserError`: an unknown role, an ``owner`` without a department or a
    system, an ``admin``/``operator`` with one (they read everything).
    """
    if role not in PEOPLE_ROLES:
        raise UserError(f"--role: {role!r} is not one of {', '.join(PEOPLE_ROLES)} (agents "
                        "get their tokens by enrolling)")
    if role == "owner" and not departments and not systems:
        raise UserError("an owner token needs --department D or --system S (repeatable): "
                        "the systems it may see")
    if role != "owner" and (departments or systems):
        raise UserError(f"a {role} token reads every system: --department and --system are "
                        "for owner tokens")


def _view(token: Token, now: dt.datetime) -> TokenView:
    return TokenView(id=token.id, name=token.name, role=token.role,
                     departments=tuple(token.departments or ()),
                     systems=tuple(token.systems or ()), created_at=token.created_at,
                     expires_at=token.expires_at, revoked_at=token.revoked_at,
                     state=token_state(expires_at=token.expires_at, used_at=token.used_at,
                                       revoked_at=token.revoked_at, now=now))


def create_token(catalog: Catalog, *, role: str, name: str | None = None,
                 departments: Iterable[str] = (), systems: Iterable[str] = (),
                 expires_in: dt.timedelta | None = None, actor: str = "cli",
                 now: dt.datetime | None = None) -> Created:
    """Create a token; return it with its value (shown once, never stored).

    ``name`` defaults to ``<role>-<n>``. Raises :class:`UserError` for a bad role or
    scope (:func:`check_scope`), a bad or taken name, an unknown department or system,
    or an expiry not in the future.
    """
    departments, systems = sorted(set(departments)), sorted(set(systems))
    check_scope(role, departments, systems)
    if expires_in is not None and expires_in <= dt.timedelta(0):
        raise UserError("--expires: must be in the future")
    if name is not None and not _NAME.match(name):
        raise UserError(f"--name: {name!r} must be 1-63 of a-z 0-9 . _ -, starting with a "
                        "letter or digit")
    now = now or utcnow()
    value = Secret(secrets.token_urlsafe(TOKEN_BYTES))
    with catalog.session() as session:
        known = set(session.scalars(sa.select(Department.name).where(
            Department.name.in_(departments))))
        if unknown := [d for d in departments if d not in known]:
            raise UserError(f"no department named {', '.join(map(repr, unknown))} (see drd "
                            "status)")
        known = set(session.scalars(sa.select(System.name).where(System.name.in_(systems))))
        if unknown := [s for s in systems if s not in known]:
            raise UserError(f"no system named {', '.join(map(repr, unknown))} (see drd "
                            "status)")
        if name is None:
            count = session.scalar(sa.select(sa.func.count()).select_from(Token)
                                   .where(Token.role == role)) or 0
            name = f"{role}-{count + 1}"
        if session.scalar(sa.select(Token.id).where(Token.name == name)) is not None:
            raise UserError(f"a token named {name!r} exists already: choose another --name")
        token = Token(name=name, role=role, token_hash=Token.hash_token(value),
                      departments=departments, systems=systems, created_at=now,
                      expires_at=now + expires_in if expires_in is not None else None)
        session.add(token)
        session.flush()
        audit.record(session, actor, "token.create", name, role=role,
                     departments=departments, systems=systems,
                     expires_at=token.expires_at.isoformat() if token.expires_at else None)
        view = _view(token, now)
    log.info("token %s (%s) created", name, role)
    return Created(view=view, token=value)


def list_tokens(catalog: Catalog, *, roles: Sequence[str] = PEOPLE_ROLES,
                include_revoked: bool = False, now: dt.datetime | None = None
                ) -> list[TokenView]:
    """The tokens of ``roles``, oldest first (revoked ones only when asked)."""
    now = now or utcnow()
    with catalog.session() as session:
        query = sa.select(Token).where(Token.role.in_(list(roles))).order_by(Token.id)
        if not include_revoked:
            query = query.where(Token.revoked_at.is_(None))
        return [_view(token, now) for token in session.scalars(query)]


def revoke_token(catalog: Catalog, name: str, *, actor: str = "cli",
                 now: dt.datetime | None = None) -> TokenView:
    """Revoke the token named ``name`` (or with that id); at once, for every request after.

    Raises :class:`UserError` for no such token; revoking twice changes nothing.
    """
    now = now or utcnow()
    with catalog.session() as session:
        query = sa.select(Token).where(Token.name == name)
        if name.isdigit():
            query = sa.select(Token).where(sa.or_(Token.name == name, Token.id == int(name)))
        token = session.scalar(query)
        if token is None:
            raise UserError(f"no token named {name!r} (see drd token list)")
        if token.revoked_at is None:
            token.revoked_at = now
            audit.record(session, actor, "token.revoke", token.name, role=token.role)
        return _view(token, now)


# built once: every API request looks its token up
TOKEN_BY_HASH = sa.select(Token).where(Token.token_hash == sa.bindparam("token_hash",
                                                                       type_=sa.String()))


def authenticate(catalog: Catalog, credential: str | None,
                 now: dt.datetime | None = None) -> Principal:
    """Resolve a bearer token to its :class:`Principal`.

    Raises :class:`NotAuthenticated` for no token, an unknown, revoked or expired one,
    and for a one-time enrollment token (it is for ``drd-agent enroll`` alone).
    """
    if not credential or not credential.strip():
        raise NotAuthenticated("no credential: send 'Authorization: Bearer <token>' (drd "
                               "token create)")
    now = now or utcnow()
    with catalog.read_session() as session:
        token = session.scalar(TOKEN_BY_HASH, {"token_hash": Token.hash_token(credential.strip())})
        if token is None or token.role == "enrollment":
            raise NotAuthenticated("unknown token: this centre did not issue it")
        state = token_state(expires_at=token.expires_at, used_at=None,
                            revoked_at=token.revoked_at, now=now)
        if state != "valid":
            raise NotAuthenticated(f"this token is {state}: ask an administrator for a "
                                   "new one (drd token create)")
        return Principal(token_id=token.id, name=token.name, role=token.role,
                         departments=tuple(token.departments or ()),
                         systems=tuple(token.systems or ()))
