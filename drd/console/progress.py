"""Progress bars on a terminal (stderr) for long work: backup, replicate, verify, restore.

Progress arrives as :class:`~drd.restic.ProgressEvent` (restic's ``status`` messages;
the daemon's own work reports objects as "files" with ``unit="objects"``).
:func:`render` is pure; :class:`ProgressBar` redraws one line at most a few times a
second. Use it only when stderr is a terminal and ``--json`` was not given.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import click

from drd.restic import ProgressEvent

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(count: int) -> str:
    """``1536`` -> ``"1.5 KiB"`` (pure)."""
    value = float(count)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def render(event: ProgressEvent, label: str, width: int = 24, unit: str | None = "files"
           ) -> str:
    """One line of progress: label, bar, percent, files (in ``unit``; left out when
    ``unit`` is None: bytes alone), bytes, time left (pure)."""
    done = max(0.0, min(1.0, event.percent_done))
    filled = int(done * width)
    bar = "#" * filled + "-" * (width - filled)
    if unit is None:
        files = ""
    else:
        files = (f"{event.files_done}/{event.total_files} {unit}  " if event.total_files
                 else f"{event.files_done} {unit}  ")
    size = human_bytes(event.bytes_done)
    if event.total_bytes:
        size += f"/{human_bytes(event.total_bytes)}"
    left = ""
    if event.seconds_remaining:
        minutes, seconds = divmod(int(event.seconds_remaining), 60)
        left = f"  {minutes}:{seconds:02d} left"
    return f"{label} [{bar}] {done * 100:5.1f}%  {files}{size}{left}"


class ProgressBar:
    """A callable for ``progress=``: redraws the line on stderr, throttled."""

    def __init__(self, label: str = "backup", *, interval: float = 0.2,
                 unit: str | None = "files",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._label = label
        self._unit = unit
        self._interval = interval
        self._clock = clock
        self._last_draw = float("-inf")
        self._width = 0

    def __call__(self, event: ProgressEvent) -> None:
        now = self._clock()
        if now - self._last_draw < self._interval and event.percent_done < 1.0:
            return
        self._last_draw = now
        line = render(event, self._label, unit=self._unit)
        click.echo("\r" + line.ljust(self._width), err=True, nl=False)
        self._width = max(self._width, len(line))

    def finish(self) -> None:
        """End the line, if one was drawn."""
        if self._width:
            click.echo(err=True)
            self._width = 0
