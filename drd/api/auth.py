"""Bearer-token dependencies: who is calling, and for which system.

``Authorization: Bearer <token>``; the catalog keeps only tokens' hashes. An agent
token resolves to exactly one enrolled system (:func:`current_agent`); handlers take
the system from it, never from the request, so an agent reaches only its own system.
People's tokens (``drd token create``) resolve to a
:class:`~drd.services.tokens.Principal` (:func:`current_principal`); handlers ask it what
the caller may read, request or change.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from drd.api.context import Context
from drd.services.agents import AgentIdentity, authenticate_agent
from drd.services.tokens import Principal, authenticate

_bearer = HTTPBearer(auto_error=False, description="the agent token from enrollment")
_people_bearer = HTTPBearer(auto_error=False, scheme_name="token",
                            description="a token from drd token create (or an agent's)")


def current_agent(
    context: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> AgentIdentity:
    """FastAPI dependency: the authenticated agent's identity.

    Raises :class:`~drd.services.refusals.NotAuthenticated` (401) for a missing,
    unknown, revoked or expired token, :class:`~drd.services.refusals.NotAllowed` (403)
    for a token of another role or a system that is not enrolled.
    """
    return authenticate_agent(context.catalog,
                              credentials.credentials if credentials else None,
                              now=context.now())


Agent = Annotated[AgentIdentity, Depends(current_agent)]


SESSION_COOKIE = "drd_session"
"""The dashboard's login cookie (``POST /login``); it holds the token itself."""
COOKIE_METHODS = ("GET", "HEAD")


def current_principal(
    request: Request,
    context: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_people_bearer)],
) -> Principal:
    """FastAPI dependency: who the bearer token speaks for.

    Without an ``Authorization`` header, a GET or HEAD request may carry the token in
    the dashboard's :data:`SESSION_COOKIE` instead, so that links from the dashboard
    (a drill's report) open in the browser. Writes need the header: a cookie goes with
    every request a browser makes, a header only with those a client chose to sign, so
    no other site can make a logged-in browser change anything (no CSRF).

    Raises :class:`~drd.services.refusals.NotAuthenticated` (401) for a missing,
    unknown, revoked or expired token, or a one-time enrollment token.
    """
    credential = credentials.credentials if credentials else None
    if credential is None and request.method in COOKIE_METHODS:
        credential = request.cookies.get(SESSION_COOKIE)
    return authenticate(context.catalog, credential, now=context.now())


Caller = Annotated[Principal, Depends(current_principal)]
