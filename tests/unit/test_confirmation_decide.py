"""When a reported snapshot counts, waits or is rejected, from what the stores showed."""

from __future__ import annotations

import datetime as dt

import pytest

from drd.confirmation.decide import CONFIRM_WITHIN, Evidence, Verdict, judge
from drd.confirmation.run import copy_state_found

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
JUST = NOW - dt.timedelta(minutes=1)
LONG_AGO = NOW - CONFIRM_WITHIN - dt.timedelta(minutes=1)


def verdict(evidence: Evidence, *, min_copies: int = 2, reported_at: dt.datetime = JUST
            ) -> Verdict:
    return judge(evidence, min_copies=min_copies, reported_at=reported_at, now=NOW).verdict


@pytest.mark.parametrize(("evidence", "min_copies", "expected"), [
    # held by enough stores: it counts, whatever the others say
    (Evidence.of(held=["a", "b"]), 2, Verdict.CONFIRM),
    (Evidence.of(held=["a", "b"], lacking=["c"]), 2, Verdict.CONFIRM),
    (Evidence.of(held=["a", "b"], unknown=["c"]), 2, Verdict.CONFIRM),
    (Evidence.of(held=["a"], lacking=["b"]), 1, Verdict.CONFIRM),
    # every store answered without it: a real report is held by min_copies stores
    (Evidence.of(lacking=["a", "b"]), 2, Verdict.REJECT),
    (Evidence.of(lacking=["a", "b", "c"]), 1, Verdict.REJECT),
    # the one store down could not hold two copies alone
    (Evidence.of(lacking=["a", "b"], unknown=["c"]), 2, Verdict.REJECT),
    # two stores down could hold it: wait
    (Evidence.of(lacking=["a"], unknown=["b", "c"]), 2, Verdict.WAIT),
    (Evidence.of(unknown=["a", "b"]), 2, Verdict.WAIT),
    # some store holds it, too few do: replication copies it, the next look decides
    (Evidence.of(held=["a"], lacking=["b"]), 2, Verdict.WAIT),
    (Evidence.of(held=["a"], lacking=["b", "c"]), 3, Verdict.WAIT),
])
def test_a_report_counts_once_min_copies_stores_hold_it(evidence, min_copies, expected):
    assert verdict(evidence, min_copies=min_copies) is expected


def test_a_report_whose_snapshot_never_appears_is_rejected_after_the_bound():
    # stores that could hold it are down, one that answered lacks it
    evidence = Evidence.of(lacking=["a"], unknown=["b", "c"])
    assert verdict(evidence, reported_at=NOW - CONFIRM_WITHIN + dt.timedelta(seconds=1)) \
        is Verdict.WAIT
    judgement = judge(evidence, min_copies=2, reported_at=LONG_AGO, now=NOW)
    assert judgement.verdict is Verdict.REJECT
    assert judgement.reason == "not in a 61m after the report (b, c could not be asked)"


def test_what_cannot_be_checked_waits_however_long():
    # no store answered: nothing says the report is false
    assert verdict(Evidence.of(unknown=["a", "b", "c"]), reported_at=LONG_AGO) is Verdict.WAIT
    # held by one, too few: never rejected for the time alone (it appeared)
    assert verdict(Evidence.of(held=["a"], unknown=["b", "c"]), reported_at=LONG_AGO) \
        is Verdict.WAIT


def test_reasons_name_the_stores():
    assert judge(Evidence.of(held=["far", "dc-a"]), min_copies=2, reported_at=JUST,
                 now=NOW).reason == "held by dc-a, far"
    assert judge(Evidence.of(lacking=["far", "dc-a"]), min_copies=2, reported_at=JUST,
                 now=NOW).reason == "no store holds it (dc-a, far answered without it)"
    with pytest.raises(ValueError, match="min_copies"):
        judge(Evidence.of(), min_copies=0, reported_at=JUST, now=NOW)


@pytest.mark.parametrize(("claimed", "where", "caught_up", "expected"), [
    ("present", "held", False, "present"),
    ("missing", "held", False, "missing"),  # replication repairs what the agent missed
    ("missing", "held", True, "present"),  # ... and has done so since the report
    (None, "held", False, "pending"),
    (None, "held", True, "present"),
    ("present", "lacking", True, "missing"),  # the claim was false there
    (None, "lacking", False, "missing"),
    ("present", "unknown", False, "pending"),  # not seen: no longer taken on trust
    ("missing", "unknown", False, "missing"),
    (None, "unknown", False, "pending"),
])
def test_a_confirmed_copy_is_what_was_found(claimed, where, caught_up, expected):
    assert copy_state_found(claimed, where, caught_up) == expected
