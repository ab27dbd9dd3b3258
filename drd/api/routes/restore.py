"""``POST /v1/systems/{name}/restore``: a restore streamed to the caller as a tar archive
(``drd --server URL restore``), for the system's owners and administrators."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from drd.api.auth import Caller
from drd.api.context import Context
from drd.api.pagination import SYSTEM, ErrorDetail, SystemName
from drd.names import NAME_PATTERN
from drd.services import views
from drd.services.refusals import NotAllowed
from drd.services.restore.centre import restore_system
from drd.services.restore.engine import RestoreRequest
from drd.services.restore.plan import parse_at
from drd.services.restore.remote import Slot, scratch_directory, tar_stream
from drd.services.restore.staging import remove_tree

router = APIRouter(prefix="/systems", tags=["systems"])

IncludePath = Annotated[str, Field(min_length=1, max_length=4096)]


class RestoreBody(BaseModel):
    """What to restore, as ``drd restore`` takes it (``target`` is the caller's own)."""

    snapshot: str | None = Field(None, pattern=r"^(latest|[0-9a-f]{4,64})$",
                                 description="latest (the default), a full id or a unique "
                                             "prefix")
    at: str | None = Field(None, min_length=1, max_length=64,
                           description="the newest good snapshot at or before: ISO 8601, a "
                                       "date, or an age ('90m ago', '2d ago')")
    store: str | None = Field(None, pattern=NAME_PATTERN,
                              description="that store only (default: the healthiest first, "
                                          "then the others)")
    include: list[IncludePath] = Field(default_factory=list, max_length=100,
                                       description="absolute paths in the snapshot; what "
                                                   "lies beneath each comes too")
    verify: bool = Field(False, description="restic re-reads every restored file")


@router.post(
    "/{name}/restore", response_class=StreamingResponse,
    responses=SYSTEM | {
        200: {"description": "the restored tree as a tar archive (PAX); the summary "
                             "(snapshot, store, attempts, files, bytes) in X-Drd-Restore",
              "content": {"application/x-tar": {}}},
        400: {"description": "no such snapshot, a time before the first one, an include "
                             "that matches nothing, a store the system is not kept in",
              "model": ErrorDetail},
        403: {"description": "the token may not see the system, or may not restore it "
                             "(operators and agents read only)", "model": ErrorDetail},
        429: {"description": "as many restores run on the centre as it allows (2): try "
                             "again later", "model": ErrorDetail},
        503: {"description": "every store failed", "model": ErrorDetail}})
def restore(name: SystemName, body: RestoreBody, caller: Caller,
            context: Context) -> StreamingResponse:
    """Restore the system's snapshot on the centre (the healthiest store first, falling
    back to the next) and stream the restored tree; audited with the token's name."""
    with context.catalog.read_session() as session:
        _, department = views.find_system(session, caller, name)
    if not caller.may_request(department, name):
        raise NotAllowed(f"this token ({caller.role}) may not restore {name!r}: owners of "
                         "the system and administrators may")
    moment = parse_at(body.at, context.now()) if body.at is not None else None
    slot = Slot()  # 429 when as many restores run already
    scratch = None
    try:
        scratch = scratch_directory(context.config.home)
        result = restore_system(
            context.catalog, context.master_key, context.keystore, context.config, name,
            RestoreRequest(target=scratch / "tree", snapshot=body.snapshot, at=moment,
                           store=body.store, includes=tuple(body.include),
                           verify=body.verify),
            actor=caller.actor, now=context.now())
    except BaseException:
        if scratch is not None:
            remove_tree(scratch)
        slot.release()
        raise

    def finished() -> None:
        remove_tree(scratch)
        slot.release()

    summary = result.as_dict() | {"target": None}
    return StreamingResponse(
        tar_stream(scratch / "tree", on_end=finished), media_type="application/x-tar",
        headers={"X-Drd-Restore": json.dumps(summary, default=_json_default),
                 "Content-Disposition": f'attachment; filename="{name}.tar"'},
        # also when the client went away before the stream began
        background=BackgroundTask(finished))


def _json_default(value):
    """Times in the summary header as ISO 8601."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)
