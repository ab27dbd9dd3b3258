"""The jobs that applied policies imply, and when each one fires.

For every enrolled system with a policy the daemon keeps these jobs (``Job`` rows)::

    replicate:<system>            replication.schedule      the anti-entropy pass
    retention:<system>            prune.schedule            forget, prune, remove elsewhere
    verify:<system>:<store>       verification.schedule     keyless re-read of one store
    check:<system>:<store>        verification.check_schedule   ``restic check`` of one store
    drill:<system>                drill.schedule            a restore drill of one store

Drills are one job per system (only when its policy has a ``drill`` section), not one
per store: each run drills one store, chosen by rotation
(:func:`restore_drills.rotation.choose_store`), so that every store is drilled within
the plan's period (the policy schema refuses a schedule too rare for that).

The decisions (:func:`derive_jobs`, :func:`next_fire`, :func:`last_fire`,
:func:`catch_up`) are pure; :func:`sync_jobs` applies them to the catalog. Every time is
timezone-aware UTC; schedules are five-field cron read by :func:`policies.cron.cron_trigger`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drd.catalog.models import Job, Policy, System
from drd.catalog.models import Store as StoreRow
from policies.cron import cron_trigger
from policies.schema import Prune, Replication, Verification

log = logging.getLogger(__name__)

DERIVED_KINDS = ("replicate", "retention", "verify", "check", "drill")
"""The kinds :func:`sync_jobs` manages."""

# how far back :func:`last_fire` looks for the first fire time before iterating forward:
# a minutely schedule missed for a year costs a few windows, not half a million steps
_LOOKBACK = (dt.timedelta(minutes=2), dt.timedelta(hours=2), dt.timedelta(days=2),
             dt.timedelta(days=40), dt.timedelta(days=400), dt.timedelta(days=4000))
_ONE_MICROSECOND = dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class JobSpec:
    """A job a policy implies: its unique ``name``, ``kind``, system, store and cron."""

    name: str
    kind: str
    system_id: int
    store_id: int | None
    schedule: str


@dataclass(frozen=True)
class PolicedSystem:
    """An enrolled system and its policy, as :func:`derive_jobs` needs them.

    ``document`` is the applied policy (``Policy.document``); ``store_ids`` maps every
    registered store's name to its id.
    """

    system_id: int
    name: str
    document: Mapping[str, Any]
    store_ids: Mapping[str, int] = field(default_factory=dict)


def job_name(kind: str, system: str, store: str | None = None) -> str:
    """``kind:system`` or ``kind:system:store``: a job's unique name."""
    return f"{kind}:{system}" if store is None else f"{kind}:{system}:{store}"


def _section(document: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = document.get(name)
    return value if isinstance(value, Mapping) else {}


def policy_schedules(document: Mapping[str, Any]) -> dict[str, str]:
    """The cron expression of each derived kind in a policy document, with the policy
    schema's defaults for sections a document applied by an older drd lacks.

    ``drill`` is there only when the document has a drill plan (its schedule is required).
    """
    verification = _section(document, "verification")
    schedules = {
        "replicate": _section(document, "replication").get("schedule")
        or Replication().schedule,
        "retention": _section(document, "prune").get("schedule") or Prune().schedule,
        "verify": verification.get("schedule") or Verification().schedule,
        "check": verification.get("check_schedule") or Verification().check_schedule,
    }
    drill_schedule = _section(document, "drill").get("schedule")
    if drill_schedule:
        schedules["drill"] = drill_schedule
    return schedules


def derive_jobs(systems: Iterable[PolicedSystem]) -> list[JobSpec]:
    """Every job the systems' policies imply, sorted by name.

    Stores a policy names that are not registered (``store_ids`` lacks them) get no
    verify or check job. A system whose policy has a drill plan gets one ``drill`` job
    (no store: each run chooses one).
    """
    specs: list[JobSpec] = []
    for system in systems:
        schedules = policy_schedules(system.document)
        specs.append(JobSpec(job_name("replicate", system.name), "replicate",
                             system.system_id, None, schedules["replicate"]))
        specs.append(JobSpec(job_name("retention", system.name), "retention",
                             system.system_id, None, schedules["retention"]))
        if "drill" in schedules:
            specs.append(JobSpec(job_name("drill", system.name), "drill",
                                 system.system_id, None, schedules["drill"]))
        for store in system.document.get("stores") or []:
            store_id = system.store_ids.get(store)
            if store_id is None:
                continue
            for kind in ("verify", "check"):
                specs.append(JobSpec(job_name(kind, system.name, store), kind,
                                     system.system_id, store_id, schedules[kind]))
    return sorted(specs, key=lambda spec: spec.name)


@lru_cache(maxsize=256)
def _trigger(schedule: str):
    return cron_trigger(schedule)


def next_fire(schedule: str, after: dt.datetime) -> dt.datetime:
    """The first time ``schedule`` fires strictly after ``after``.

    Raises ``ValueError`` for an invalid schedule or one that never fires again.
    """
    fire = _trigger(schedule).get_next_fire_time(None, after + _ONE_MICROSECOND)
    if fire is None:
        raise ValueError(f"{schedule!r} never fires after {after.isoformat()}")
    return fire.astimezone(dt.UTC)


def last_fire(schedule: str, now: dt.datetime, since: dt.datetime | None = None
              ) -> dt.datetime | None:
    """The latest time at or before ``now`` that ``schedule`` fires (not before ``since``).

    None when it does not fire in ``[since, now]`` (or, without ``since``, in the last
    eleven years).
    """
    trigger = _trigger(schedule)
    floor = since if since is not None else now - _LOOKBACK[-1]
    for lookback in _LOOKBACK:
        start = max(now - lookback, floor)
        fire = trigger.get_next_fire_time(None, start)
        if fire is not None and fire <= now:
            break
        if start == floor:
            return None
    else:
        return None
    while True:
        following = trigger.get_next_fire_time(None, fire + _ONE_MICROSECOND)
        if following is None or following > now:
            return fire.astimezone(dt.UTC)
        fire = following


@dataclass(frozen=True)
class CatchUp:
    """What to do with one job when a daemon becomes leader (or re-checks its jobs).

    ``slot``: the scheduled time to queue now (None: nothing is due); ``next_run_at``:
    the job's next fire time from now on.
    """

    slot: dt.datetime | None
    next_run_at: dt.datetime


def catch_up(schedule: str, next_run_at: dt.datetime | None, now: dt.datetime) -> CatchUp:
    """Decide whether a job missed slots while no daemon scheduled it.

    A job whose ``next_run_at`` has passed is queued once, for its latest missed slot
    (not once per missed slot), and its next run moves to the first slot after ``now``.
    A job never scheduled (``next_run_at`` None) starts at its next slot, with nothing to
    catch up. Raises ``ValueError`` for an invalid schedule.
    """
    if next_run_at is None:
        return CatchUp(None, next_fire(schedule, now))
    if next_run_at > now:
        return CatchUp(None, next_run_at)
    slot = last_fire(schedule, now, since=next_run_at) or next_run_at
    return CatchUp(slot, next_fire(schedule, now))


@dataclass
class SyncResult:
    """What :func:`sync_jobs` changed: job names created, updated and deactivated."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deactivated)


def policed_systems(session: Session, system_ids: Iterable[int] | None = None
                    ) -> list[PolicedSystem]:
    """The enrolled systems that have a policy (or those of ``system_ids``)."""
    store_ids = {name: store_id for name, store_id in session.execute(
        sa.select(StoreRow.name, StoreRow.id))}
    query = (sa.select(System.id, System.name, Policy.document)
             .join(Policy, System.policy_id == Policy.id)
             .where(System.status == "enrolled")
             .order_by(System.id))
    if system_ids is not None:
        query = query.where(System.id.in_(list(system_ids)))
    return [PolicedSystem(system_id, name, document or {}, store_ids)
            for system_id, name, document in session.execute(query)]


def sync_jobs(session: Session, now: dt.datetime) -> SyncResult:
    """Make the catalog's jobs of :data:`DERIVED_KINDS` match the applied policies.

    Creates missing jobs (first run at their next slot), updates jobs whose schedule,
    system or store changed (``next_run_at`` recomputed from ``now``), reactivates jobs
    derived again, and deactivates (``active=False``) jobs no policy implies any more.
    Idempotent: a second call with nothing changed changes nothing. A schedule that
    cannot be read (only a policy applied by a broken drd would hold one) is skipped
    with a warning.
    """
    result = SyncResult()
    wanted = {}
    for spec in derive_jobs(policed_systems(session)):
        try:
            next_fire(spec.schedule, now)
        except ValueError as error:
            log.warning("job %s skipped: its schedule %r cannot be used: %s", spec.name,
                        spec.schedule, error)
            continue
        wanted[spec.name] = spec
    existing = {job.name: job for job in session.scalars(
        sa.select(Job).where(Job.kind.in_(DERIVED_KINDS)))}
    for name, spec in wanted.items():
        job = existing.get(name)
        if job is None:
            session.add(Job(name=name, kind=spec.kind, system_id=spec.system_id,
                            store_id=spec.store_id, schedule=spec.schedule,
                            next_run_at=next_fire(spec.schedule, now), active=True))
            result.created.append(name)
        elif (not job.active or job.schedule != spec.schedule or job.kind != spec.kind
              or job.system_id != spec.system_id or job.store_id != spec.store_id
              or job.next_run_at is None):
            job.kind, job.system_id, job.store_id = spec.kind, spec.system_id, spec.store_id
            if not job.active or job.schedule != spec.schedule or job.next_run_at is None:
                job.next_run_at = next_fire(spec.schedule, now)
            job.schedule = spec.schedule
            job.active = True
            result.updated.append(name)
    for name, job in existing.items():
        if name not in wanted and job.active:
            job.active = False
            job.next_run_at = None
            result.deactivated.append(name)
    session.flush()
    if result.changed:
        log.info("jobs from policies: %d created, %d updated, %d deactivated",
                 len(result.created), len(result.updated), len(result.deactivated))
    return result


_ACTIVE_JOB = sa.select(Job).where(Job.kind == sa.bindparam("kind"),
                                   Job.system_id == sa.bindparam("system_id"),
                                   Job.active.is_(True))
_ACTIVE_JOBS = {  # built once: every snapshot report asks
    False: _ACTIVE_JOB.where(Job.store_id.is_(None)),
    True: _ACTIVE_JOB.where(Job.store_id == sa.bindparam("store_id")),
}


def active_job(session: Session, kind: str, system_id: int,
               store_id: int | None = None) -> Job | None:
    """The active job of ``kind`` for a system (and store), if there is one."""
    params = {"kind": kind, "system_id": system_id}
    if store_id is not None:
        params["store_id"] = store_id
    return session.scalar(_ACTIVE_JOBS[store_id is not None], params)


def ensure_job(session: Session, kind: str, system_id: int, now: dt.datetime,
               store_id: int | None = None) -> Job | None:
    """The active job of ``kind`` for a system (and store), created from its policy if the
    daemon has not synced it yet; None when the system's policy implies no such job."""
    job = active_job(session, kind, system_id, store_id)
    if job is not None:
        return job
    specs = [spec for spec in derive_jobs(policed_systems(session, [system_id]))
             if spec.kind == kind and spec.store_id == store_id]
    if not specs:
        return None
    (spec,) = specs
    job = session.scalar(sa.select(Job).where(Job.name == spec.name))
    if job is None:
        job = Job(name=spec.name, kind=kind, system_id=system_id, store_id=store_id)
        session.add(job)
    job.schedule = spec.schedule
    job.active = True
    job.next_run_at = next_fire(spec.schedule, now)
    session.flush()
    return job
