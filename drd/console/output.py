"""The CLI's output layer: the only place that writes to stdout and stderr.

Data goes to stdout, as JSON with ``--json`` or as a plain table otherwise;
messages and progress go to stderr, so ``drd ... --json | jq`` always works.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import click

from drd.secrets import mask


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2, default=_default, sort_keys=False))


def emit_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
               empty: str = "(none)") -> None:
    """Print rows as an aligned plain-text table on stdout."""
    if not rows:
        click.echo(empty)
        return
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in
              enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))
               .rstrip())
    for line in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    if isinstance(value, (list, tuple)):
        return ",".join(_cell(v) for v in value)
    return str(value)


def say(message: str) -> None:
    """A human message (progress, what was done) on stderr."""
    click.echo(message, err=True)


def say_lines(lines: Iterable[str]) -> None:
    for line in lines:
        say(line)


def error(prog_name: str, message: str) -> None:
    """The one-line error a command ends with; URL passwords are masked as a last defence."""
    click.echo(f"{prog_name}: error: {mask(message)}", err=True)


def echo(line: str = "") -> None:
    """A line of data (not a message) on stdout."""
    click.echo(line)


def is_terminal() -> bool:
    return sys.stderr.isatty()
