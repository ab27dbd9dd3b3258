"""Jobs derived from policies, fire times, and the catch-up decision (pure)."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from drd.catalog.models import Base, Department, Job, Policy, System
from drd.catalog.models import Store as StoreRow
from drd.daemon.jobs import (
    PolicedSystem,
    catch_up,
    derive_jobs,
    job_name,
    last_fire,
    next_fire,
    policy_schedules,
    sync_jobs,
)
from policies.schema import Drill

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


DOCUMENT = {
    "stores": ["dc-a", "region-b"],
    "replication": {"schedule": "20 * * * *"},
    "prune": {"schedule": "0 1 * * *", "delete_delay": "1d"},
    "verification": {"period": "30d", "schedule": "0 2 * * *", "check_schedule": "0 4 * * 0"},
}


def test_every_kind_of_job_per_system_and_store() -> None:
    specs = derive_jobs([PolicedSystem(7, "fs1", DOCUMENT, {"dc-a": 1, "region-b": 2})])
    assert [(s.name, s.kind, s.system_id, s.store_id, s.schedule) for s in specs] == [
        ("check:fs1:dc-a", "check", 7, 1, "0 4 * * 0"),
        ("check:fs1:region-b", "check", 7, 2, "0 4 * * 0"),
        ("replicate:fs1", "replicate", 7, None, "20 * * * *"),
        ("retention:fs1", "retention", 7, None, "0 1 * * *"),
        ("verify:fs1:dc-a", "verify", 7, 1, "0 2 * * *"),
        ("verify:fs1:region-b", "verify", 7, 2, "0 2 * * *"),
    ]


def test_unregistered_stores_get_no_store_jobs_and_old_documents_get_defaults() -> None:
    specs = derive_jobs([PolicedSystem(1, "db", {"stores": ["dc-a", "gone"]}, {"dc-a": 3})])
    assert {s.name for s in specs} == {"replicate:db", "retention:db", "verify:db:dc-a",
                                       "check:db:dc-a"}
    assert policy_schedules({}) == {"replicate": "20 * * * *", "retention": "0 1 * * *",
                                    "verify": "0 2 * * *", "check": "0 4 * * 0"}


# the drill section as an applied policy stores it
DRILL = Drill(schedule="0 3 * * 0").model_dump(mode="json")


def test_a_drill_plan_gives_one_drill_job_per_system_without_a_store() -> None:
    document = {**DOCUMENT, "drill": DRILL}
    specs = derive_jobs([PolicedSystem(7, "fs1", document, {"dc-a": 1, "region-b": 2})])
    drills = [(s.name, s.kind, s.system_id, s.store_id, s.schedule)
              for s in specs if s.kind == "drill"]
    assert drills == [("drill:fs1", "drill", 7, None, "0 3 * * 0")]
    assert policy_schedules(document)["drill"] == "0 3 * * 0"
    # without a drill section (also one left empty by hand): no drill job
    assert "drill" not in policy_schedules(DOCUMENT)
    assert "drill" not in policy_schedules({**DOCUMENT, "drill": None})


def test_sync_jobs_creates_and_deactivates_the_drill_job() -> None:
    # the pure derivation applied to an in-memory catalog, as the daemon does
    engine = sa.create_engine("sqlite://")
    Base.metadata.create_all(engine)
    now = at("2026-11-02 10:00:00")
    with Session(engine) as session:
        policy = Policy(name="fileserver", document={**DOCUMENT, "drill": DRILL},
                        source_text="", sha256="0" * 64)
        department = Department(name="finance")
        session.add_all([policy, department,
                         StoreRow(name="dc-a", kind="file", url="/a", region="eu-1"),
                         StoreRow(name="region-b", kind="file", url="/b", region="eu-2")])
        session.flush()
        session.add(System(name="fs1", department_id=department.id, policy_id=policy.id,
                           status="enrolled"))
        session.flush()
        assert "drill:fs1" in sync_jobs(session, now).created
        job = session.scalar(sa.select(Job).where(Job.name == "drill:fs1"))
        assert (job.kind, job.store_id, job.schedule, job.active) == ("drill", None,
                                                                       "0 3 * * 0", True)
        assert job.next_run_at == at("2026-11-08 03:00:00")
        # the drill section removed from the applied policy: the job is deactivated
        policy.document = dict(DOCUMENT)
        session.flush()
        assert sync_jobs(session, now).deactivated == ["drill:fs1"]
        assert (job.active, job.next_run_at) == (False, None)
    engine.dispose()


def test_job_names() -> None:
    assert job_name("replicate", "fs1") == "replicate:fs1"
    assert job_name("verify", "fs1", "dc-a") == "verify:fs1:dc-a"


def test_next_fire_is_strictly_after() -> None:
    assert next_fire("20 * * * *", at("2026-11-02 10:20:00")) == at("2026-11-02 11:20:00")
    assert next_fire("20 * * * *", at("2026-11-02 10:19:59")) == at("2026-11-02 10:20:00")
    # cron's Sunday is 0, not APScheduler's Monday
    assert next_fire("0 4 * * 0", at("2026-11-02 00:00:00")).weekday() == 6


def test_last_fire_at_or_before() -> None:
    assert last_fire("20 * * * *", at("2026-11-02 10:20:00")) == at("2026-11-02 10:20:00")
    assert last_fire("20 * * * *", at("2026-11-02 10:19:59")) == at("2026-11-02 09:20:00")
    assert last_fire("0 4 * * 0", at("2026-11-02 00:00:00")) == at("2026-11-01 04:00:00")
    assert last_fire("20 * * * *", at("2026-11-02 10:19:59"),
                     since=at("2026-11-02 09:30:00")) is None
    # a minutely schedule missed for a long time is found without stepping every minute
    assert last_fire("* * * * *", at("2026-11-02 10:19:30"),
                     since=at("2025-01-01 00:00:00")) == at("2026-11-02 10:19:00")


def test_catch_up_queues_the_latest_missed_slot_once() -> None:
    # due at 10:20, the daemon was down until 14:05: one run, for the 13:20 slot
    decision = catch_up("20 * * * *", at("2026-11-02 10:20:00"), at("2026-11-02 14:05:00"))
    assert decision.slot == at("2026-11-02 13:20:00")
    assert decision.next_run_at == at("2026-11-02 14:20:00")
    # asked again after that: nothing more to catch up
    again = catch_up("20 * * * *", decision.next_run_at, at("2026-11-02 14:06:00"))
    assert again.slot is None and again.next_run_at == at("2026-11-02 14:20:00")


def test_catch_up_of_a_slot_due_exactly_now_and_of_a_new_job() -> None:
    decision = catch_up("0 2 * * *", at("2026-11-02 02:00:00"), at("2026-11-02 02:00:00"))
    assert decision == type(decision)(at("2026-11-02 02:00:00"), at("2026-11-03 02:00:00"))
    fresh = catch_up("0 2 * * *", None, at("2026-11-02 03:00:00"))
    assert fresh.slot is None and fresh.next_run_at == at("2026-11-03 02:00:00")


def test_catch_up_refuses_a_bad_schedule() -> None:
    with pytest.raises(ValueError):
        catch_up("not cron", at("2026-11-02 02:00:00"), at("2026-11-02 03:00:00"))
