"""The leader's catalog copies: a signed, encrypted copy of the catalog in every store.

:class:`CatalogCopier` runs in a thread of its own while the daemon leads (never in a
worker: it never delays or blocks a job). It writes a copy
(:func:`drd.recovery.copies.publish`):

- a minute after it starts leading (not at once: a daemon that starts and stops again
  in a few seconds, or is still catching up on its jobs, should not), then every
  ``catalog_copy_minutes`` (``drd.yaml``, default 60);
- soon after the catalog changed (a new system, snapshot, manifest, policy, store, token,
  drill...), but at most once per :data:`CHANGE_GAP_SECONDS`, so a busy centre does not
  spend its time copying;
- again after :data:`RETRY_SECONDS` when a store failed (down, refusing); the stores that
  worked got the copy all the same. A store whose keys were not re-entered after a
  recovery is skipped with a warning until they are.

A failed pass is logged and tried again later: it never stops the daemon.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from drd.catalog import Catalog
from drd.catalog.models import (
    Department,
    Drill,
    Policy,
    RecordedObject,
    Snapshot,
    SnapshotManifest,
    Store,
    System,
    Token,
    Tombstone,
)
from drd.daemon.queue import one_line_error
from drd.errors import DrdError
from drd.recovery.copies import PublishResult, publish

log = logging.getLogger("drd.recovery.copier")

TICK_SECONDS = 30.0
CHANGE_GAP_SECONDS = 600.0
FIRST_DELAY_SECONDS = 60.0
RETRY_SECONDS = 300.0


def catalog_fingerprint(catalog: Catalog) -> tuple:
    """A cheap summary that changes when anything a copy holds is added or changed in a
    way that matters for recovery (one query of counts and maximum ids)."""
    def count(model, *where) -> sa.ScalarSelect:
        return sa.select(sa.func.count()).select_from(model).where(*where).scalar_subquery()

    def highest(column) -> sa.ScalarSelect:
        return sa.select(sa.func.max(column)).scalar_subquery()

    query = sa.select(
        count(Department), highest(Policy.id), sa.select(sa.func.sum(Policy.version))
        .scalar_subquery(), count(Store), highest(Store.id),
        highest(System.id), count(System, System.sealed_password.is_not(None)),
        count(System, System.status == "retired"), highest(Token.id),
        count(Token, Token.revoked_at.is_not(None)), highest(Snapshot.id),
        count(Snapshot, Snapshot.status == "active"), highest(SnapshotManifest.id),
        highest(Drill.id), count(Drill, Drill.finished_at.is_not(None)), highest(Tombstone.id),
        highest(RecordedObject.id))
    with catalog.read_session() as session:
        return tuple(session.execute(query).one())


class CatalogCopier:
    """Write catalog copies on the schedule in the module docstring, between
    :meth:`start` and :meth:`stop`. ``publish_copy`` and ``clock`` are for tests."""

    def __init__(self, config: Any, catalog: Catalog, master_key: Any, keystore: Any, *,
                 publish_copy: Callable[[], PublishResult] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 tick_seconds: float = TICK_SECONDS) -> None:
        self.config, self.catalog = config, catalog
        self.master_key, self.keystore = master_key, keystore
        self.clock = clock
        self.tick_seconds = tick_seconds
        self._publish = publish_copy or (lambda: publish(catalog, master_key, keystore, config))
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.last_written: float | None = None
        self.last_attempt: float | None = None
        self.retry_at: float | None = None
        self.fingerprint: tuple | None = None
        self.last_result: PublishResult | None = None
        self.started_at = clock()

    @property
    def interval_seconds(self) -> float:
        return float(getattr(self.config, "catalog_copy_minutes", 60)) * 60

    def start(self) -> None:
        if self.master_key is None:  # the signing key is locked: nothing to sign with
            return
        with self._lock:
            self._stop.clear()
            self.started_at = self.clock()
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._loop, name="catalog-copy",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("catalog copy still writing after %g s; it ends after it", timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.tick_seconds)

    def due(self) -> str | None:
        """Why a copy is due now (``"first"``, ``"interval"``, ``"retry"``, ``"changed"``),
        or None. Reads the catalog's fingerprint only when nothing else makes one due."""
        now = self.clock()
        if self.last_attempt is None:
            return "first" if now - self.started_at >= FIRST_DELAY_SECONDS else None
        if self.last_written is None or now - self.last_written >= self.interval_seconds:
            if self.retry_at is None or now >= self.retry_at:
                return "interval"
        if self.retry_at is not None and now >= self.retry_at:
            return "retry"
        if now - self.last_attempt >= min(CHANGE_GAP_SECONDS, self.interval_seconds):
            if catalog_fingerprint(self.catalog) != self.fingerprint:
                return "changed"
        return None

    def tick(self) -> PublishResult | None:
        """One check: write a copy if one is due. Never raises (logs instead)."""
        try:
            reason = self.due()
            if reason is None:
                return None
            return self._write(reason)
        except DrdError as error:
            self._failed_pass()
            log.warning("catalog copy failed (tried again later): %s", one_line_error(error))
        except Exception:  # noqa: BLE001 - the daemon must outlive a bug in a pass
            self._failed_pass()
            log.exception("catalog copy failed (tried again later)")
        return None

    def _failed_pass(self) -> None:
        self.last_attempt = self.clock()
        self.retry_at = self.clock() + RETRY_SECONDS

    def _write(self, reason: str) -> PublishResult:
        fingerprint = catalog_fingerprint(self.catalog)
        self.last_attempt = self.clock()
        result = self._publish()
        self.last_result = result
        self.fingerprint = fingerprint
        written = [store for store in result.stores if store.ok]
        if written:
            self.last_written = self.clock()
        for store in result.failed:
            log.warning("catalog copy not written to store %s: %s", store.store, store.error)
        retryable = [store for store in result.failed if not store.needs_keys]
        self.retry_at = self.clock() + RETRY_SECONDS if retryable or not written else None
        log.info("catalog copy %s (%s): %d bytes to %d of %d store(s) in %.1f s", result.key,
                 reason, result.size, len(written), len(result.stores), result.seconds)
        return result
