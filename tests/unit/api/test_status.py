"""Whether a system is inside its RPO: pure decisions of drd.services.status."""

from __future__ import annotations

import datetime as dt

import pytest

from drd.services.status import (
    BackupFacts,
    SystemStatus,
    assess,
    is_good_backup,
    newest_good_backup,
    totals,
)

UTC = dt.UTC
NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
HOUR = dt.timedelta(hours=1)


def _facts(hours_ago: float, partial: bool = False, present: int = 2,
           status: str = "active") -> BackupFacts:
    return BackupFacts(time=NOW - dt.timedelta(hours=hours_ago), partial=partial,
                       present_copies=present, status=status)


@pytest.mark.parametrize(("facts", "good"), [
    (_facts(1), True),
    (_facts(1, present=3), True),
    (_facts(1, present=1), False),  # below min_copies: not durable
    (_facts(1, partial=True), False),
    (_facts(1, status="forgotten"), False),
    # a report the centre has not seen in the stores, or found they do not hold
    (_facts(1, status="unconfirmed"), False),
    (_facts(1, status="rejected"), False),
])
def test_a_good_backup_is_complete_durable_and_kept(facts: BackupFacts, good: bool) -> None:
    assert is_good_backup(facts, min_copies=2) is good


def test_the_newest_good_backup_skips_bad_ones() -> None:
    snapshots = [_facts(5), _facts(3), _facts(1, partial=True), _facts(0.5, present=1)]
    assert newest_good_backup(snapshots, min_copies=2) == NOW - dt.timedelta(hours=3)
    assert newest_good_backup([], min_copies=2) is None
    assert newest_good_backup([_facts(1, present=1)], min_copies=2) is None


def test_an_unconfirmed_or_rejected_newer_report_does_not_move_the_newest_good_backup(
        ) -> None:
    snapshots = [_facts(3), _facts(-0.1, status="unconfirmed", present=3),
                 _facts(0.5, status="rejected", present=3)]
    assert newest_good_backup(snapshots, min_copies=2) == NOW - dt.timedelta(hours=3)


@pytest.mark.parametrize(("age", "late"), [
    (dt.timedelta(0), False),
    (HOUR - dt.timedelta(seconds=1), False),
    (HOUR, False),  # exactly at the RPO is still inside it
    (HOUR + dt.timedelta(seconds=1), True),
    (dt.timedelta(days=3), True),
])
def test_an_enrolled_system_is_late_when_its_backup_is_older_than_the_rpo(
        age: dt.timedelta, late: bool) -> None:
    standing = assess(status="enrolled", last_backup_at=NOW - age,
                      enrolled_at=NOW - dt.timedelta(days=30), rpo=HOUR, now=NOW)
    assert standing.late is late
    assert standing.age == age


def test_before_its_first_backup_a_system_gets_one_rpo_from_enrollment() -> None:
    def late(enrolled_ago: dt.timedelta) -> bool:
        return assess(status="enrolled", last_backup_at=None, enrolled_at=NOW - enrolled_ago,
                      rpo=HOUR, now=NOW).late

    assert late(dt.timedelta(minutes=30)) is False
    assert late(HOUR + dt.timedelta(minutes=1)) is True


@pytest.mark.parametrize("status", ["pending", "retired"])
def test_a_system_that_is_not_enrolled_is_never_late(status: str) -> None:
    standing = assess(status=status, last_backup_at=NOW - dt.timedelta(days=9),
                      enrolled_at=None, rpo=HOUR, now=NOW)
    assert standing.late is False and standing.age == dt.timedelta(days=9)


def test_no_rpo_means_never_late_and_a_future_backup_has_age_zero() -> None:
    assert assess(status="enrolled", last_backup_at=NOW - dt.timedelta(days=9),
                  enrolled_at=NOW, rpo=None, now=NOW).late is False
    future = assess(status="enrolled", last_backup_at=NOW + HOUR, enrolled_at=NOW,
                    rpo=HOUR, now=NOW)
    assert future.age == dt.timedelta(0) and not future.late


def _status(name: str, status: str, late: bool, age: dt.timedelta | None) -> SystemStatus:
    return SystemStatus(system=name, department="parks", policy="fileserver", status=status,
                        hostname=None, enrolled_at=None, last_backup_at=None, age=age,
                        rpo=HOUR, late=late, snapshots=0, last_seen_at=None,
                        backup_requested=False)


def test_totals_and_the_json_form() -> None:
    statuses = [_status("a", "enrolled", True, dt.timedelta(hours=26, minutes=5)),
                _status("b", "enrolled", False, dt.timedelta(minutes=12)),
                _status("c", "pending", False, None)]

    assert totals(statuses) == {"systems": 3, "enrolled": 2, "pending": 1, "late": 1}
    shown = [s.as_dict() for s in statuses]
    assert [s["age"] for s in shown] == ["1d2h", "12m", None]
    assert shown[0]["age_seconds"] == 26 * 3600 + 300
    assert shown[0]["rpo"] == "1h" and shown[0]["rpo_seconds"] == 3600
