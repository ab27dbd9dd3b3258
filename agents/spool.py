"""The spool: what the centre has not received yet, kept on disk until it has.

Every snapshot report and manifest upload goes through the spool: it is written here
first (atomically, 0600), then delivered; an entry is removed only after the centre
acknowledged it (2xx). Delivery is oldest first and stops at the first failure that may
pass (the centre unreachable, 5xx, 401/403), so a snapshot's report always reaches the
centre before its manifest. An entry the centre refuses for good (another 4xx: it will
never accept it unchanged) is moved to ``spool/rejected/`` with the reason, and delivery
goes on; nothing is ever dropped silently.

Delivery is at-least-once: a crash between the centre's answer and the removal sends
the entry again, and the centre records each ``report_id`` once.

Entries are JSON files named ``<sequence>-<kind>-<uuid>.json``; the sequence is one more
than the highest in the spool (under ``<spool>.lock``, beside the directory), so name
order is delivery order. An empty spool directory means everything was delivered.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drd.fsutil import atomic_write, ensure_private_directory

logger = logging.getLogger(__name__)

REPORT = "report"
MANIFEST = "manifest"
KINDS = (REPORT, MANIFEST)
REJECTED_DIR = "rejected"
_ENTRY = re.compile(r"^(\d{12})-([a-z]+)-([0-9a-f-]{36})\.json$")


@dataclass(frozen=True)
class SpoolEntry:
    """One undelivered item: ``kind`` (``report`` or ``manifest``) and its ``body``."""

    path: Path
    sequence: int
    kind: str
    body: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class DeliveryResult:
    """What :meth:`Spool.deliver` did: counts, and the error that stopped it (if any)."""

    delivered: int = 0
    rejected: int = 0
    remaining: int = 0
    stopped_by: str | None = None


class Spool:
    """The spool directory ``directory`` (created 0700 on first use)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def add(self, kind: str, body: dict[str, Any]) -> SpoolEntry:
        """Write a new entry after every existing one and return it.

        Raises:
            ValueError: an unknown ``kind``.
            OSError: the spool cannot be written.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown spool entry kind {kind!r}")
        with self._locked(blocking=True):
            sequence = max((entry.sequence for entry in self._scan()), default=0) + 1
            path = self.directory / f"{sequence:012d}-{kind}-{uuid.uuid4()}.json"
            atomic_write(path, json.dumps({"kind": kind, "body": body}, sort_keys=True) + "\n")
        return SpoolEntry(path=path, sequence=sequence, kind=kind, body=body)

    def entries(self) -> list[SpoolEntry]:
        """The undelivered entries, oldest first (unreadable files are skipped, logged)."""
        entries = []
        for sequence, kind, path in self._scan_names():
            try:
                document = json.loads(path.read_text(encoding="utf-8"))
                body = document["body"]
                if not isinstance(body, dict):
                    raise ValueError("body is not an object")
            except FileNotFoundError:
                continue  # delivered by another process meanwhile
            except (OSError, ValueError, KeyError, TypeError) as error:
                logger.warning("spool entry %s is unreadable (%s); moving it aside", path, error)
                self._set_aside(path, f"unreadable: {error}")
                continue
            entries.append(SpoolEntry(path=path, sequence=sequence, kind=kind, body=body))
        return entries

    def count(self) -> int:
        """How many entries wait for delivery."""
        return len(self._scan_names())

    def rejected_count(self) -> int:
        directory = self.directory / REJECTED_DIR
        return len(list(directory.glob("*.json"))) if directory.is_dir() else 0

    def deliver(self, send: Callable[[SpoolEntry], None],
                is_permanent: Callable[[Exception], bool]) -> DeliveryResult:
        """Send every entry, oldest first, removing each once ``send`` returned.

        Args:
            send: delivers one entry; returns on success (a 2xx), raises otherwise.
            is_permanent: whether an exception ``send`` raised means the centre will
                never take this entry (it is then set aside and delivery goes on);
                otherwise delivery stops and the entry stays for the next attempt.

        Returns:
            The counts. If another process is delivering right now, nothing is done.
        """
        with self._locked(blocking=False) as locked:
            if not locked:
                return DeliveryResult(remaining=self.count(), stopped_by="another delivery runs")
            delivered = rejected = 0
            for entry in self.entries():
                try:
                    send(entry)
                except Exception as error:  # classified below; never lost
                    if is_permanent(error):
                        logger.error("the centre refused %s %s for good, set aside in %s: %s",
                                     entry.kind, entry.path.name, REJECTED_DIR, error)
                        self._set_aside(entry.path, str(error))
                        rejected += 1
                        continue
                    return DeliveryResult(delivered, rejected, self.count(), str(error))
                entry.path.unlink(missing_ok=True)
                delivered += 1
            return DeliveryResult(delivered, rejected, self.count(), None)

    # -- internals -----------------------------------------------------------------------

    def _scan_names(self) -> list[tuple[int, str, Path]]:
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            match = _ENTRY.match(path.name)
            if match and path.is_file():
                found.append((int(match.group(1)), match.group(2), path))
        return sorted(found, key=lambda item: (item[0], item[2].name))

    def _scan(self) -> Iterator[SpoolEntry]:
        for sequence, kind, path in self._scan_names():
            yield SpoolEntry(path=path, sequence=sequence, kind=kind, body={})

    def _set_aside(self, path: Path, reason: str) -> None:
        directory = ensure_private_directory(self.directory / REJECTED_DIR)
        try:
            os.replace(path, directory / path.name)
            atomic_write(directory / f"{path.name}.reason", reason + "\n")
        except FileNotFoundError:
            pass

    @contextmanager
    def _locked(self, *, blocking: bool) -> Iterator[bool]:
        ensure_private_directory(self.directory)
        # beside the spool, not in it: an empty spool directory means "all delivered"
        lock_file = self.directory.with_name(f"{self.directory.name}.lock")
        descriptor = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(descriptor)
