"""``GET /v1/stores``: every store's state, replication lag and verification coverage."""

from __future__ import annotations

from fastapi import APIRouter, Request

from drd.api.auth import Caller
from drd.api.context import Context
from drd.api.pagination import DEFAULT_LIMIT, EVERYTHING, Cursor, Limit, paged, read_cache
from drd.services import views
from drd.services.paging import Page

router = APIRouter(tags=["stores"])


@router.get("/stores", response_model=Page[views.StoreView], responses=EVERYTHING)
def stores(caller: Caller, context: Context, request: Request, limit: Limit = DEFAULT_LIMIT,
           cursor: Cursor = None) -> Page[views.StoreView]:
    """The stores by name: up, down or unknown (the daemon's last probe), the objects and
    bytes they lack, the oldest replication watermark, verification coverage.

    Stores are shared by every department: admins and operators only. The coverage sums
    up the whole verification ledger, so it is kept for a few seconds.
    """
    return paged(lambda: views.list_stores(context.catalog, caller, limit=limit,
                                           cursor=cursor, now=context.now(),
                                           cache=read_cache(request)))
