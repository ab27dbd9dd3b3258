"""Verification's decisions: selection within a budget, the default budget, coverage."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drd.verification.select import (
    Coverage,
    CoverageCounts,
    LedgerEntry,
    budget_for,
    coverage,
    coverage_from_counts,
    default_budget,
    parse_size,
    run_interval,
    runs_per_period,
    select_for_verification,
    share_of_budget,
    verification_order,
)
from policies.cron import cron_trigger

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
PERIOD = dt.timedelta(days=30)
MIB = 1 << 20


def entry(key: str, size: int = 10, *, seen: int = 0, verified: int | None = None,
          state: str = "present") -> LedgerEntry:
    return LedgerEntry(key=key, size=size, first_seen_at=T0 + seen * DAY,
                       verified_at=None if verified is None else T0 + verified * DAY,
                       period=PERIOD, state=state)


# --- selection --------------------------------------------------------------------------


def test_never_verified_first_oldest_first_then_least_recently_verified():
    entries = [entry("v-new", verified=9), entry("n-late", seen=5), entry("v-old", verified=2),
               entry("n-early", seen=1), entry("c", state="corrupt", seen=8, verified=3)]
    order = [e.key for e in verification_order(entries)]
    assert order == ["c", "n-early", "n-late", "v-old", "v-new"]


def test_missing_and_lost_are_never_selected():
    entries = [entry("m", state="missing"), entry("l", state="lost"), entry("p")]
    assert [e.key for e in select_for_verification(entries, None)] == ["p"]


def test_budget_is_spent_and_the_last_object_may_run_past_it():
    entries = [entry(f"k{i}", size=40, seen=i) for i in range(10)]
    chosen = select_for_verification(entries, 100)
    assert [e.key for e in chosen] == ["k0", "k1", "k2"]  # 80 < 100, then 120


def test_at_least_one_object_however_small_the_budget():
    entries = [entry("big", size=10 * MIB), entry("small", size=1, seen=1)]
    assert [e.key for e in select_for_verification(entries, 1)] == ["big"]
    assert select_for_verification([], 1) == []


def test_none_budget_takes_everything_readable():
    entries = [entry(f"k{i}") for i in range(5)] + [entry("m", state="missing")]
    assert len(select_for_verification(entries, None)) == 5


entries_strategy = st.lists(
    st.builds(entry, key=st.text("abcdef0123456789", min_size=1, max_size=8),
              size=st.integers(0, 1000), seen=st.integers(0, 60),
              verified=st.one_of(st.none(), st.integers(0, 60)),
              state=st.sampled_from(["present", "present", "corrupt", "missing", "lost"])),
    max_size=40, unique_by=lambda e: e.key)


@given(entries_strategy, st.integers(1, 5000))
def test_selection_properties(entries, budget):
    chosen = select_for_verification(entries, budget)
    readable = [e for e in entries if e.state in ("present", "corrupt")]
    assert all(e.state in ("present", "corrupt") for e in chosen)
    # a prefix of the queue
    assert chosen == verification_order(entries)[:len(chosen)]
    if readable:
        assert chosen
    spent = sum(e.size for e in chosen)
    if len(chosen) < len(readable):
        assert spent >= budget  # stopped only once the budget was spent
    if chosen:
        assert spent - chosen[-1].size < budget  # and no later than that
    # never verified before verified ones (corrupt ones aside)
    kinds = [0 if e.state == "corrupt" else (1 if e.verified_at is None else 2)
             for e in chosen]
    assert kinds == sorted(kinds)


# --- budgets ----------------------------------------------------------------------------


def test_default_budget_reads_the_daily_share_with_a_margin():
    total = 30 * 1024 * MIB
    assert default_budget(total, DAY, PERIOD) == 1280 * MIB  # 1 GiB a day, x1.25
    assert default_budget(total, PERIOD * 2, PERIOD) == int(total * 1.25)
    assert default_budget(0, DAY, PERIOD) == 1


def test_runs_per_period_and_interval():
    assert runs_per_period(DAY, PERIOD) == 30
    assert runs_per_period(dt.timedelta(days=3), dt.timedelta(days=7)) == 2
    assert runs_per_period(PERIOD * 2, PERIOD) == 1
    assert run_interval("0 2 * * *") == DAY
    assert run_interval("0 2 * * 1-5") == dt.timedelta(days=3)  # Friday to Monday
    assert run_interval("*/15 * * * *") == dt.timedelta(minutes=15)
    with pytest.raises(ValueError):
        run_interval("not cron")
    with pytest.raises(ValueError):
        runs_per_period(dt.timedelta(0), PERIOD)


def test_configured_budget_is_shared_among_systems_by_size():
    assert share_of_budget(1000, 250, 1000) == 250
    assert share_of_budget(1000, 1000, 1000) == 1000
    assert share_of_budget(1000, 0, 0) == 1000
    assert share_of_budget(1000, 1, 10**9) == 1
    assert budget_for(300, configured=1000, store_bytes=600) == 500
    assert budget_for(30 * MIB, schedule="0 2 * * *", period=PERIOD) == \
        default_budget(30 * MIB, DAY, PERIOD)


def simulate(schedule: str, period: dt.timedelta, runs: int, seed: int,
             growth: float) -> None:
    """Run verification on ``schedule`` over a store that grows and shrinks; after a
    first period, no object may ever have gone longer than ``period`` unproven."""
    rng = random.Random(seed)
    trigger = cron_trigger(schedule)
    interval = run_interval(schedule)
    ledger: dict[str, LedgerEntry] = {}
    serial = 0

    def add(count: int, at: dt.datetime) -> None:
        nonlocal serial
        for _ in range(count):
            serial += 1
            key = f"data/{serial:08d}"
            ledger[key] = LedgerEntry(key=key, size=rng.choice([rng.randint(1, 4 * MIB),
                                                                16 * MIB]),
                                      first_seen_at=at, period=period)

    moment = trigger.get_next_fire_time(None, T0)
    add(300, moment - dt.timedelta(hours=1))
    start = previous = moment
    for _ in range(runs):
        total = sum(e.size for e in ledger.values())
        for e in ledger.values():
            last = e.verified_at or e.first_seen_at
            if moment - start > period:
                assert moment - last <= period, (e.key, moment - last)
        if moment - start > period:
            # new objects wait for the next run; all the others are covered
            settled = [e for e in ledger.values() if e.first_seen_at < previous]
            assert coverage(settled, moment).ratio == 1.0
        budget = default_budget(total, interval, period)
        for chosen in select_for_verification(ledger.values(), budget):
            ledger[chosen.key] = LedgerEntry(key=chosen.key, size=chosen.size,
                                             first_seen_at=chosen.first_seen_at,
                                             verified_at=moment, period=period)
        following = trigger.get_next_fire_time(moment, moment + dt.timedelta(seconds=1))
        # backups add objects between runs (growth per period below the margin)
        per_run = growth * len(ledger) * ((following - moment) / period)
        add(int(per_run) + (rng.random() < per_run % 1), moment + dt.timedelta(minutes=30))
        # and prune removes a few
        if rng.random() < 0.1:
            for key in rng.sample(sorted(ledger), k=min(3, len(ledger))):
                del ledger[key]
        previous, moment = moment, following


@pytest.mark.parametrize("schedule, period, runs", [
    ("0 2 * * *", PERIOD, 120),
    ("0 2 * * 1-5", PERIOD, 120),
    ("0 */6 * * *", dt.timedelta(days=7), 200),
    ("0 3 * * 0", dt.timedelta(days=30), 30),
])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_default_budget_rereads_every_object_within_the_period(schedule, period, runs, seed):
    simulate(schedule, period, runs, seed, growth=0.15)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10**6), st.sampled_from(["0 2 * * *", "30 1 * * 1-5", "0 */4 * * *"]),
       st.sampled_from([dt.timedelta(days=7), dt.timedelta(days=30)]))
def test_default_budget_simulation_any_seed(seed, schedule, period):
    simulate(schedule, period, 60, seed, growth=0.2)


# --- coverage ---------------------------------------------------------------------------


def test_coverage_counts_bytes_verified_within_the_period():
    now = T0 + 40 * DAY
    entries = [entry("a", 100, verified=35), entry("b", 300, verified=5),
               entry("c", 100, seen=39), entry("d", 500, verified=39, state="missing")]
    result = coverage(entries, now)
    assert result.ratio == pytest.approx(100 / 1000)
    assert result.oldest_unverified == 35 * DAY  # b, verified on day 5
    assert (result.bytes_tracked, result.objects_tracked, result.bytes_verified) == \
        (1000, 4, 100)
    assert result.as_dict()["oldest_unverified_seconds"] == 35 * 86400


def test_coverage_of_nothing_and_of_everything():
    assert coverage([], T0) == Coverage(None, None, 0, 0, 0)
    full = coverage([entry("a", verified=1), entry("b", verified=2)], T0 + 3 * DAY)
    assert full.ratio == 1.0 and full.oldest_unverified == 2 * DAY
    assert coverage([entry("e", 0, verified=0)], T0).ratio == 1.0
    # a clock behind the ledger never gives a negative age
    assert coverage([entry("a", seen=5)], T0).oldest_unverified == dt.timedelta(0)


@given(entries_strategy, st.integers(0, 90))
def test_coverage_is_a_share(entries, day):
    result = coverage(entries, T0 + day * DAY)
    if entries:
        assert 0.0 <= result.ratio <= 1.0
        assert result.oldest_unverified >= dt.timedelta(0)
    else:
        assert result.ratio is None


def counts_of(entries, now):
    covered = [e for e in entries if e.state == "present" and e.verified_at is not None
               and now - e.verified_at <= e.period]
    return CoverageCounts(objects=len(entries), bytes=sum(e.size for e in entries),
                          objects_verified=len(covered),
                          bytes_verified=sum(e.size for e in covered),
                          oldest_anchor=min((e.verified_at or e.first_seen_at
                                             for e in entries), default=None))


@given(entries_strategy, st.integers(0, 90), st.integers(0, 40))
def test_counts_summed_by_a_database_give_the_same_coverage(entries, day, split):
    now = T0 + day * DAY
    parts = [counts_of(entries[:split], now), counts_of(entries[split:], now)]
    assert coverage_from_counts(parts, now) == coverage(entries, now)


# --- sizes -------------------------------------------------------------------------------


@pytest.mark.parametrize("text, size", [
    ("1024", 1024), ("500M", 500 * MIB), ("500MiB", 500 * MIB), ("2g", 2 << 30),
    ("1.5GiB", 3 << 29), ("1T", 1 << 40), ("10 KB", 10240),
])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "M", "-1", "1X", "0", "0.1", "1 2"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError):
        parse_size(text)
