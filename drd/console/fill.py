"""A progress bar for restores, drawn from how much a directory's file system filled.

restic 0.14 prints no restore progress, so a restore (``drd restore``, ``drd-agent
restore``, a drill's) is watched from outside: the bytes used on the file system of the
directory restic writes into, against the bytes expected. Other writers to the same file
system skew it: it is a guide, not a measure.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from drd.console.progress import ProgressBar
from drd.restic import ProgressEvent

WATCH_SECONDS = 0.5


class FillWatcher:
    """Draws ``bar`` from a thread while a restore fills a directory: :meth:`start` it
    with the directory and the bytes expected, :meth:`stop` it after (idempotent)."""

    def __init__(self, bar: ProgressBar) -> None:
        self.bar = bar
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, directory: Path, expected_bytes: int) -> None:
        self.stop()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(directory, expected_bytes),
                                        daemon=True)
        self._thread.start()

    def _watch(self, directory: Path, expected: int) -> None:
        try:
            start = shutil.disk_usage(directory).used
        except OSError:
            return
        while not self._stop.wait(WATCH_SECONDS):
            try:
                written = max(0, shutil.disk_usage(directory).used - start)
            except OSError:
                return
            done = min(written, expected)
            self.bar(ProgressEvent(percent_done=min(done / expected, 0.99) if expected else 0,
                                   bytes_done=done, total_bytes=expected))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self.bar.finish()
