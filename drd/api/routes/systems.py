"""``/v1/systems``: systems, one system, its snapshots, and asking for a backup now."""

from __future__ import annotations

from fastapi import APIRouter, status

from drd.api.auth import Caller
from drd.api.context import Context
from drd.api.pagination import (
    DEFAULT_LIMIT,
    READ,
    SYSTEM,
    Cursor,
    Departments,
    ErrorDetail,
    Limit,
    SystemName,
    paged,
)
from drd.services import views
from drd.services.paging import Page

router = APIRouter(prefix="/systems", tags=["systems"])


@router.get("", response_model=Page[views.SystemSummary], responses=READ)
def systems(caller: Caller, context: Context, department: Departments,
            limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> Page[views.SystemSummary]:
    """The systems the token may see, by name, with their standing against the RPO."""
    return paged(lambda: views.list_systems(context.catalog, caller, departments=department,
                                            limit=limit, cursor=cursor, now=context.now()))


@router.get("/{name}", response_model=views.SystemOverview, responses=SYSTEM)
def system(name: SystemName, caller: Caller, context: Context) -> views.SystemOverview:
    """One system: its standing, copies per store, watermarks, coverage, last drill."""
    return views.system_overview(context.catalog, caller, name, now=context.now())


@router.get("/{name}/snapshots", response_model=Page[views.SnapshotView], responses=SYSTEM)
def snapshots(name: SystemName, caller: Caller, context: Context,
              limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> Page[views.SnapshotView]:
    """The system's snapshots, newest first, with each copy's state per store."""
    return paged(lambda: views.list_snapshots(context.catalog, caller, name, limit=limit,
                                              cursor=cursor))


@router.post("/{name}/backup-now", response_model=views.BackupRequested,
             status_code=status.HTTP_202_ACCEPTED,
             responses=SYSTEM | {
                 403: {"description": "the token may not see the system, or may not ask for "
                                      "its backups (operators and agents read only)",
                       "model": ErrorDetail},
                 409: {"description": "the system is not enrolled", "model": ErrorDetail}})
def backup_now(name: SystemName, caller: Caller, context: Context) -> views.BackupRequested:
    """Ask the system's agent to back up at its next heartbeat (admins and the system's
    owners); the audit log names the token."""
    return views.request_backup_now(context.catalog, caller, name, now=context.now())
