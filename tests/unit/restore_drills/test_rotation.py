"""restore_drills.rotation: the next store to drill, and the stores overdue."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from restore_drills.rotation import choose_store, overdue

T0 = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
DAY = timedelta(days=1)
STORES = ["dc-a", "dc-b", "region-b"]


def test_a_store_never_drilled_comes_first_in_policy_order():
    assert choose_store(STORES, {}) == "dc-a"
    assert choose_store(STORES, {"dc-a": T0, "dc-b": None}) == "dc-b"
    assert choose_store(STORES, {"dc-a": T0, "dc-b": T0 + DAY}) == "region-b"


def test_else_the_oldest_attempt_passed_or_failed():
    attempts = {"dc-a": T0 + 2 * DAY, "dc-b": T0, "region-b": T0 + DAY}
    assert choose_store(STORES, attempts) == "dc-b"


def test_ties_go_to_policy_order():
    assert choose_store(STORES, dict.fromkeys(STORES, T0)) == "dc-a"
    assert choose_store(["region-b", "dc-a"], dict.fromkeys(STORES, T0)) == "region-b"


def test_stores_not_in_the_policy_are_ignored():
    assert choose_store(["dc-b"], {"dc-a": None, "dc-b": T0}) == "dc-b"


def test_no_stores_is_an_error():
    with pytest.raises(ValueError):
        choose_store([], {})


def test_overdue_stores_in_policy_order():
    now = T0 + 30 * DAY
    passed = {"dc-a": T0, "dc-b": T0 - DAY, "region-b": now - DAY}
    assert overdue(STORES, passed, 30 * DAY, now) == ["dc-b"]  # dc-a: exactly 30d, in time
    assert overdue(STORES, {"region-b": None}, 30 * DAY, now) == STORES
    assert overdue(STORES, dict.fromkeys(STORES, now), 30 * DAY, now) == []


names = st.lists(st.text("abcdefgh", min_size=1, max_size=3), min_size=1, max_size=8,
                 unique=True)


@given(stores=names, history=st.data())
def test_repeated_choices_visit_every_store_within_as_many_picks(stores, history):
    # any starting history: some stores never drilled, the others at arbitrary times
    attempts = {store: history.draw(st.none() | st.integers(0, 100).map(
        lambda day: T0 + day * DAY)) for store in stores}
    now = T0 + 101 * DAY
    picked = []
    for pick in range(len(stores)):
        store = choose_store(stores, attempts)
        picked.append(store)
        attempts[store] = now + pick * DAY  # each pick is the newest attempt
    assert sorted(picked) == sorted(stores)
