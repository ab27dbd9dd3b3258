"""The one place restic runs: a run asked to stop is stopped, with SIGINT, at once."""

from __future__ import annotations

import os
import time

import pytest

from drd.restic.process import run_process

pytestmark = pytest.mark.integration


def test_a_run_whose_should_stop_turns_true_is_stopped_promptly():
    asked = []

    def should_stop() -> bool:
        asked.append(time.monotonic())
        return len(asked) >= 3

    started = time.monotonic()
    completed = run_process(["sh", "-c", "echo started; exec sleep 30"], env=dict(os.environ),
                            should_stop=should_stop)
    assert completed.stopped
    assert time.monotonic() - started < 5
    assert completed.exit_code != 0
    assert [message.text for message in completed.messages] == ["started"]


def test_a_run_left_alone_is_not_marked_stopped():
    completed = run_process(["sh", "-c", "echo done"], env=dict(os.environ),
                            should_stop=lambda: False)
    assert not completed.stopped and completed.exit_code == 0
    assert completed.finished_at >= completed.started_at > 0
