"""Bearer-token dependencies: who is calling, and for which system.

``Authorization: Bearer <token>``; the catalog keeps only tokens' hashes. An agent
token resolves to exactly one enrolled system (:func:`current_agent`); handlers take
the system from it, never from the request, so an agent reaches only its own system.
Operators' roles will get dependencies of their own here.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from drd.api.context import Context
from drd.services.agents import AgentIdentity, authenticate_agent

_bearer = HTTPBearer(auto_error=False, description="the agent token from enrollment")


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
