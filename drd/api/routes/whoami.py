"""``GET /v1/whoami``: what the presented token is and may see (any valid token)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from drd.api.auth import Caller

router = APIRouter(tags=["tokens"])


class WhoAmI(BaseModel):
    """A token's name, role and scope (never its value)."""

    name: str
    role: str
    departments: list[str]
    systems: list[str]
    reads_everything: bool
    may_change: bool


@router.get("/whoami", responses={401: {"description": "no valid token"}})
def whoami(caller: Caller) -> WhoAmI:
    """The calling token: name, role, the departments and systems it is scoped to."""
    return WhoAmI(name=caller.name, role=caller.role, departments=list(caller.departments),
                  systems=list(caller.systems), reads_everything=caller.reads_everything,
                  may_change=caller.may_change)
