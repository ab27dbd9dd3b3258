"""A drill report as one self-contained HTML page, for administrators and auditors.

:func:`render_html` is pure: the report and the system's drill history in, a string out.
The page holds everything it shows (inline CSS, inline SVG charts from
:mod:`restore_drills.charts`): no script, font, stylesheet or image is fetched, so it
opens the same offline, in a mail attachment or in ten years. The template is rendered
with autoescaping on; only the charts, which escape their own text, go in unescaped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
from markupsafe import Markup

from restore_drills import charts
from restore_drills.report import REPORT_SCHEMA

AFFECTED_FILES_SHOWN = 100
TEMPLATE = "report.html.j2"
VERIFY_COMMAND = "drd drill verify-report"

_environment = jinja2.Environment(
    loader=jinja2.PackageLoader("restore_drills", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def human_time(value: str | None) -> str:
    """``2026-11-27 19:00:00 UTC`` from an ISO 8601 string; other text is shown as given."""
    if not value:
        return "-"
    try:
        moment = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return str(value)
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_environment.filters["duration"] = charts.human_duration
_environment.filters["when"] = human_time


def _target_row(name: str, measured: float | None, target: float | None) -> dict[str, Any]:
    if measured is None:
        state = "not measured"
    elif target is None:
        state = "no target"
    else:
        state = "within target" if measured <= target else "OVER TARGET"
    return {"name": name, "measured": measured, "target": target, "state": state,
            "ok": measured is not None and (target is None or measured <= target)}


def _phase_rows(phases: Mapping[str, float]) -> list[dict[str, Any]]:
    total = sum(phases.values()) or 1.0
    return [{"name": name, "seconds": seconds, "percent": 100.0 * seconds / total}
            for name, seconds in phases.items()]


def render_html(report: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> str:
    """The HTML page of ``report`` (schema 1) with ``history`` charted.

    ``history`` is the system's drills, oldest first, as described in
    :mod:`restore_drills.charts`. Missing optional parts of the report (no checks yet,
    no posture) show as such instead of failing. Raises ``jinja2.TemplateNotFound`` only
    if the package is installed without its template.
    """
    targets = report.get("targets") or {}
    affected = list(report.get("affected_files") or [])
    return _environment.get_template(TEMPLATE).render(
        report=report,
        schema=report.get("schema", REPORT_SCHEMA),
        passed=report.get("passed"),
        checks=[{"name": name, **check} for name, check in (report.get("checks") or {}).items()],
        phases=_phase_rows(report.get("phases") or {}),
        targets=[_target_row("RTO", report.get("rto_seconds"), targets.get("rto_seconds")),
                 _target_row("RPO", report.get("rpo_seconds"), targets.get("rpo_seconds"))],
        posture=report.get("posture"),
        restore=report.get("restore"),
        affected_shown=affected[:AFFECTED_FILES_SHOWN],
        affected_count=len(affected),
        rto_chart=Markup(charts.rto_chart(history, targets.get("rto_seconds"))),
        pass_fail_chart=Markup(charts.pass_fail_chart(history)),
        history_count=len(history),
        versions=report.get("versions") or {},
        verify_command=VERIFY_COMMAND,
    )
