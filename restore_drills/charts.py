"""Inline SVG charts of a system's drill history, for the HTML report.

Pure functions from a history to an SVG string: no I/O, no randomness, the same input
always gives the same bytes. A history is a list of dicts, oldest first::

    {"id": 12, "store": "region-b", "started_at": "2026-11-27T19:00:00+00:00",
     "passed": True | False | None, "rto_seconds": 12.5 | None}

``passed`` is ``None`` for a drill still running. Every text that comes from a user
(store names) is escaped; the SVGs use no scripts, fonts or external references.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

PASSED_COLOUR = "#1a7f37"
FAILED_COLOUR = "#cf222e"
RUNNING_COLOUR = "#8c959f"
LINE_COLOUR = "#0969da"
AXIS_COLOUR = "#57606a"

_WIDTH = 720
_RTO_HEIGHT = 240
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 64, 16, 16, 36
_GRID_LABEL_WIDTH = 150
_GRID_ROW = 22
_GRID_MAX_CELL = 16
_TARGET_SCALE = 4.0


def human_duration(seconds: float | None) -> str:
    """``12.5 s``, ``3m 20s``, ``4h``, ``2d 3h`` (``-`` for ``None``)."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds % 1 else f"{int(seconds)} s"
    total = int(round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    units = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    parts = [f"{value}{unit}" for value, unit in units if value]
    return " ".join(parts[:2])


def _attr(value: Any) -> str:
    return escape(str(value), quote=True)


def _colour(passed: bool | None) -> str:
    if passed is None:
        return RUNNING_COLOUR
    return PASSED_COLOUR if passed else FAILED_COLOUR


def _verdict(passed: bool | None) -> str:
    if passed is None:
        return "running"
    return "passed" if passed else "FAILED"


def _tooltip(drill: Mapping[str, Any]) -> str:
    return (f"drill #{drill.get('id')} on {drill.get('store')} at "
            f"{drill.get('started_at')}: {_verdict(drill.get('passed'))}, "
            f"RTO {human_duration(drill.get('rto_seconds'))}")


def _svg(width: int, height: int, label: str, body: list[str]) -> str:
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_attr(label)}" '
        'font-family="sans-serif" font-size="11">',
        f"<title>{escape(label)}</title>",
        *body,
        "</svg>",
    ])


def _empty(width: int, height: int, label: str, message: str) -> str:
    return _svg(width, height, label, [
        f'<text x="{width // 2}" y="{height // 2}" text-anchor="middle" '
        f'fill="{AXIS_COLOUR}">{escape(message)}</text>'])


def rto_chart(history: Sequence[Mapping[str, Any]], target_seconds: float | None) -> str:
    """RTO of each drill, oldest to newest, against the target (a dashed line).

    Points are evenly spaced in drill order (the dates of the first and last drill label
    the axis); failed drills are red, passed green, running grey. A drill without an RTO
    (stopped before the restore ended) is drawn as a cross on the axis. A target more
    than four times the slowest drill is named in words rather than drawn.
    """
    label = "RTO of each drill, oldest to newest"
    if not history:
        return _empty(_WIDTH, 80, label, "no drills yet")
    plot_width = _WIDTH - _MARGIN_LEFT - _MARGIN_RIGHT
    plot_height = _RTO_HEIGHT - _MARGIN_TOP - _MARGIN_BOTTOM
    values = [d["rto_seconds"] for d in history if d.get("rto_seconds") is not None]
    highest = max([*values, 1.0])
    # a target far above every drill would squash all points onto the axis: then the
    # scale follows the drills and the target is named above the plot instead
    target_on_scale = target_seconds is not None and target_seconds <= _TARGET_SCALE * highest
    top = max(highest, target_seconds if target_on_scale else 0.0) * 1.1
    bottom_y = _MARGIN_TOP + plot_height

    def x_of(index: int) -> float:
        if len(history) == 1:
            return _MARGIN_LEFT + plot_width / 2
        return _MARGIN_LEFT + plot_width * index / (len(history) - 1)

    def y_of(seconds: float) -> float:
        return _MARGIN_TOP + plot_height * (1 - seconds / top)

    body = [
        f'<line x1="{_MARGIN_LEFT}" y1="{bottom_y}" x2="{_MARGIN_LEFT + plot_width}" '
        f'y2="{bottom_y}" stroke="{AXIS_COLOUR}"/>',
        f'<line x1="{_MARGIN_LEFT}" y1="{_MARGIN_TOP}" x2="{_MARGIN_LEFT}" y2="{bottom_y}" '
        f'stroke="{AXIS_COLOUR}"/>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        seconds = top * fraction
        y = y_of(seconds)
        body.append(f'<text x="{_MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
                    f'fill="{AXIS_COLOUR}">{escape(human_duration(seconds))}</text>')
    if target_seconds is not None and not target_on_scale:
        body.append(f'<text x="{_MARGIN_LEFT + plot_width - 4}" y="{_MARGIN_TOP + 4}" '
                    f'text-anchor="end" fill="{FAILED_COLOUR}">RTO target '
                    f"{escape(human_duration(target_seconds))} (far above every drill)"
                    "</text>")
    if target_on_scale:
        y = y_of(target_seconds)
        body.append(f'<line x1="{_MARGIN_LEFT}" y1="{y:.1f}" x2="{_MARGIN_LEFT + plot_width}" '
                    f'y2="{y:.1f}" stroke="{FAILED_COLOUR}" stroke-dasharray="6 4">'
                    f"<title>RTO target {escape(human_duration(target_seconds))}</title>"
                    "</line>")
        body.append(f'<text x="{_MARGIN_LEFT + plot_width - 4}" y="{y - 4:.1f}" '
                    f'text-anchor="end" fill="{FAILED_COLOUR}">target '
                    f"{escape(human_duration(target_seconds))}</text>")
    line = [f"{x_of(i):.1f},{y_of(d['rto_seconds']):.1f}" for i, d in enumerate(history)
            if d.get("rto_seconds") is not None]
    if len(line) > 1:
        body.append(f'<polyline points="{" ".join(line)}" fill="none" '
                    f'stroke="{LINE_COLOUR}" stroke-width="1.5"/>')
    for index, drill in enumerate(history):
        colour = _colour(drill.get("passed"))
        x = x_of(index)
        tooltip = f"<title>{escape(_tooltip(drill))}</title>"
        if drill.get("rto_seconds") is None:
            body.append(f'<path d="M{x - 4:.1f},{bottom_y - 4} l8,8 m0,-8 l-8,8" '
                        f'stroke="{colour}" stroke-width="2">{tooltip}</path>')
        else:
            body.append(f'<circle cx="{x:.1f}" cy="{y_of(drill["rto_seconds"]):.1f}" r="4" '
                        f'fill="{colour}">{tooltip}</circle>')
    first, last = history[0].get("started_at", ""), history[-1].get("started_at", "")
    body.append(f'<text x="{_MARGIN_LEFT}" y="{_RTO_HEIGHT - 12}" fill="{AXIS_COLOUR}">'
                f"{escape(str(first)[:10])}</text>")
    if len(history) > 1:
        body.append(f'<text x="{_MARGIN_LEFT + plot_width}" y="{_RTO_HEIGHT - 12}" '
                    f'text-anchor="end" fill="{AXIS_COLOUR}">{escape(str(last)[:10])}</text>')
    return _svg(_WIDTH, _RTO_HEIGHT, label, body)


def pass_fail_chart(history: Sequence[Mapping[str, Any]]) -> str:
    """One row per store (by name), one cell per drill of that store, oldest first.

    Green passed, red failed, grey running; each cell's tooltip names the drill.
    """
    label = "Drill verdicts per store, oldest to newest"
    if not history:
        return _empty(_WIDTH, 40, label, "no drills yet")
    rows: dict[str, list[Mapping[str, Any]]] = {}
    for drill in history:
        rows.setdefault(str(drill.get("store")), []).append(drill)
    longest = max(len(drills) for drills in rows.values())
    cell = max(4, min(_GRID_MAX_CELL, (_WIDTH - _GRID_LABEL_WIDTH) // longest))
    height = _GRID_ROW * len(rows) + 8
    body: list[str] = []
    for row, name in enumerate(sorted(rows)):
        y = 4 + row * _GRID_ROW
        shown = name if len(name) <= 22 else name[:21] + "\u2026"
        body.append(f'<text x="{_GRID_LABEL_WIDTH - 8}" y="{y + 13}" text-anchor="end">'
                    f"<title>{escape(name)}</title>{escape(shown)}</text>")
        for column, drill in enumerate(rows[name]):
            x = _GRID_LABEL_WIDTH + column * cell
            body.append(f'<rect x="{x}" y="{y + 2}" width="{cell - 2}" height="{_GRID_ROW - 6}" '
                        f'fill="{_colour(drill.get("passed"))}">'
                        f"<title>{escape(_tooltip(drill))}</title></rect>")
    return _svg(_WIDTH, height, label, body)
