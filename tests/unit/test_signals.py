"""Stop signals: a SIGTERM repeated within a second is one stop, a second Ctrl-C is not."""

from __future__ import annotations

import signal

from headrace.runner.signals import REPEAT_WINDOW_SECONDS, _RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_sigterm_within_a_second_of_the_last_heeded_one_is_the_same_stop() -> None:
    clock = Clock()
    repeats = _RepeatFilter(clock)
    assert repeats.heed(signal.SIGTERM)
    clock.now += 0.01  # a service manager that signals the runner and its runs
    assert not repeats.heed(signal.SIGTERM)
    clock.now += REPEAT_WINDOW_SECONDS - 0.02  # still within a second of the first
    assert not repeats.heed(signal.SIGTERM)
    clock.now += 0.02
    assert repeats.heed(signal.SIGTERM), "a second later it asks to hurry"


def test_ctrl_c_is_always_heeded() -> None:
    clock = Clock()
    repeats = _RepeatFilter(clock)
    assert repeats.heed(signal.SIGTERM)
    assert repeats.heed(signal.SIGINT)
    assert repeats.heed(signal.SIGINT)
