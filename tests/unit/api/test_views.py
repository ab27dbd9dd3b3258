"""The read API's pure parts: the overall verdict, policy rules, store states, cursors
and pages, and who may see what."""

from __future__ import annotations

import datetime as dt

import pytest

from drd.services.paging import InvalidCursor, decode_cursor, encode_cursor, page_of
from drd.services.status import PolicyRules, overall_verdict, rules_of
from drd.services.tokens import Principal
from drd.services.views import store_state
from drd.verification.select import DEFAULT_PERIOD

UTC = dt.UTC
HOUR = dt.timedelta(hours=1)


@pytest.mark.parametrize(("late", "alerts", "down", "verdict"), [
    (0, {}, 0, "ok"),
    (0, {"critical": 0, "warning": 0}, 0, "ok"),
    (0, {"critical": 0, "warning": 2}, 0, "warning"),
    (0, {"info": 1}, 0, "warning"),
    (1, {}, 0, "critical"),
    (0, {"critical": 1, "warning": 3}, 0, "critical"),
    (0, {}, 1, "critical"),
])
def test_the_verdict_is_critical_for_a_late_system_a_critical_alert_or_a_store_down(
        late: int, alerts: dict[str, int], down: int, verdict: str) -> None:
    assert overall_verdict(late=late, alerts=alerts, stores_down=down) == verdict


def test_policy_rules_take_the_drill_plans_own_targets_and_defaults() -> None:
    rules = rules_of("fileserver", {"rpo": "1h", "rto": "4h", "min_copies": 2,
                                    "drill": {"rto": "2h"}, "verification": {"period": "7d"}})
    assert rules == PolicyRules(name="fileserver", min_copies=2, rpo=HOUR, rto=2 * HOUR,
                                drill_rpo=HOUR, verification_period=dt.timedelta(days=7))
    assert rules_of(None, None) == PolicyRules()
    odd = rules_of("odd", {"rpo": "soon", "min_copies": "x", "verification": {"period": 3}})
    assert (odd.rpo, odd.min_copies, odd.verification_period) == (None, 1, DEFAULT_PERIOD)


def test_a_store_is_up_down_or_unknown_by_its_last_probe() -> None:
    assert [store_state(value) for value in (True, False, None)] == ["up", "down", "unknown"]


@pytest.mark.parametrize(("key", "kinds"), [
    (("fs1",), (str,)),
    ((42,), (int,)),
    ((dt.datetime(2026, 12, 2, 10, 30, 5, 120, tzinfo=UTC), 7), (dt.datetime, int)),
])
def test_a_cursor_gives_back_its_key(key: tuple, kinds: tuple) -> None:
    cursor = encode_cursor(key)
    assert cursor.isascii() and "=" not in cursor and "/" not in cursor
    assert decode_cursor(cursor, kinds) == key


@pytest.mark.parametrize(("cursor", "kinds"), [
    ("!!", (str,)),
    ("", (str,)),
    (encode_cursor(("fs1",)), (int,)),  # another list's cursor
    (encode_cursor((1, 2)), (int,)),
    (encode_cursor((True,)), (int,)),
    (encode_cursor(("2026-12-02T10:00:00",)), (dt.datetime,)),  # no time zone
    (encode_cursor(("yesterday",)), (dt.datetime,)),
    (encode_cursor(("a\x00b",)), (str,)),  # PostgreSQL refuses NUL in text
    (encode_cursor((2**70,)), (int,)),
    (encode_cursor((2**31,)), (int,)),  # past PostgreSQL's INTEGER ids
    (encode_cursor((-1,)), (int,)),
    (encode_cursor(("\ud800",)), (str,)),
    ("QQ" * 300, (str,)),
])
def test_a_cursor_that_this_list_did_not_hand_out_is_refused(cursor: str, kinds: tuple) -> None:
    with pytest.raises(InvalidCursor, match="cursor"):
        decode_cursor(cursor, kinds)


def test_a_page_keeps_limit_items_and_names_the_last_one_when_more_follow() -> None:
    rows = ["a", "b", "c"]
    assert page_of(rows, 3, lambda row: (row,)) == (rows, None)
    items, following = page_of(rows, 2, lambda row: (row,))
    assert items == ["a", "b"] and decode_cursor(following, (str,)) == ("b",)


@pytest.mark.parametrize(("principal", "department", "system", "reads", "requests"), [
    (Principal(1, "ops", "operator"), "roads", "db", True, False),
    (Principal(1, "root", "admin"), "roads", "db", True, True),
    (Principal(1, "p", "owner", departments=("parks",)), "parks", "fs1", True, True),
    (Principal(1, "p", "owner", departments=("parks",)), "roads", "db", False, False),
    (Principal(1, "p", "owner", systems=("db",)), "roads", "db", True, True),
    (Principal(1, "agent:fs1", "agent", ("parks",), ("fs1",)), "parks", "fs1", True, False),
    (Principal(1, "agent:fs1", "agent", ("parks",), ("fs1",)), "parks", "fs2", False, False),
])
def test_who_may_read_and_request(principal: Principal, department: str, system: str,
                                  reads: bool, requests: bool) -> None:
    assert principal.may_read(department, system) is reads
    assert principal.may_request(department, system) is requests
