"""A bound on the bytes of uploads held in memory at once."""

from __future__ import annotations

import threading


class ByteBudget:
    """Bytes of upload bodies that may be held in memory at once (``limit``).

    An upload reserves its size before its body is read and releases it once every
    store is done with it, background writes included. A reservation waits while the
    budget is spent; one larger than the whole budget is let through when nothing else is
    held, so that no object size can deadlock the endpoint. ``peak`` is the most held at
    once, for measurements.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the buffer limit must be at least 1 byte, not {limit}")
        self.limit = limit
        self.used = 0
        self.peak = 0
        self._condition = threading.Condition()

    def reserve(self, size: int) -> Reservation:
        """Wait until ``size`` bytes fit, then hold them. Raises ValueError for size < 0."""
        if size < 0:
            raise ValueError(f"cannot reserve {size} bytes")
        with self._condition:
            self._condition.wait_for(lambda: self.used == 0 or self.used + size <= self.limit)
            self.used += size
            self.peak = max(self.peak, self.used)
        return Reservation(self, size)

    def _release(self, size: int) -> None:
        with self._condition:
            self.used -= size
            self._condition.notify_all()


class Reservation:
    """Bytes held in a :class:`ByteBudget`; ``release()`` gives them back (once)."""

    def __init__(self, budget: ByteBudget, size: int) -> None:
        self.size = size
        self._budget = budget
        self._released = False
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._budget._release(self.size)
