"""``GET /v1/alerts``: open alerts (or all), newest first."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from drd.api.auth import Caller
from drd.api.context import Context
from drd.api.pagination import DEFAULT_LIMIT, READ, Cursor, Departments, Limit, paged
from drd.services import activity
from drd.services.paging import Page

router = APIRouter(tags=["alerts"])


@router.get("/alerts", response_model=Page[activity.AlertItem], responses=READ)
def alerts(caller: Caller, context: Context, department: Departments,
           state: Annotated[Literal["open", "all"], Query(
               description="open alerts only, or resolved ones too")] = "open",
           limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> Page[activity.AlertItem]:
    """Alerts, newest first; owners see those of their systems only."""
    return paged(lambda: activity.list_alerts(context.catalog, caller, state=state,
                                              departments=department, limit=limit,
                                              cursor=cursor))
