"""``GET /v1/status``: the centre's verdict and counts, then every visible system (paged)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from drd.api.auth import Caller
from drd.api.context import Context
from drd.api.pagination import (
    DEFAULT_LIMIT,
    READ,
    Cursor,
    Departments,
    Limit,
    paged,
    read_cache,
)
from drd.services import views

router = APIRouter(tags=["status"])


@router.get("/status", response_model=views.StatusPage, responses=READ)
def status(caller: Caller, context: Context, request: Request, department: Departments,
           limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> views.StatusPage:
    """The verdict (ok, warning, critical) and counts over every system the token may see,
    then one page of systems by name: last good snapshot and its age against the RPO,
    copies per store, replication watermarks and lag, verification coverage, last drill.

    The counts are computed at most every 15 seconds (``computed_at``), a page of systems
    at most every 5 seconds (``page_read_at``): many operators' tools polling the status
    share one reading. A system's own page (``/v1/systems/{name}``) is read each time.
    """
    return paged(lambda: views.status_summary(
        context.catalog, caller, departments=department, limit=limit, cursor=cursor,
        now=context.now(), cache=read_cache(request)))
