"""Drills as the read API shows them: lists, one drill, and its signed report export.

Scoped like :mod:`drd.services.views`: a drill belongs to its system, so a caller sees
the drills of the systems it may see; a drill of another system, by id, is refused
(:class:`~drd.services.refusals.NotAllowed`) and, for callers that do not read
everything, so is an unknown id, so ids do not reveal other departments' drills.

:func:`export_report` gives the same bytes ``drd drill report`` exports (JSON or the
HTML page) and their detached signature document, after checking the catalog's own
signature of the report as the command does.
"""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import Field

from drd.catalog import Catalog
from drd.catalog.models import Department, Drill, System
from drd.catalog.models import Store as StoreRow
from drd.crypto.errors import BadSignature
from drd.services import status as status_rules
from drd.services.paging import DEFAULT_LIMIT, Page, decode_cursor, page_of
from drd.services.refusals import Conflict, NotAllowed, NotFound
from drd.services.tokens import Principal
from drd.services.views import DrillSummary, drill_summaries, find_system, visible_systems
from restore_drills.html import render_html
from restore_drills.report import json_export, verify_report_signature, write_signed_export

HISTORY_LENGTH = 100
EXPORT_FORMATS = ("json", "html")


class DrillDetail(DrillSummary):
    """A drill with its reasons and its signed report (null while it runs)."""

    reasons: list[str] = Field(description="why it failed (empty when it passed)")
    report: dict[str, Any] | None


def list_drills(catalog: Catalog, principal: Principal, *, departments: Sequence[str] = (),
                system: str | None = None, limit: int = DEFAULT_LIMIT,
                cursor: str | None = None) -> Page[DrillSummary]:
    """The drills of the visible systems (of ``system`` alone when given), newest first.

    Raises :class:`NotFound`/:class:`NotAllowed` for a ``system`` the caller may not see,
    :class:`~drd.services.paging.InvalidCursor`.
    """
    with catalog.read_session() as session:
        where = Drill.system_id.in_(sa.select(System.id).where(
            visible_systems(principal, departments)))
        if system is not None:
            row, _ = find_system(session, principal, system)
            where = sa.and_(where, Drill.system_id == row.id)
        if cursor is not None:
            (after,) = decode_cursor(cursor, (int,))
            where = sa.and_(where, Drill.id < after)
        rows = drill_summaries(session, where, status_rules.policy_rules(session),
                               limit=limit + 1)
    items, following = page_of([summary for _, summary in rows], limit,
                               lambda summary: (summary.id,))
    return Page[DrillSummary](items=items, next=following)


def _visible_drill(session, principal: Principal, drill_id: int) -> Drill:
    row = session.execute(
        sa.select(Drill, System.name, Department.name)
        .join(System, System.id == Drill.system_id)
        .join(Department, Department.id == System.department_id)
        .where(Drill.id == drill_id)).first()
    if row is None and principal.reads_everything:
        raise NotFound(f"no drill #{drill_id} (GET /v1/drills lists them)")
    if row is None or not principal.may_read(row[2], row[1]):
        raise NotAllowed(f"this token may not see drill #{drill_id}")
    return row[0]


def drill_detail(catalog: Catalog, principal: Principal, drill_id: int) -> DrillDetail:
    """One drill with its report. Raises :class:`NotFound` or :class:`NotAllowed`."""
    with catalog.read_session() as session:
        drill = _visible_drill(session, principal, drill_id)
        ((_, summary),) = drill_summaries(session, Drill.id == drill.id,
                                          status_rules.policy_rules(session))
        report = dict(drill.report) if drill.report is not None else None
    reasons = [str(reason) for reason in (report or {}).get("reasons") or []]
    return DrillDetail(**summary.model_dump(), reasons=reasons, report=report)


@dataclass(frozen=True)
class ReportExport:
    """An exported report: its bytes, their media type, and the detached signature
    document (what ``FILE.sig`` holds) base64-encoded."""

    content: bytes
    media_type: str
    signature: str


def export_report(catalog: Catalog, principal: Principal, drill_id: int, export_format: str,
                  *, public_key: Ed25519PublicKey, private_key: Ed25519PrivateKey
                  ) -> ReportExport:
    """Drill ``drill_id``'s report as ``drd drill report --format FORMAT -o FILE`` writes
    it, with the signature it writes to ``FILE.sig``.

    Raises :class:`NotFound`/:class:`NotAllowed` (as :func:`drill_detail`),
    :class:`Conflict` for a drill still running, one without a signature, or one whose
    report no longer matches the signature made when it ran (the row was changed).
    """
    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}")
    with catalog.read_session() as session:
        drill = _visible_drill(session, principal, drill_id)
        if drill.passed is None or drill.report is None:
            raise Conflict(f"drill #{drill_id} is still running: export it once it has "
                           "finished")
        if drill.signature is None:
            raise Conflict(f"drill #{drill_id} has no signature in the catalog; refusing to "
                           "export an unsigned report")
        report, signature = dict(drill.report), drill.signature
        history = []
        if export_format == "html":
            rows = session.execute(
                sa.select(Drill.id, StoreRow.name, Drill.started_at, Drill.passed,
                          Drill.rto_seconds)
                .join(StoreRow, StoreRow.id == Drill.store_id)
                .where(Drill.system_id == drill.system_id)
                .order_by(Drill.started_at.desc(), Drill.id.desc())
                .limit(HISTORY_LENGTH)).all()
            history = [{"id": row.id, "store": row.name,
                        "started_at": row.started_at.isoformat(), "passed": row.passed,
                        "rto_seconds": row.rto_seconds} for row in reversed(rows)]
    try:
        verify_report_signature(public_key, report, signature)
    except BadSignature:
        raise Conflict(f"drill #{drill_id}: the report in the catalog does not match the "
                       "signature made when the drill ran (the row was changed since); "
                       "refusing to export it") from None
    if export_format == "json":
        content, media_type = json_export(report), "application/json"
    else:
        content = (render_html(report, history) + "\n").encode()
        media_type = "text/html; charset=utf-8"
    return ReportExport(content=content, media_type=media_type,
                        signature=base64.b64encode(detached_signature(private_key, content))
                        .decode())


def detached_signature(private_key: Ed25519PrivateKey, content: bytes) -> bytes:
    """The detached signature document of ``content``, byte for byte what
    :func:`~restore_drills.report.write_signed_export` writes next to the file."""
    with tempfile.TemporaryDirectory(prefix="drd-report-") as directory:
        path = Path(directory) / "report"
        signature_path = write_signed_export(private_key, content, path)
        return signature_path.read_bytes()
