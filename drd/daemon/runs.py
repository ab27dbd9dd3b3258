"""Runs made in the foreground (``drd replicate``, ``drd verify``, ``drd retention run``)
are recorded like the daemon's: one :class:`~drd.catalog.models.JobRun` of the system's
job (and store's, for verification), with start, end, outcome, bytes and error."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from drd.catalog import Catalog
from drd.catalog.models import JobRun, System
from drd.catalog.models import Store as StoreRow
from drd.catalog.types import utcnow
from drd.daemon.jobs import ensure_job
from drd.daemon.queue import one_line_error


@dataclass(frozen=True)
class ForegroundRun:
    """One system's (and store's) part of a foreground run, and how it ended."""

    system: str
    store: str | None
    ok: bool
    bytes_processed: int | None = None
    error: str | None = None


def record_runs(catalog: Catalog, kind: str, runs: Iterable[ForegroundRun],
                started_at: dt.datetime, finished_at: dt.datetime | None = None) -> int:
    """Record ``runs`` of jobs of ``kind``; return how many were recorded.

    A run whose system's policy implies no such job (a store the policy no longer
    names, say) is not recorded.
    """
    finished_at = finished_at or utcnow()
    recorded = 0
    with catalog.session() as session:
        systems = dict(session.execute(sa.select(System.name, System.id)).all())
        stores = dict(session.execute(sa.select(StoreRow.name, StoreRow.id)).all())
        for run in runs:
            system_id = systems.get(run.system)
            store_id = stores.get(run.store) if run.store is not None else None
            if system_id is None:
                continue
            job = ensure_job(session, kind, system_id, finished_at, store_id=store_id)
            if job is None:
                continue
            outcome = "succeeded" if run.ok else ("partial" if run.bytes_processed
                                                  else "failed")
            session.add(JobRun(job_id=job.id, system_id=system_id, store_id=store_id,
                               started_at=started_at, finished_at=finished_at,
                               outcome=outcome, bytes_processed=run.bytes_processed,
                               error=None if run.ok else one_line_error(
                                   run.error or "the run reported problems")))
            recorded += 1
    return recorded
