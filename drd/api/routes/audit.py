"""``GET /v1/audit``: the audit log, newest first (admins and operators)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from drd.api.auth import Caller
from drd.api.context import Context
from drd.api.pagination import DEFAULT_LIMIT, EVERYTHING, Cursor, Limit, paged
from drd.services import activity
from drd.services.paging import Page

router = APIRouter(tags=["audit"])


@router.get("/audit", response_model=Page[activity.AuditItem], responses=EVERYTHING)
def audit(caller: Caller, context: Context,
          action: Annotated[str | None, Query(
              pattern=r"^[a-z_]+(\.[a-z_]+)*\.?$", max_length=100,
              description="a dotted verb (system.backup_now), or a prefix ending in '.' "
                          "(token.)")] = None,
          limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> Page[activity.AuditItem]:
    """Who did what to what, and when: newest first."""
    return paged(lambda: activity.list_audit(context.catalog, caller, action=action,
                                             limit=limit, cursor=cursor))
