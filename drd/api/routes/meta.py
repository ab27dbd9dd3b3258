"""Unauthenticated routes: liveness, readiness and the CA certificate agents pin."""

from __future__ import annotations

from fastapi import APIRouter, Response

from drd.api.context import Context
from drd.api.errors import detail
from drd.errors import DrdError
from drd.secrets import mask

router = APIRouter(tags=["meta"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up and serving: ``{"status": "ok"}``."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "the catalog cannot be used"}})
def readyz(context: Context):
    """The catalog is reachable and at this drd's schema: ``{"status": "ok", "schema"}``.

    503 with the reason otherwise (the database down, or a schema to migrate).
    """
    try:
        revision = context.catalog.check()
    except DrdError as problem:
        return detail(503, f"not ready: {mask(str(problem))}")
    return {"status": "ok", "schema": revision}


@router.get("/v1/ca.pem", response_class=Response,
            responses={200: {"content": {"application/x-pem-file": {}}}})
def ca_certificate(context: Context) -> Response:
    """The centre's CA certificate (PEM). Agents check its SHA-256 against their token."""
    return Response(context.keystore.ca_certificate_pem(),
                    media_type="application/x-pem-file")
