"""The dashboard's pure decisions: RPO state, what comes first, paging, store state."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from drd.services.dashboard import attention_order, paginate, rpo_state, store_state

HOUR = dt.timedelta(hours=1)


def _status(name: str, *, status: str = "enrolled", policy: str | None = "fileserver",
            rpo: dt.timedelta | None = HOUR, late: bool = False,
            age: dt.timedelta | None = None) -> SimpleNamespace:
    """What the decisions read of a :class:`drd.services.status.SystemStatus`."""
    return SimpleNamespace(system=name, department="parks", policy=policy, status=status,
                           age=age, rpo=rpo, late=late)


@pytest.mark.parametrize(("status", "state"), [
    (_status("a"), "ok"),
    (_status("a", late=True, age=2 * HOUR), "late"),
    (_status("a", status="pending"), "pending"),
    (_status("a", policy=None, rpo=None), "no policy"),
    (_status("a", rpo=None), "no policy"),  # a policy without an RPO cannot be judged
])
def test_rpo_state(status: SimpleNamespace, state: str) -> None:
    assert rpo_state(status) == state


def test_late_systems_come_first_the_latest_of_them_at_the_top() -> None:
    ordered = attention_order([
        _status("a-ok"), _status("b-pending", status="pending"),
        _status("c-late", late=True, age=2 * HOUR), _status("d-none", policy=None, rpo=None),
        _status("e-later", late=True, age=9 * HOUR), _status("f-late-never", late=True)])
    assert [status.system for status in ordered] == [
        "f-late-never", "e-later", "c-late", "d-none", "b-pending", "a-ok"]


def test_paging_is_bounded_and_clamped() -> None:
    items = list(range(120))
    first = paginate(items, 1, 50)
    assert (first.items, first.number, first.pages, first.total) == (
        list(range(50)), 1, 3, 120)
    assert (first.previous, first.next) == (None, 2)
    assert paginate(items, 3, 50).items == list(range(100, 120))
    assert paginate(items, 99, 50).number == 3 and paginate(items, 0, 50).number == 1
    empty = paginate([], 5, 50)
    assert (empty.items, empty.number, empty.pages, empty.next) == ([], 1, 1, None)


@pytest.mark.parametrize(("reachable", "state"), [
    (True, "up"), (False, "down"), (None, "not probed yet")])
def test_store_state(reachable: bool | None, state: str) -> None:
    assert store_state(reachable) == state
