"""A loop that keeps failing logs its first failure, a reminder now and then, its recovery."""

from __future__ import annotations

import logging

import pytest

from headrace.runner.streaks import FailureStreak


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_streak_of_failures_is_three_kinds_of_line_not_one_per_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    streak = FailureStreak(logging.getLogger("headrace.test"), "The poll", clock=clock)
    with caplog.at_level(logging.INFO, logger="headrace.test"):
        for _ in range(300):  # four a second for 75 seconds
            streak.failed(ConnectionError("connection refused\nmore detail"))
            clock.now += 0.25
        streak.succeeded()
        streak.succeeded()  # nothing more to say
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "The poll failed; retrying",
        "The poll still failing (241 times in 60s): ConnectionError: connection refused",
        "The poll recovered after 300 failures in 75s",
    ]
    assert caplog.records[0].exc_info is not None, "the first failure shows its traceback"
    assert all(record.exc_info is None for record in caplog.records[1:])


def test_a_new_streak_after_a_recovery_shows_its_traceback_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    streak = FailureStreak(logging.getLogger("headrace.test"), "Storing run log lines")
    with caplog.at_level(logging.INFO, logger="headrace.test"):
        assert streak.failed(OSError("down"))
        assert not streak.failed(OSError("down"))
        streak.succeeded()
        assert streak.failed(OSError("down again"))
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert len(tracebacks) == 2
    assert streak.failures == 1
