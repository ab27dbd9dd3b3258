"""The store probe: is each registered store reachable right now?

:func:`probe_stores` opens every store with its keys and runs
:meth:`drd.stores.base.Store.check` (reach it, write, read back and delete a probe
object), each store on its own and a few at a time, with short timeouts and one retry,
so that a store that is down costs seconds, not minutes, and never holds up the others.
A pass waits at most :data:`DEADLINE` seconds in all: a store with no answer by then (a
file store on a hung NFS mount never returns) is recorded down, and while its probe is
still stuck it is not probed again (one stuck thread per store at most). It records
the outcome on the store's row: ``checked_at``, ``reachable`` and ``check_error``
(one line, masked; None when reachable). The ``store_down`` rule (:mod:`drd.alerting.rules`)
reads them.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass

import sqlalchemy as sa

from drd.catalog import Catalog
from drd.catalog.models import Store as StoreRow
from drd.catalog.types import utcnow
from drd.crypto.masterkey import MasterKey
from drd.errors import DrdError
from drd.secrets import mask
from drd.services.stores import open_registered

log = logging.getLogger("drd.alerts.probe")

MAX_ERROR_LENGTH = 500
PARALLEL = 4
DEADLINE = 20.0  # seconds a pass waits for all its stores
# one retry after half a second; S3 waits at most these many seconds per request
RETRY_ATTEMPTS = 2
RETRY_BACKOFF = 0.5
S3_TIMEOUTS = {"connect_timeout": 3.0, "check_timeout": 5.0, "read_timeout": 10.0}


@dataclass(frozen=True)
class ProbeResult:
    store_id: int
    name: str
    reachable: bool
    error: str | None
    seconds: float


def probe_error(error: BaseException | str) -> str:
    """An error as one masked line of at most :data:`MAX_ERROR_LENGTH` characters."""
    text = (str(error) or type(error).__name__) if isinstance(error, BaseException) else error
    return mask(" ".join(text.split()))[:MAX_ERROR_LENGTH]


def probe_store(row: StoreRow, master_key: MasterKey) -> ProbeResult:
    """Check one store; never raises for the store's own failures."""
    started = time.monotonic()
    options = S3_TIMEOUTS if row.kind == "s3" else {}
    try:
        store = open_registered(row, master_key, retry_attempts=RETRY_ATTEMPTS,
                                retry_backoff=RETRY_BACKOFF, **options)
        store.check()
    except Exception as error:  # noqa: BLE001 - whatever fails, this store is down
        # CryptoError (a secret this centre cannot decrypt), UserError (settings that no
        # longer validate), a driver's own exception: as unusable as an unreachable store
        if not isinstance(error, (DrdError, OSError, ValueError)):
            log.warning("store %s probe: unexpected %s", row.name, type(error).__name__)
        return ProbeResult(row.id, row.name, False, probe_error(error),
                           time.monotonic() - started)
    return ProbeResult(row.id, row.name, True, None, time.monotonic() - started)


Probe = Callable[[StoreRow, MasterKey], ProbeResult]

# store id -> its probe still running from an earlier pass (stuck past the deadline)
_stuck: dict[int, Future] = {}
_stuck_lock = threading.Lock()


def _run_all(rows: list[StoreRow], master_key: MasterKey, probe: Probe,
             deadline: float) -> list[ProbeResult]:
    """Probe ``rows``, :data:`PARALLEL` at a time in daemon threads (a hung probe must not
    hold up the daemon's exit), waiting at most ``deadline`` seconds in all."""
    futures: dict[int, Future] = {}
    results: dict[int, ProbeResult] = {}
    with _stuck_lock:
        for row in rows:
            stuck = _stuck.get(row.id)
            if stuck is not None and not stuck.done():
                results[row.id] = ProbeResult(row.id, row.name, False, probe_error(
                    "an earlier probe still has no answer"), 0.0)
            else:
                _stuck.pop(row.id, None)
                futures[row.id] = Future()
    pending = [row for row in rows if row.id in futures]

    def work() -> None:
        while True:
            with _stuck_lock:
                if not pending:
                    return
                row = pending.pop(0)
            future = futures[row.id]
            if not future.set_running_or_notify_cancel():
                continue
            started = time.monotonic()
            try:
                result = probe(row, master_key)
            except Exception as error:  # noqa: BLE001 - one store's bug is that store's
                log.exception("store %s probe failed", row.name)
                result = ProbeResult(row.id, row.name, False, probe_error(error),
                                     time.monotonic() - started)
            future.set_result(result)

    for _ in range(min(PARALLEL, len(pending))):
        threading.Thread(target=work, name="store-probe", daemon=True).start()
    wait(list(futures.values()), timeout=deadline)
    with _stuck_lock:
        pending.clear()  # threads take no more stores
    for row in rows:
        future = futures.get(row.id)
        if future is None:
            continue
        if future.done() and not future.cancelled():
            results[row.id] = future.result()
            continue
        if not future.cancel():  # running: stuck
            with _stuck_lock:
                _stuck[row.id] = future
        results[row.id] = ProbeResult(row.id, row.name, False,
                                      f"no answer within {deadline:g} s", deadline)
    return [results[row.id] for row in rows]


def probe_stores(catalog: Catalog, master_key: MasterKey, *, names: list[str] | None = None,
                 now: dt.datetime | None = None, deadline: float = DEADLINE,
                 probe: Probe = probe_store) -> list[ProbeResult]:
    """Probe every registered store (or those ``names``) and record the outcome.

    Returns the results by store name, after at most ``deadline`` seconds of probing.
    Raises only for the catalog itself (:class:`~drd.errors.OperationError` from the
    session).
    """
    with catalog.session() as session:
        query = sa.select(StoreRow).order_by(StoreRow.name)
        if names:
            query = query.where(StoreRow.name.in_(names))
        rows = list(session.scalars(query))
        session.expunge_all()
    if not rows:
        return []
    results = _run_all(rows, master_key, probe, deadline)
    checked_at = now or utcnow()
    with catalog.session() as session:
        for result in results:
            session.execute(sa.update(StoreRow).where(StoreRow.id == result.store_id).values(
                checked_at=checked_at, reachable=result.reachable, check_error=result.error))
    for result in results:
        if result.reachable:
            log.debug("store %s reachable (%.1f s)", result.name, result.seconds)
        else:
            log.warning("store %s unreachable (%.1f s): %s", result.name, result.seconds,
                        result.error)
    return results
