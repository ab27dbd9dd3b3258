"""policies.retention: restic's forget --keep-* rules, golden cases and properties."""

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.retention import NO_RULES_REASON, Snapshot, apply_retention
from policies.schema import Retention

GOLDEN = Path(__file__).parent / "golden"
COUNT_RULES = ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly",
               "keep_yearly"]


def timestamp(text):
    return datetime.fromisoformat(text)


def golden_cases():
    for path in sorted(GOLDEN.glob("retention_*.json")):
        golden = json.loads(path.read_text())
        snapshots = [Snapshot(s["id"], timestamp(s["time"])) for s in golden["snapshots"]]
        for case in golden["cases"]:
            expected = [(entry["id"], entry["reasons"]) if isinstance(entry, dict)
                        else tuple(entry) for entry in case["keep"]]
            now = timestamp(case.get("now", golden["now"]))
            yield pytest.param(snapshots, case["rules"], now, expected,
                               id=f"{path.stem}: {case['name']}")


@pytest.mark.parametrize(("snapshots", "rules", "now", "expected"), list(golden_cases()))
def test_golden(snapshots, rules, now, expected):
    plan = apply_retention(snapshots, Retention.model_validate(rules), now)
    assert [(s.id, plan.reasons[s.id]) for s in plan.keep] == [
        (snapshot_id, list(reasons)) for snapshot_id, reasons in expected]
    kept = {snapshot_id for snapshot_id, _ in expected}
    assert {s.id for s in plan.remove} == {s.id for s in snapshots} - kept


def test_restic_golden_files_are_all_there():
    golden = json.loads((GOLDEN / "retention_restic.json").read_text())
    assert len(golden["snapshots"]) == 103
    assert len(golden["cases"]) >= 9


NOW = datetime(2024, 6, 1, tzinfo=UTC)


def test_no_snapshots_no_plan():
    plan = apply_retention([], Retention(keep_last=3), NOW)
    assert (plan.keep, plan.remove, plan.reasons) == ([], [], {})


def test_empty_rules_keep_everything():
    snapshots = [Snapshot("a", NOW - timedelta(days=400)), Snapshot("b", NOW)]
    plan = apply_retention(snapshots, Retention(), NOW)
    assert [s.id for s in plan.keep] == ["b", "a"]
    assert plan.reasons == {"a": [NO_RULES_REASON], "b": [NO_RULES_REASON]}


def test_buckets_are_utc_days_whatever_the_offset_of_the_input():
    minus_two = timezone(timedelta(hours=-2))
    early = Snapshot("early", datetime(2024, 1, 2, 0, 30, tzinfo=UTC))
    # 23:30 on the 1st at -02:00 is 01:30 on the 2nd in UTC: the same UTC day
    late = Snapshot("late", datetime(2024, 1, 1, 23, 30, tzinfo=minus_two))
    plan = apply_retention([early, late], Retention(keep_daily=1), NOW)
    assert [s.id for s in plan.keep] == ["late"]
    assert [s.id for s in plan.remove] == ["early"]


def test_keep_within_counts_from_the_newest_snapshot_not_from_now():
    old = [Snapshot(f"s{day}", datetime(2020, 1, day, tzinfo=UTC)) for day in range(1, 11)]
    plan = apply_retention(old, Retention(keep_within=timedelta(days=3)), NOW)
    assert [s.id for s in plan.keep] == ["s10", "s9", "s8"]


def test_every_snapshot_in_the_future_is_within():
    future = [Snapshot("a", NOW + timedelta(days=1)), Snapshot("b", NOW + timedelta(days=9))]
    plan = apply_retention(future, Retention(keep_within=timedelta(days=1)), NOW)
    assert [s.id for s in plan.keep] == ["b", "a"]


def test_keep_within_reaching_before_year_one_keeps_everything():
    ancient = [Snapshot("a", datetime(1, 3, 1, tzinfo=UTC)),
               Snapshot("b", datetime(2, 1, 1, tzinfo=UTC))]
    plan = apply_retention(ancient, Retention(keep_within=timedelta(days=36500)), NOW)
    assert [s.id for s in plan.keep] == ["b", "a"]


@pytest.mark.parametrize(
    ("snapshots", "now", "message"),
    [
        ([Snapshot("a", datetime(2024, 1, 1))], NOW, "without a timezone"),
        ([Snapshot("a", NOW)], datetime(2024, 1, 1), "now must be timezone-aware"),
        ([Snapshot("a", NOW), Snapshot("a", NOW - timedelta(1))], NOW, "given twice"),
    ],
)
def test_bad_input_is_refused(snapshots, now, message):
    with pytest.raises(ValueError, match=message):
        apply_retention(snapshots, Retention(keep_last=1), now)


def test_other_snapshot_types_are_returned_as_given():
    class Recorded:
        def __init__(self, snapshot_id, time):
            self.id, self.time, self.host = snapshot_id, time, "db1"

    records = [Recorded("a", NOW), Recorded("b", NOW - timedelta(days=1))]
    plan = apply_retention(records, Retention(keep_last=1), NOW)
    assert plan.keep == [records[0]] and plan.remove == [records[1]]


# -- properties ------------------------------------------------------------------------

START = datetime(2019, 12, 20, tzinfo=UTC)

times = st.integers(min_value=0, max_value=3 * 365 * 24 * 60).map(
    lambda minutes: START + timedelta(minutes=minutes))
snapshot_lists = st.lists(times, max_size=40).map(
    lambda moments: [Snapshot(f"s{index}", moment) for index, moment in enumerate(moments)])
counts = st.integers(min_value=0, max_value=12)
rule_sets = st.builds(
    Retention,
    keep_last=counts, keep_hourly=counts, keep_daily=counts, keep_weekly=counts,
    keep_monthly=counts, keep_yearly=counts,
    keep_within=st.none() | st.integers(min_value=1, max_value=400).map(
        lambda days: timedelta(days=days)),
)
nows = st.sampled_from([START, START + timedelta(days=600), START + timedelta(days=3000)])


def newest_first(snapshots):
    return sorted(snapshots, key=lambda s: s.time, reverse=True)


@settings(max_examples=200)
@given(snapshot_lists, rule_sets, nows)
def test_keep_and_remove_split_the_snapshots(snapshots, rules, now):
    plan = apply_retention(snapshots, rules, now)
    kept, removed = [s.id for s in plan.keep], [s.id for s in plan.remove]
    assert sorted(kept + removed) == sorted(s.id for s in snapshots)
    assert not set(kept) & set(removed)
    assert set(plan.reasons) == set(kept)
    assert all(plan.reasons[snapshot_id] for snapshot_id in kept)
    order = [s.id for s in newest_first(snapshots)]
    assert kept == [i for i in order if i in set(kept)]
    assert removed == [i for i in order if i in set(removed)]


@given(snapshot_lists, st.integers(min_value=1, max_value=50))
def test_keep_last_keeps_exactly_the_newest(snapshots, count):
    plan = apply_retention(snapshots, Retention(keep_last=count), NOW)
    assert plan.keep == newest_first(snapshots)[:count]


@settings(max_examples=200)
@given(snapshot_lists, rule_sets, st.sampled_from(COUNT_RULES), st.integers(1, 5), nows)
def test_a_larger_count_never_removes_more(snapshots, rules, rule, more, now):
    larger = rules.model_copy(update={rule: getattr(rules, rule) + more})
    removed = {s.id for s in apply_retention(snapshots, rules, now).remove}
    removed_with_larger = {s.id for s in apply_retention(snapshots, larger, now).remove}
    if not rules.is_empty():  # with no rule everything was kept already
        assert removed_with_larger <= removed


@given(snapshot_lists, rule_sets.filter(lambda r: not r.is_empty() and not r.keep_within))
def test_no_more_kept_than_the_counts_allow(snapshots, rules):
    plan = apply_retention(snapshots, rules, NOW)
    assert len(plan.keep) <= sum(getattr(rules, rule) for rule in COUNT_RULES)


@given(snapshot_lists, st.sampled_from(COUNT_RULES[1:]))
def test_a_bucket_rule_with_count_to_spare_keeps_the_newest_and_the_oldest(snapshots, rule):
    plan = apply_retention(snapshots, Retention(**{rule: 1000}), NOW)
    ordered = newest_first(snapshots)
    if ordered:
        assert plan.keep[0] is ordered[0]
        assert plan.keep[-1] is ordered[-1]
