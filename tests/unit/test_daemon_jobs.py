"""Jobs derived from policies, fire times, and the catch-up decision (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from drd.daemon.jobs import (
    PolicedSystem,
    catch_up,
    derive_jobs,
    job_name,
    last_fire,
    next_fire,
    policy_schedules,
)

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
