"""An enrolled agent's calls; each acts on the system its bearer token belongs to."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status
from starlette.concurrency import run_in_threadpool

from drd.api.auth import Agent
from drd.api.bodies import read_json_model, request_body
from drd.api.context import Context
from drd.services import agents, snapshots
from drd.services.protocol import (
    Assignment,
    HeartbeatRequest,
    HeartbeatResponse,
    ManifestUpload,
    SnapshotAccepted,
    SnapshotReport,
)

router = APIRouter(prefix="/agent", tags=["agent"])

_AUTH = {
    401: {"description": "no agent token, or one the centre does not accept"},
    403: {"description": "not an agent token, or the system is not enrolled"},
}
_BODY = {422: {"description": "the body does not fit the protocol"}}
_LARGE = {413: {"description": "the body is larger than this route takes"},
          429: {"description": "the centre reads as many large bodies as it allows: send "
                               "it again later (Retry-After)"}}
SnapshotId = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$",
                                 description="restic's full snapshot id")]


@router.get("/assignment", response_model=Assignment, responses=_AUTH)
def assignment(agent: Agent, context: Context) -> Assignment:
    """The system's policy, its stores with their keys, and the escrow public key."""
    return agents.assignment_for(context.catalog, agent, context.master_key,
                                 context.escrow_public_key_pem())


@router.post("/heartbeat", response_model=HeartbeatResponse, responses=_AUTH | _BODY)
def heartbeat(body: HeartbeatRequest, agent: Agent, context: Context) -> HeartbeatResponse:
    """Record that the agent is alive; ``backup_now`` is true once after drd backup-now."""
    return agents.record_heartbeat(context.catalog, agent, body, now=context.now())


@router.post("/snapshots", response_model=SnapshotAccepted,
             status_code=status.HTTP_201_CREATED,
             responses=_AUTH | _BODY | _LARGE | {
                 200: {"description": "the report (or the snapshot) was recorded before",
                       "model": SnapshotAccepted},
                 400: {"description": "a store the centre does not know"},
                 409: {"description": "the report_id belongs to another system"}})
def report_snapshot(body: SnapshotReport, agent: Agent, context: Context,
                    response: Response) -> SnapshotAccepted:
    """Record a snapshot and its copy state per store; 200 for a repeated report."""
    accepted = snapshots.record_report(context.catalog, agent, body, now=context.now())
    if accepted.duplicate:
        response.status_code = status.HTTP_200_OK
    return accepted


@router.put("/snapshots/{snapshot_id}/manifest", status_code=status.HTTP_204_NO_CONTENT,
            response_class=Response, openapi_extra=request_body(ManifestUpload),
            responses=_AUTH | _BODY | _LARGE | {
                400: {"description": "the signature or digest does not verify"},
                404: {"description": "no such snapshot of this system"},
                409: {"description": "a different manifest was recorded before"}})
async def put_manifest(snapshot_id: SnapshotId, request: Request, agent: Agent,
                       context: Context) -> Response:
    """Keep the snapshot's manifest once its Ed25519 signature has been verified, and
    record the digest of the sealed manifest the agent stored (``sealed``), once the
    centre's escrow key seals the manifest again to that very object.
    \f
    (``/openapi.json`` shows the text above the form feed.)

    Memory: the body is read by :func:`~drd.api.bodies.read_json_model`, so that while
    the manifest is checked and stored the centre holds its parsed form (about 2.7 times
    the body), its canonical bytes (once, twice while they are made) and the catalog's
    copy while it is inserted (once on PostgreSQL, twice on SQLite), not the body as well.
    Measured with a 254 MiB manifest (1.38 million files): +1,610 MiB at peak on SQLite
    (+2,000 MiB before, when FastAPI read the body), +1,300 MiB on PostgreSQL (+1,630).
    Bodies this large are admitted within :data:`~drd.api.limits.LARGE_BODY_BUDGET`.
    """
    upload = await read_json_model(request, ManifestUpload)
    await run_in_threadpool(snapshots.store_manifest, context.catalog, agent, snapshot_id,
                            upload.manifest, upload.signature, now=context.now(),
                            sealed=upload.sealed, keystore=context.keystore)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
