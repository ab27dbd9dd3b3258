"""Bearer-token dependencies: who is calling, and for which system.

``Authorization: Bearer <token>``; the catalog keeps only tokens' hashes. An agent
token resolves to exactly one enrolled system (:func:`current_agent`); handlers take
the system from it, never from the request, so an agent reaches only its own system.
People's tokens (``drd token create``) resolve to a
:class:`~drd.services.tokens.Principal` (:func:`current_principal`); handlers ask it what
the caller may read, request or change.

A request with a large body is authenticated once more before its body is read
(:mod:`drd.api.large_bodies`): :func:`bearer_check_for` says which of the two
dependencies a path's routes take, :func:`authenticate_headers` runs it on the headers
alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from drd.api.context import ApiContext, Context
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


BearerCheck = Callable[..., AgentIdentity | Principal]
"""One of the two dependencies above: :func:`current_agent` or :func:`current_principal`."""
AGENT_API = "/v1/agent/"
ENROLLMENT_API = "/v1/agent/enroll"
PEOPLE_API = "/v1/"
METRICS = "/metrics"


def bearer_check_for(path: str) -> BearerCheck | None:
    """The bearer-token dependency the routes under ``path`` take: :func:`current_agent`
    for the agent API, :func:`current_principal` for the rest of ``/v1`` and
    ``/metrics``, None where no route takes a bearer token (enrollment, whose token is in
    the body; the dashboard, whose login form carries the token). A unit test holds this
    against every route's own dependencies.
    """
    if path == ENROLLMENT_API or path.startswith(ENROLLMENT_API + "/"):
        return None
    if path.startswith(AGENT_API):
        return current_agent
    if path.startswith(PEOPLE_API) or path == METRICS:
        return current_principal
    return None


async def authenticate_headers(check: BearerCheck, request: Request,
                               context: ApiContext) -> AgentIdentity | Principal:
    """Run ``check`` on ``request``'s headers (and cookies) as FastAPI would, without the
    body; the catalog lookup runs in the thread pool, like the routes' own.

    Raises what ``check`` raises: :class:`~drd.services.refusals.NotAuthenticated`,
    :class:`~drd.services.refusals.NotAllowed`, or an
    :class:`~drd.errors.OperationError` when the catalog cannot be reached.
    """
    if check is current_agent:
        return await run_in_threadpool(current_agent, context, await _bearer(request))
    return await run_in_threadpool(current_principal, request, context,
                                   await _people_bearer(request))
