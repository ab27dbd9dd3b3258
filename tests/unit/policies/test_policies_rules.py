"""policies.rules and policies.object_lock: the rules across fields."""

from datetime import timedelta

import pytest

from policies.loader import parse_policy_text
from policies.object_lock import FOREVER, object_lock_problem, retention_horizon
from policies.schema import Retention

from .policies_cases import DEMO_REGIONS, VALID, edit, only_problem

ONE_REGION = {"dc-a": "region-a", "dc-b": "region-a", "region-b": "region-a"}


def test_min_copies_cannot_exceed_the_stores():
    text = edit(VALID, "min_copies: 2", "min_copies: 4")
    assert only_problem(text) == (
        10, "min_copies",
        "is 4 but only 3 store(s) are named; name more stores or lower min_copies")
    parse_policy_text(edit(VALID, "min_copies: 2", "min_copies: 3"))


def test_unknown_stores_are_refused_when_the_stores_are_known():
    text = edit(VALID, "stores: [dc-a, dc-b, region-b]", "stores: [dc-a, dc-c, region-b]")
    line, path, message = only_problem(text, DEMO_REGIONS)
    assert (line, path) == (9, "stores[1]")
    assert message.startswith("unknown store 'dc-c' (known: dc-a, dc-b, region-b)")


def test_without_the_stores_unknown_names_and_regions_are_not_checked():
    text = edit(VALID, "stores: [dc-a, dc-b, region-b]", "stores: [dc-a, dc-c, region-b]")
    assert parse_policy_text(text, store_regions=None).stores[1] == "dc-c"


def test_stores_must_span_two_regions():
    line, path, message = only_problem(VALID, ONE_REGION)
    assert (line, path) == (9, "stores")
    assert message == ("every store is in region 'region-a'; name stores in at least two "
                       "regions, or set single_region_ok: true")


def test_single_region_ok_allows_one_region():
    text = VALID + "single_region_ok: true\n"
    assert parse_policy_text(text, store_regions=ONE_REGION).single_region_ok


def test_one_store_is_one_region_even_without_the_catalog():
    text = edit(VALID, "stores: [dc-a, dc-b, region-b]", "stores: [dc-a]")
    text = edit(text, "min_copies: 2", "min_copies: 1")
    assert only_problem(text)[:2] == (9, "stores")
    assert parse_policy_text(text + "single_region_ok: true\n").stores == ["dc-a"]


def test_rpo_cannot_be_shorter_than_the_time_between_backups():
    text = edit(VALID, 'schedule: "0 * * * *"', 'schedule: "0 3 * * *"')
    text = edit(text, "keep_last: 7", "keep_last: 70")
    assert only_problem(text) == (
        15, "rpo", "1h is shorter than the 1d between scheduled backups ('0 3 * * *'); "
        "the system would be late before every backup")
    parse_policy_text(edit(text, "rpo: 1h", "rpo: 25h"))


def test_object_lock_longer_than_the_retention_is_refused():
    text = edit(VALID, "object_lock_days: 7", "object_lock_days: 15")
    line, path, message = only_problem(text)
    assert (line, path) == (14, "object_lock_days")
    assert message.startswith("15 days is longer than the retention keeps any snapshot "
                              "(at most 14d, by keep_daily: 14 with a backup every 1h)")
    parse_policy_text(edit(VALID, "object_lock_days: 7", "object_lock_days: 14"))


def test_object_lock_with_keep_last_only_depends_on_the_schedule():
    text = edit(VALID, "  keep_daily: 14\n", "")
    text = edit(text, "keep_last: 7", "keep_last: 48")  # 48 hourly backups: two days
    parse_policy_text(edit(text, "object_lock_days: 7", "object_lock_days: 2"))
    assert only_problem(edit(text, "object_lock_days: 7", "object_lock_days: 3"))[1] == \
        "object_lock_days"


def test_no_retention_rule_keeps_everything_so_any_lock_fits():
    text = edit(VALID, "retention:\n  keep_last: 7\n  keep_daily: 14\n", "retention: {}\n")
    assert parse_policy_text(edit(text, "object_lock_days: 7",
                                  "object_lock_days: 3650")).retention.is_empty()


DAILY = timedelta(days=1)
HOURLY = timedelta(hours=1)


@pytest.mark.parametrize(
    ("rules", "interval", "horizon"),
    [
        ({}, HOURLY, None),
        ({"keep_last": 7}, HOURLY, (timedelta(hours=7), "keep_last: 7")),
        ({"keep_hourly": 24}, HOURLY, (timedelta(hours=24), "keep_hourly: 24")),
        # one backup a day: 24 "hourly" snapshots reach back 24 days
        ({"keep_hourly": 24}, DAILY, (timedelta(days=24), "keep_hourly: 24")),
        ({"keep_daily": 14, "keep_weekly": 8}, HOURLY, (timedelta(weeks=8), "keep_weekly: 8")),
        ({"keep_monthly": 12}, DAILY, (timedelta(days=372), "keep_monthly: 12")),
        ({"keep_yearly": 3, "keep_last": 5}, DAILY, (timedelta(days=1098), "keep_yearly: 3")),
        ({"keep_within": "30d", "keep_daily": 7}, DAILY, (timedelta(days=30), "keep_within: 30d")),
    ],
)
def test_retention_horizon(rules, interval, horizon):
    assert retention_horizon(Retention.model_validate(rules), interval) == horizon


@pytest.mark.parametrize(
    ("days", "rules", "refused"),
    [
        (0, {"keep_last": 1}, False),
        (7, {"keep_daily": 7}, False),
        (8, {"keep_daily": 7}, True),
        (30, {"keep_within": "30d"}, False),
        (31, {"keep_within": "30d"}, True),
        (10000, {}, False),
    ],
)
def test_object_lock_problem(days, rules, refused):
    problem = object_lock_problem(days, Retention.model_validate(rules), DAILY)
    assert (problem is not None) == refused


def test_the_horizon_arithmetic_never_overflows():
    # beyond the schema's bounds (model_construct skips validation): no OverflowError
    huge = Retention.model_construct(keep_last=0, keep_hourly=0, keep_daily=0, keep_weekly=0,
                                     keep_monthly=0, keep_yearly=10**12, keep_within=None)
    assert retention_horizon(huge, DAILY) == (FOREVER, f"keep_yearly: {10**12}")
    assert object_lock_problem(10**12, huge, DAILY) is None
    small = Retention(keep_daily=7)
    assert object_lock_problem(10**12, small, DAILY).startswith(
        f"{10**12} days is longer than the retention keeps any snapshot (at most 7d")
    assert object_lock_problem(1_000_000_000, small, DAILY) is not None


def test_the_largest_counts_with_a_rare_schedule_compute():
    most = Retention(keep_yearly=100_000)
    horizon, rule = retention_horizon(most, timedelta(days=4 * 366))
    assert (horizon, rule) == (timedelta(days=100_000 * 4 * 366), "keep_yearly: 100000")
    assert object_lock_problem(36500, most, timedelta(days=4 * 366)) is None
