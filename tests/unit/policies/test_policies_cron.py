"""policies.cron: five-field cron, UTC, read the way cron(8) reads it."""

from datetime import timedelta

import pytest

from policies.cron import (
    REFERENCE_START,
    cron_trigger,
    longest_gap,
    scheduler_day_of_week,
    validate_cron,
)


def next_runs(expression, count=7):
    trigger = cron_trigger(expression)
    runs, previous = [], None
    moment = REFERENCE_START
    for _ in range(count):
        previous = trigger.get_next_fire_time(previous, moment)
        runs.append(previous)
        moment = previous + timedelta(seconds=1)
    return runs


@pytest.mark.parametrize("expression", ["0 * * * *", "*/15 * * * *", "0 3 * * 0",
                                        "30 2 * * *", "0 0 1 * *", "0 3 * * mon-fri"])
def test_valid_expressions_are_accepted_unchanged(expression):
    assert validate_cron(expression) == expression


def test_triggers_run_in_utc():
    assert next_runs("0 3 * * *", 1)[0].utcoffset() == timedelta(0)
    assert next_runs("0 3 * * *", 1)[0].hour == 3


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 * * * * *", "has 6 fields"),
        ("0 * * *", "has 4 fields"),
        ("", "has 0 fields"),
        ("61 * * * *", "not a valid cron expression"),
        ("0 25 * * *", "not a valid cron expression"),
        ("0 3 * * 8", "out of range"),
        ("0 3 * * funday", "neither 0-7 nor a name"),
        ("0 3 * * 5-1", "runs backwards"),
        ("0 0 1 * 1", "restricts both"),
        ("0 0 30 2 *", "never fires"),
    ],
)
def test_invalid_expressions_are_refused(expression, message):
    with pytest.raises(ValueError, match=message):
        cron_trigger(expression)


def test_non_text_is_refused():
    with pytest.raises(ValueError, match="in quotes"):
        cron_trigger(5)


@pytest.mark.parametrize("cron_day", range(8))
def test_day_numbers_mean_what_they_mean_to_cron(cron_day):
    # cron: 0 and 7 are Sunday, 1 Monday; Python: Monday 0 .. Sunday 6
    expected_weekday = (cron_day - 1) % 7
    runs = next_runs(f"0 3 * * {cron_day}", 3)
    assert {run.weekday() for run in runs} == {expected_weekday}


@pytest.mark.parametrize(
    ("field", "rewritten"),
    [
        ("*", "*"),
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("mon-fri", "mon,tue,wed,thu,fri"),
        ("5-7", "fri,sat,sun"),
        ("*/2", "tue,thu,sat,sun"),
        ("0,6", "sat,sun"),
        ("SUN", "sun"),
        ("0-7", "*"),
    ],
)
def test_day_of_week_rewriting(field, rewritten):
    assert scheduler_day_of_week(field) == rewritten


@pytest.mark.parametrize(
    ("expression", "gap"),
    [
        ("0 * * * *", timedelta(hours=1)),
        ("*/15 * * * *", timedelta(minutes=15)),
        ("0 3 * * 0", timedelta(days=7)),
        ("0 0 1 * *", timedelta(days=31)),
        ("0 9 * * 1-5", timedelta(days=3)),
    ],
)
def test_longest_gap(expression, gap):
    assert longest_gap(expression) == gap
