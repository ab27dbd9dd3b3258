"""The store probe: is each registered store reachable right now?

:func:`probe_stores` opens every store with its keys and runs
:meth:`drd.stores.base.Store.check` (reach it, write, read back and delete a probe
object), each store on its own and a few at a time, with short timeouts and one retry,
so that a store that is down costs seconds, not minutes, and never holds up the others.
It records the outcome on the store's row: ``checked_at``, ``reachable`` and
``check_error`` (one line, masked; None when reachable). The ``store_down`` rule
(:mod:`drd.alerting.rules`) reads them.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from concurrent.futures import ThreadPoolExecutor
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
    except (DrdError, OSError, ValueError) as error:
        # CryptoError (a secret this centre cannot decrypt) and UserError (settings that no
        # longer validate) are DrdErrors: the store is as unusable as an unreachable one
        return ProbeResult(row.id, row.name, False, probe_error(error),
                           time.monotonic() - started)
    return ProbeResult(row.id, row.name, True, None, time.monotonic() - started)


def probe_stores(catalog: Catalog, master_key: MasterKey, *, names: list[str] | None = None,
                 now: dt.datetime | None = None) -> list[ProbeResult]:
    """Probe every registered store (or those ``names``) and record the outcome.

    Returns the results by store name. Raises only for the catalog itself
    (:class:`~drd.errors.OperationError` from the session).
    """
    with catalog.session() as session:
        query = sa.select(StoreRow).order_by(StoreRow.name)
        if names:
            query = query.where(StoreRow.name.in_(names))
        rows = list(session.scalars(query))
        session.expunge_all()
    if not rows:
        return []
    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(rows)),
                            thread_name_prefix="store-probe") as pool:
        results = list(pool.map(lambda row: probe_store(row, master_key), rows))
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
