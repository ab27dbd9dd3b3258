"""``/v1/drills``: restore drills, one drill, and its signed report (JSON or HTML)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response

from drd.api.auth import Caller
from drd.api.context import Context
from drd.api.pagination import (
    DEFAULT_LIMIT,
    READ,
    Cursor,
    Departments,
    ErrorDetail,
    Limit,
    paged,
)
from drd.api.routes.dashboard import SECURITY_HEADERS
from drd.names import NAME_PATTERN
from drd.services import drill_views
from drd.services.paging import Page
from drd.services.views import DrillSummary

router = APIRouter(prefix="/drills", tags=["drills"])

SIGNATURE_HEADER = "X-Drd-Signature"
DrillId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the drill's id")]
ONE = READ | {
    403: {"description": "the drill belongs to a system the token may not see (for owners "
                         "and agents: also when there is no such drill)",
          "model": ErrorDetail},
    404: {"description": "no such drill (for callers that read everything)",
          "model": ErrorDetail},
}


@router.get("", response_model=Page[DrillSummary], responses=READ | {
    403: {"description": "the token may not see ?system=", "model": ErrorDetail},
    404: {"description": "no system has the name in ?system=", "model": ErrorDetail}})
def drills(caller: Caller, context: Context, department: Departments,
           system: Annotated[str | None, Query(pattern=NAME_PATTERN,
                                               description="only this system's")] = None,
           limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> Page[DrillSummary]:
    """Drills of the systems the token may see, newest first: verdict, RTO and RPO
    against the policy's targets."""
    return paged(lambda: drill_views.list_drills(
        context.catalog, caller, departments=department, system=system, limit=limit,
        cursor=cursor))


@router.get("/{drill_id}", response_model=drill_views.DrillDetail, responses=ONE)
def drill(drill_id: DrillId, caller: Caller, context: Context) -> drill_views.DrillDetail:
    """One drill, with its reasons and its report (null while it runs)."""
    return drill_views.drill_detail(context.catalog, caller, drill_id)


@router.get("/{drill_id}/report", response_class=Response, responses=ONE | {
    200: {"description": "the report, exactly as `drd drill report --format F -o FILE` "
                         "writes FILE; the header X-Drd-Signature holds FILE.sig in base64",
          "content": {"application/json": {"schema": {"type": "object"}},
                      "text/html": {"schema": {"type": "string"}}},
          "headers": {SIGNATURE_HEADER: {
              "description": "base64 of the detached signature document (FILE.sig): check "
                             "with `drd drill verify-report FILE --signature FILE.sig`",
              "schema": {"type": "string"}}}},
    409: {"description": "the drill still runs, or its report does not match the signature "
                         "made when it ran", "model": ErrorDetail}})
def report(drill_id: DrillId, caller: Caller, context: Context,
           format: Annotated[Literal["json", "html"], Query(  # noqa: A002 -- the API's name
               description="json or html")] = "json") -> Response:
    """The drill's signed report, as JSON or one self-contained HTML page."""
    export = drill_views.export_report(
        context.catalog, caller, drill_id, format,
        public_key=context.keystore.signing_public_key(),
        private_key=context.keystore.signing_private_key())
    # the HTML report opens by the dashboard's cookie, from its origin: the same rules
    headers = SECURITY_HEADERS if format == "html" else {}
    return Response(export.content, media_type=export.media_type,
                    headers={**headers, SIGNATURE_HEADER: export.signature})
