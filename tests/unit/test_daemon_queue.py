"""The queue's pure decisions: retries with backoff, one-line masked errors, lock keys."""

from __future__ import annotations

import datetime as dt

from drd.daemon.leader import advisory_key
from drd.daemon.queue import (
    MAX_ATTEMPTS,
    RETRY_BASE,
    RETRY_CAP,
    one_line_error,
    pending_key,
    retry_delay,
    should_retry,
)
from drd.secrets import Secret


def test_backoff_doubles_up_to_a_cap() -> None:
    assert [retry_delay(n) for n in (1, 2, 3)] == [RETRY_BASE, RETRY_BASE * 2, RETRY_BASE * 4]
    assert retry_delay(30) == RETRY_CAP
    assert retry_delay(2, base=dt.timedelta(seconds=1), cap=dt.timedelta(seconds=1.5)) == \
        dt.timedelta(seconds=1.5)


def test_a_failed_run_is_retried_a_bounded_number_of_times() -> None:
    assert not should_retry("succeeded", 1)
    assert should_retry("failed", 1) and should_retry("partial", MAX_ATTEMPTS - 1)
    assert not should_retry("failed", MAX_ATTEMPTS)
    assert not should_retry("failed", 2, max_attempts=2)


def test_errors_are_one_masked_line() -> None:
    password = Secret("correct-horse-battery")
    error = RuntimeError("restic failed:\n  wrong password correct-horse-battery\n"
                         "at s3:http://key:secretvalue@host/bucket")
    line = one_line_error(error, [password])
    assert "\n" not in line and "correct-horse" not in line and "secretvalue" not in line
    assert line.startswith("restic failed: wrong password")
    assert one_line_error(KeyError()) == "KeyError"
    assert len(one_line_error("x" * 5000)) == 1000


def test_keys() -> None:
    assert pending_key(5) == "job:5"
    assert advisory_key("public") == advisory_key("public")
    assert advisory_key("public") != advisory_key("drd_test_1")
    assert -(2 ** 63) <= advisory_key("public") < 2 ** 63
