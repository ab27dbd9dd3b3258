"""Catalog copies: how long they are locked, and which old ones go now or later (pure)."""

from __future__ import annotations

import datetime as dt

from drd.recovery.copies import (
    DEFAULT_LOCK_DAYS,
    copy_key,
    copy_lock_days,
    copy_time,
    prune_plan,
)

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
POLICIES = [{"policy": "a", "stores": ["vault", "dc-a"], "object_lock_days": 7},
            {"policy": "b", "stores": ["vault"], "object_lock_days": 30},
            {"policy": "c", "stores": ["dc-a"]}]


def test_copies_are_locked_as_long_as_the_longest_policy_on_the_store():
    assert copy_lock_days("vault", True, POLICIES) == 30
    assert copy_lock_days("dc-a", True, POLICIES) == 7
    assert copy_lock_days("dc-a", False, POLICIES) == 0  # no Object Lock: no retention
    assert copy_lock_days("spare", True, POLICIES) == DEFAULT_LOCK_DAYS  # no policy on it
    assert copy_lock_days("dc-a", True, [POLICIES[2]]) == DEFAULT_LOCK_DAYS


def test_a_copy_key_tells_its_time():
    assert copy_time(copy_key(NOW)) == NOW
    assert copy_time("_drd-centre/catalog-garbage.bin") is None
    assert copy_time("_drd-centre/latest") is None


def hours_ago(*hours: int) -> list[str]:
    return [copy_key(NOW - dt.timedelta(hours=hour)) for hour in hours]


def test_beyond_the_kept_generations_unlocked_copies_go_and_locked_ones_wait():
    keys = hours_ago(0, 1, 2, 3, 4, 50, 200)
    now, later = prune_plan(keys, 5, 3, NOW, keys[0])
    assert now == [keys[6]] and later == [keys[5]]  # 200 h is past 3 days; 50 h is not


def test_without_a_lock_every_old_generation_goes_never_the_newest():
    keys = hours_ago(0, 1, 2, 3, 4, 50, 200)
    now, later = prune_plan(keys, 5, 0, NOW, keys[0])
    assert sorted(now) == sorted(keys[5:]) and later == []
    delete, _ = prune_plan(keys, 1, 0, NOW, newest=keys[6])
    assert keys[6] not in delete


def test_a_name_that_tells_no_time_is_tried_now():
    keys = [*hours_ago(0, 1), "_drd-centre/catalog-0.bin"]
    assert prune_plan(keys, 1, 3, NOW, keys[0]) == (["_drd-centre/catalog-0.bin"],
                                                     [keys[1]])
