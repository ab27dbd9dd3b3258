"""The run's ledger: which store holds which object written during the run, and which
stores are still healthy. Thread-safe; no I/O.

The writer records every store's outcome per object here; the reader asks it which
stores hold an object written moments ago (a store still writing in the background must
not answer "not found" for it); the report is built from a snapshot of it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass
class ObjectRecord:
    """One object written during the run: its size, the stores that acknowledged it, and
    the stores that gave up on it (a store that acknowledges later leaves ``missing``)."""

    key: str
    size: int
    acknowledged: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class StoreHealth:
    """Whether a store still gets writes, and the error that stopped it if not."""

    healthy: bool = True
    error: str | None = None


@dataclass(frozen=True)
class LedgerSnapshot:
    """A consistent copy of the ledger, for the report."""

    records: tuple[ObjectRecord, ...]
    health: dict[str, StoreHealth]
    refused: tuple[str, ...] = ()


class Ledger:
    """The objects written during one run, per store, and each store's health.

    ``store_names`` are the names of the run's stores, in the policy's order.
    """

    def __init__(self, store_names: Sequence[str]) -> None:
        self.store_names = tuple(store_names)
        self._records: dict[str, ObjectRecord] = {}
        self._health = {name: StoreHealth() for name in self.store_names}
        self._refused: dict[str, None] = {}
        self._lock = threading.Lock()

    def _record(self, key: str, size: int) -> ObjectRecord:
        record = self._records.get(key)
        if record is None or record.size != size:
            # A new size is a new object (only config could change): start afresh.
            record = self._records[key] = ObjectRecord(key, size)
        return record

    def acknowledged(self, store: str, key: str, size: int) -> None:
        """Record that ``store`` holds ``key`` (``size`` bytes)."""
        with self._lock:
            record = self._record(key, size)
            record.acknowledged.add(store)
            record.missing.discard(store)

    def missed(self, store: str, key: str, size: int) -> None:
        """Record that ``store`` gave up on ``key``, unless it acknowledged it before."""
        with self._lock:
            record = self._record(key, size)
            if store not in record.acknowledged:
                record.missing.add(store)

    def refused(self, key: str) -> None:
        """Record that an upload of ``key`` was answered 500 (too few stores stored it).
        The run stays not durable even if restic deletes the object afterwards."""
        with self._lock:
            self._refused[key] = None

    def forget(self, key: str) -> None:
        """Drop ``key`` from the ledger (a lock file restic deleted: nobody needs it)."""
        with self._lock:
            self._records.pop(key, None)

    def holders(self, key: str) -> tuple[str, ...] | None:
        """The stores that acknowledged ``key``, in store order, or None when ``key`` was
        not written during the run."""
        with self._lock:
            record = self._records.get(key)
            if record is None:
                return None
            return tuple(name for name in self.store_names if name in record.acknowledged)

    def size_of(self, key: str) -> int | None:
        """The size of ``key`` if it was written (and acknowledged) during the run."""
        with self._lock:
            record = self._records.get(key)
            return record.size if record is not None and record.acknowledged else None

    def written_under(self, prefix: str) -> list[tuple[str, int]]:
        """``(key, size)`` of every object under ``prefix`` that some store acknowledged."""
        with self._lock:
            return [
                (record.key, record.size)
                for record in self._records.values()
                if record.key.startswith(prefix) and record.acknowledged
            ]

    def mark_unhealthy(self, store: str, error: str) -> bool:
        """Stop writing to ``store``; True the first time (the error is kept then)."""
        with self._lock:
            if not self._health[store].healthy:
                return False
            self._health[store] = StoreHealth(healthy=False, error=error)
            return True

    def is_healthy(self, store: str) -> bool:
        with self._lock:
            return self._health[store].healthy

    def healthy_stores(self, names: Iterable[str] | None = None) -> tuple[str, ...]:
        """Those of ``names`` (default: all, in store order) still healthy."""
        with self._lock:
            return tuple(
                name for name in (names or self.store_names) if self._health[name].healthy
            )

    def snapshot(self) -> LedgerSnapshot:
        """A copy of the whole ledger, taken at once."""
        with self._lock:
            records = tuple(
                ObjectRecord(r.key, r.size, set(r.acknowledged), set(r.missing))
                for r in self._records.values()
            )
            return LedgerSnapshot(records, dict(self._health), tuple(self._refused))
