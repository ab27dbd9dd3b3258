"""Writes each uploaded object to every store in parallel, and deletes restic's locks.

Threading: each store has a pool of ``workers`` threads, so a slow store queues its own
writes without holding up the others. An upload is one body in memory (held in a
:class:`~agents.fanout.budget.ByteBudget` reservation) shared by every store's put; the
caller waits only until the outcome is decided (:func:`~agents.fanout.durability.decide`),
and the remaining stores finish in the background. :meth:`FanoutWriter.drain` waits for
all of them.

Failures: a put that raises :class:`StoreUnavailable` is tried again, up to ``attempts``
times with exponential backoff. A put still failing then (or failing otherwise: refused
credentials, a missing bucket) records the object as missing on that store and marks the
store unhealthy: from then on it gets no new objects, and every later object is recorded
as missing there at once. Pending retries on a store stop waiting when it is marked.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from agents.fanout.budget import ByteBudget, Reservation
from agents.fanout.durability import Decision, decide
from agents.fanout.ledger import Ledger
from agents.fanout.protocol import takes_retention
from drd.stores.base import Store
from drd.stores.errors import StoreError, StoreUnavailable

logger = logging.getLogger(__name__)


class WriterClosed(RuntimeError):
    """An upload or delete arrived after the writer was closed."""


class Upload:
    """One object on its way to every store: the body, and each store's outcome so far."""

    def __init__(
        self,
        key: str,
        body: bytes,
        stores: Sequence[str],
        min_copies: int,
        reservation: Reservation,
        on_done: Callable[[Upload], None],
    ) -> None:
        self.key = key
        self.body = body
        self.size = len(body)
        self.stores = tuple(stores)
        self.min_copies = min_copies
        self.acknowledged: list[str] = []
        self.failed: list[str] = []
        self.done = threading.Event()
        self._reservation = reservation
        self._on_done = on_done
        self._condition = threading.Condition()

    def decision(self) -> Decision:
        return decide(
            min_copies=self.min_copies,
            acknowledged=len(self.acknowledged),
            failed=len(self.failed),
            stores=len(self.stores),
        )

    def settle(self, store: str, ok: bool) -> None:
        """Record ``store``'s outcome; the last one frees the body and its reservation."""
        with self._condition:
            (self.acknowledged if ok else self.failed).append(store)
            finished = len(self.acknowledged) + len(self.failed) == len(self.stores)
            if finished:
                self.body = b""
            self._condition.notify_all()
        if finished:
            self._reservation.release()
            self.done.set()
            self._on_done(self)

    def wait_for_decision(self) -> Decision:
        """Block until the outcome is decided (durable or failed); return it."""
        with self._condition:
            self._condition.wait_for(lambda: self.decision() is not Decision.PENDING)
            return self.decision()


class FanoutWriter:
    """Writes objects to ``stores`` in parallel and records each outcome in ``ledger``.

    Args:
        stores: the stores to write, in the policy's order. They should not retry by
            themselves (the writer retries, and stops retrying a store marked unhealthy).
        ledger: where outcomes and store health are recorded.
        min_copies: acknowledgements that make an upload durable.
        object_lock_days: retention for new objects (not ``locks/``) on stores with
            Object Lock; 0 for none.
        attempts, backoff: tries per put or delete, and seconds before the first retry
            (doubled each time).
        workers: concurrent writes per store.
        budget: bytes of bodies held in memory at once.
        now: the clock (timezone-aware), for retentions.
    """

    def __init__(
        self,
        stores: Sequence[Store],
        ledger: Ledger,
        *,
        min_copies: int,
        object_lock_days: int = 0,
        attempts: int = 3,
        backoff: float = 0.5,
        workers: int = 5,
        budget: ByteBudget,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.stores = {store.name: store for store in stores}
        self.ledger = ledger
        self.min_copies = min_copies
        self.object_lock_days = object_lock_days
        self.attempts = attempts
        self.backoff = backoff
        self.budget = budget
        self._now = now
        self._executors = {
            name: ThreadPoolExecutor(workers, thread_name_prefix=f"fanout-{name}")
            for name in self.stores
        }
        self._given_up = {name: threading.Event() for name in self.stores}
        self._object_lock: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending: dict[str, list[Upload]] = {}
        self._closed = False

    # --- uploads ---------------------------------------------------------------------------

    def reserve(self, size: int) -> Reservation:
        """Hold ``size`` bytes of the memory budget for a body about to be read (blocks
        while the budget is spent)."""
        return self.budget.reserve(size)

    def write(self, key: str, body: bytes, reservation: Reservation) -> Decision:
        """Send ``body`` to every store under ``key``; block until the outcome is decided.

        ``reservation`` (from :meth:`reserve`) is released once every store is done.
        Returns DURABLE (at least ``min_copies`` stores hold it) or FAILED.

        Raises:
            WriterClosed: the writer was closed (the reservation is released).
        """
        names = tuple(self.stores)
        upload = Upload(key, body, names, self.min_copies, reservation, self._finished)
        with self._lock:
            if self._closed:
                reservation.release()
                raise WriterClosed("the fan-out endpoint is closing")
            self._pending.setdefault(key, []).append(upload)
        for name in names:
            if self.ledger.is_healthy(name):
                self._executors[name].submit(self._put_job, name, upload)
            else:
                self.ledger.missed(name, key, upload.size)
                upload.settle(name, ok=False)
        decision = upload.wait_for_decision()
        if decision is Decision.FAILED:
            self.ledger.refused(key)
        return decision

    def _finished(self, upload: Upload) -> None:
        with self._lock:
            uploads = self._pending.get(upload.key, [])
            if upload in uploads:
                uploads.remove(upload)
            if not uploads:
                self._pending.pop(upload.key, None)
            self._idle.notify_all()

    def _put_job(self, name: str, upload: Upload) -> None:
        """One store's part of an upload, run on that store's pool. Never raises."""
        ok = False
        try:
            ok = self._put_with_retries(name, upload)
        except Exception as error:  # the edge of a job: settle whatever went wrong
            logger.exception("fan-out: writing %s to store %r failed", upload.key, name)
            self.give_up(name, f"writing {upload.key}: {error}")
        finally:
            if ok:
                self.ledger.acknowledged(name, upload.key, upload.size)
            else:
                self.ledger.missed(name, upload.key, upload.size)
            upload.settle(name, ok)

    def _put_with_retries(self, name: str, upload: Upload) -> bool:
        store = self.stores[name]
        for attempt in range(1, self.attempts + 1):
            if not self.ledger.is_healthy(name):
                return False
            try:
                store.put(
                    upload.key,
                    upload.body,
                    length=upload.size,
                    retain_until=self._retention(name, upload.key),
                )
                return True
            except StoreUnavailable as error:
                if attempt == self.attempts:
                    self.give_up(name, str(error))
                    return False
                self._pause(name, attempt, error, f"writing {upload.key}")
            except StoreError as error:
                self.give_up(name, str(error))
                return False
        return False  # pragma: no cover -- the loop returns

    def _retention(self, name: str, key: str) -> datetime | None:
        """The retain-until date for ``key`` on store ``name``, or None for none."""
        if self.object_lock_days <= 0 or not takes_retention(key):
            return None
        supported = self._object_lock.get(name)
        if supported is None:
            supported = self._object_lock[name] = bool(self.stores[name].supports_object_lock)
        if not supported:
            return None
        return self._now() + timedelta(days=self.object_lock_days)

    def _pause(self, name: str, attempt: int, error: StoreError, doing: str) -> None:
        delay = self.backoff * 2 ** (attempt - 1)
        logger.warning(
            "fan-out: %s while %s; retry %d of %d in %.1fs",
            error, doing, attempt, self.attempts - 1, delay,
        )
        self._given_up[name].wait(delay)

    def give_up(self, name: str, error: str) -> None:
        """Mark store ``name`` unhealthy (keeping the first ``error``) and end its retries."""
        if self.ledger.mark_unhealthy(name, error):
            logger.error(
                "fan-out: store %r gets no more objects in this run; it misses what follows: %s",
                name, error,
            )
        self._given_up[name].set()

    # --- deletes ---------------------------------------------------------------------------

    def delete(self, key: str) -> bool:
        """Delete ``key`` (a lock file) from every healthy store that may hold it.

        Waits first for any upload of ``key`` still being written, so that a late write
        cannot bring a deleted lock back. Then deletes where it was acknowledged (or
        everywhere, for an object from an earlier run) and drops it from the ledger.
        Returns False when no store could delete it (none healthy, or all failed).

        Raises:
            WriterClosed: the writer was closed.
        """
        with self._lock:
            if self._closed:
                raise WriterClosed("the fan-out endpoint is closing")
            waiting = list(self._pending.get(key, ()))
        for upload in waiting:
            upload.done.wait()
        holders = self.ledger.holders(key)
        if holders is not None and not holders:
            self.ledger.forget(key)
            return True  # written during the run, but no store holds it
        targets = self.ledger.healthy_stores(holders)
        futures = [self._executors[name].submit(self._delete_job, name, key) for name in targets]
        results = [future.result() for future in futures]
        self.ledger.forget(key)
        return any(results)

    def _delete_job(self, name: str, key: str) -> bool:
        store = self.stores[name]
        for attempt in range(1, self.attempts + 1):
            try:
                store.delete(key)
                return True
            except StoreUnavailable as error:
                if attempt == self.attempts:
                    self.give_up(name, str(error))
                    return False
                self._pause(name, attempt, error, f"deleting {key}")
            except StoreError as error:
                logger.warning("fan-out: %s; %s stays on store %r", error, key, name)
                return False
        return False  # pragma: no cover -- the loop returns

    # --- the run ---------------------------------------------------------------------------

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every upload is done on every store; False if ``timeout`` ran out."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._pending, timeout)

    def close(self) -> None:
        """Refuse new work, wait for what was accepted, and stop the worker threads."""
        with self._lock:
            self._closed = True
        self.drain()
        for executor in self._executors.values():
            executor.shutdown(wait=True)
