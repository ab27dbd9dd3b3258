"""``GET /v1/jobs``: recent job runs (replication, verification, retention, drills)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from drd.api.auth import Caller
from drd.api.context import Context
from drd.api.pagination import DEFAULT_LIMIT, READ, Cursor, Departments, Limit, paged
from drd.catalog.models import JOB_KINDS
from drd.services import activity
from drd.services.paging import Page

router = APIRouter(tags=["jobs"])

Kind = Literal[JOB_KINDS]  # type: ignore[valid-type]
Outcome = Annotated[str | None, Query(
    pattern=r"^[a-z_]{1,32}$",
    description="succeeded, failed, partial, ...; 'running' for runs not ended")]


@router.get("/jobs", response_model=Page[activity.JobRunView], responses=READ)
def jobs(caller: Caller, context: Context, department: Departments,
         outcome: Outcome = None,
         kind: Annotated[Kind | None, Query(description="the job's kind")] = None,
         limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> Page[activity.JobRunView]:
    """Job runs, newest first; owners see the runs of their systems only."""
    return paged(lambda: activity.list_job_runs(
        context.catalog, caller, departments=department, outcome=outcome, kind=kind,
        limit=limit, cursor=cursor))
