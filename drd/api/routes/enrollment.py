"""Enrollment: the token in the body is the credential (``docs/agent-protocol.md``)."""

from __future__ import annotations

from fastapi import APIRouter, status

from drd.api.context import Context
from drd.services import enrollment
from drd.services.protocol import (
    EnrollPreviewRequest,
    EnrollPreviewResponse,
    EnrollRequest,
    EnrollResponse,
)

router = APIRouter(prefix="/agent/enroll", tags=["enrollment"])

_REFUSALS = {
    400: {"description": "a bad agent key or sealed password"},
    401: {"description": "a forged, unknown, replaced or expired token"},
    409: {"description": "the token was used, or the system is enrolled already"},
    422: {"description": "the body does not fit the protocol"},
}


@router.post("/preview", response_model=EnrollPreviewResponse, responses=_REFUSALS)
def preview(body: EnrollPreviewRequest, context: Context) -> EnrollPreviewResponse:
    """What enrolling would give (system, department, assignment); the token stays unused."""
    return enrollment.preview(context.catalog, body.token, context.master_key,
                              context.escrow_public_key_pem(), now=context.now())


@router.post("", response_model=EnrollResponse, status_code=status.HTTP_201_CREATED,
             responses=_REFUSALS)
def enroll(body: EnrollRequest, context: Context) -> EnrollResponse:
    """Consume the token, enroll the system and return its agent token (shown once)."""
    enrolled = enrollment.enroll(context.catalog, body, now=context.now(),
                                 master_key=context.master_key)
    return EnrollResponse(system=enrolled.system, department=enrolled.department,
                          agent_token=enrolled.agent_token.reveal())
