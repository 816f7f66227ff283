"""A failed attempt's outcome under a retry policy: its delay list, jitter and condition."""

from __future__ import annotations

from datetime import timedelta

from headrace.process.protocol import Failed
from headrace.runner.outcomes import ProcessReport, decide_outcome
from headrace.states import StateType
from tests.unit.test_outcomes import NOW, run


def test_each_retry_waits_its_delay_and_the_last_one_repeats() -> None:
    delays = []
    for attempt in (1, 2, 3):
        flaky = run(max_retries=3, run_count=attempt, retry_delays=[1.0, 5.0])
        decision = decide_outcome(flaky, ProcessReport(1, Failed("boom")), NOW)
        assert decision.state.name == "AwaitingRetry"
        delays.append(decision.fields["expected_start_time"] - NOW)
        assert decision.state.message is not None
        assert decision.state.message.startswith(f"Attempt {attempt} of 4 failed, retrying in")
    assert delays == [timedelta(seconds=1), timedelta(seconds=5), timedelta(seconds=5)]


def test_jitter_spreads_the_delay_around_its_value() -> None:
    jittery = run(max_retries=1, retry_delay_seconds=10, retry_jitter_factor=0.5)
    waits = {
        decide_outcome(jittery, ProcessReport(1, Failed("boom")), NOW).fields["expected_start_time"]
        - NOW
        for _ in range(50)
    }
    assert len(waits) > 1
    assert all(timedelta(seconds=5) <= w <= timedelta(seconds=15) for w in waits)


def test_a_failure_its_condition_rules_out_is_final() -> None:
    flaky = run(max_retries=3, retry_delay_seconds=5)
    decision = decide_outcome(flaky, ProcessReport(1, Failed("bad input", retry=False)), NOW)
    assert decision.state.type == StateType.FAILED
    assert decision.state.message == "bad input"
