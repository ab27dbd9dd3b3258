"""policies.durations: the text form of durations, both ways."""

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("0s", timedelta(0)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1w2d3h4m5s", timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
        ("36h", timedelta(hours=36)),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "90", "1x", "1H", "1 h", " 1h", "1h ", "-1h", "1.5h", "30m1h", "1h1h", "h", "1y",
     "1h\n", "1e3s"],
)
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_parse_duration_refuses_non_text():
    with pytest.raises(ValueError, match="must be a duration"):
        parse_duration(90)


def test_parse_duration_refuses_a_duration_too_long_for_timedelta():
    with pytest.raises(ValueError, match="too long"):
        parse_duration("999999999999999w")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=90), "90s"),
        (timedelta(minutes=90), "90m"),
        (timedelta(hours=1), "1h"),
        (timedelta(days=7), "7d"),
        (timedelta(days=30), "30d"),
        (timedelta(days=1, seconds=1), "86401s"),
    ],
)
def test_format_duration(value, text):
    assert format_duration(value) == text


@pytest.mark.parametrize("value", [timedelta(seconds=-1), timedelta(milliseconds=1500)])
def test_format_duration_refuses_what_text_cannot_say(value):
    with pytest.raises(ValueError, match="no text form"):
        format_duration(value)


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=999_999_999))
       .map(lambda value: value - timedelta(microseconds=value.microseconds)))
def test_format_then_parse_round_trips(value):
    assert parse_duration(format_duration(value)) == value


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from("smhdw"))
def test_parse_then_format_keeps_the_length(count, unit):
    text = f"{count}{unit}"
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)
