from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from uuid import uuid4

import pytest

from headrace.flow_runs import FlowRun
from headrace.process.protocol import Completed, Crashed, Failed, Invalid
from headrace.runner.outcomes import (
    KillReason,
    ProcessReport,
    decide_orphan,
    decide_outcome,
    explain_exit,
)
from headrace.runner.recovery import pid_alive, process_start, why_dead
from headrace.runner.served import ServedDeployments
from headrace.states import State, StateType, utcnow
from headrace.store import RunnerRecord

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def run(state: StateType = StateType.RUNNING, **fields: object) -> FlowRun:
    values: dict[str, object] = {
        "id": uuid4(),
        "name": "brave-otter",
        "flow_name": "etl",
        "state": State(type=state),
        "created": NOW,
        "updated": NOW,
        "run_count": 1,
        **fields,
    }
    return FlowRun.model_validate(values)


def test_completed_event_wins_and_keeps_the_result() -> None:
    decision = decide_outcome(run(), ProcessReport(0, Completed({"n": 1})), NOW)
    assert decision.state.type == StateType.COMPLETED
    assert decision.fields == {"result": {"n": 1}, "result_truncated": False, "result_ref": None}


def test_a_result_too_large_to_keep_is_marked_and_explained() -> None:
    note = "The result was not stored: too large"
    finished = ProcessReport(0, Completed(None, note, result_truncated=True), KillReason.CANCEL)
    decision = decide_outcome(run(), finished, NOW)
    assert decision.fields == {"result": None, "result_truncated": True, "result_ref": None}
    assert decision.state.message == f"The cancellation came after it had finished; {note}"


def test_failure_with_attempts_left_is_rescheduled_after_the_delay() -> None:
    flaky = run(max_retries=2, retry_delay_seconds=5)
    decision = decide_outcome(flaky, ProcessReport(0, Failed("boom")), NOW)
    assert decision.state.type == StateType.SCHEDULED
    assert decision.state.name == "AwaitingRetry"
    assert decision.fields["expected_start_time"] == NOW + timedelta(seconds=5)
    last = run(max_retries=2, run_count=3)
    assert decide_outcome(last, ProcessReport(0, Failed("boom")), NOW).state.type == (
        StateType.FAILED
    )


def test_kill_reasons_decide_the_state() -> None:
    slow = run(timeout_seconds=2.5)
    timed_out = decide_outcome(slow, ProcessReport(-15, None, KillReason.TIMEOUT), NOW)
    assert timed_out.state.type == StateType.FAILED
    assert timed_out.state.message == "Flow run timed out after 2.5 s"
    cancelled = decide_outcome(run(), ProcessReport(-15, None, KillReason.CANCEL), NOW)
    assert cancelled.state.type == StateType.CANCELLED
    requeued = decide_outcome(run(), ProcessReport(-15, None, KillReason.REQUEUE), NOW)
    assert requeued.state.type == StateType.SCHEDULED and requeued.state.name == "Requeued"


def test_a_run_stopped_at_the_end_of_the_grace_period_follows_the_crash_rule() -> None:
    """Never re-run from scratch unless its retries allow: its body may have done half its work."""
    stopped = ProcessReport(-15, None, KillReason.STOPPED)
    once = decide_outcome(run(), stopped, NOW)
    assert once.state.type == StateType.CRASHED
    assert once.state.message == "Crashed: the runner shut down before it finished"
    retried = decide_outcome(run(max_retries=1), stopped, NOW)
    assert (retried.state.type, retried.state.name) == (StateType.SCHEDULED, "Rescheduled")
    assert retried.fields["expected_start_time"] == NOW


def test_invalid_parameters_fail_without_a_retry() -> None:
    flaky = run(max_retries=3)
    decision = decide_outcome(flaky, ProcessReport(0, Invalid("x: not a number")), NOW)
    assert decision.state.type == StateType.FAILED
    assert decision.state.message == "x: not a number"


@pytest.mark.parametrize("reason", list(KillReason))
def test_a_body_that_returned_before_its_kill_is_completed_whatever_the_kill(
    reason: KillReason,
) -> None:
    finished = ProcessReport(0, Completed(7), reason)
    decision = decide_outcome(run(timeout_seconds=1), finished, NOW)
    assert decision.state.type == StateType.COMPLETED  # never requeued to run again
    assert decision.fields == {"result": 7, "result_truncated": False, "result_ref": None}


@pytest.mark.parametrize("reason", list(KillReason))
def test_a_failure_during_a_kill_is_the_kill(reason: KillReason) -> None:
    """A flow that raises on SIGTERM was stopped by us: no retry of a cancelled run."""
    flaky = run(max_retries=3, timeout_seconds=1)
    decision = decide_outcome(flaky, ProcessReport(1, Failed("interrupted"), reason), NOW)
    expected = {
        KillReason.CANCEL: (StateType.CANCELLED, "Cancelled"),
        KillReason.SHUTDOWN: (StateType.CANCELLED, "Cancelled"),
        KillReason.REQUEUE: (StateType.SCHEDULED, "Requeued"),
        KillReason.STOPPED: (StateType.SCHEDULED, "Rescheduled"),  # retries left: a new attempt
        KillReason.TIMEOUT: (StateType.SCHEDULED, "AwaitingRetry"),  # a timeout is a failure
        KillReason.LOST: (StateType.CRASHED, "Crashed"),  # refused: another attempt holds it
        KillReason.LEASE: (StateType.CRASHED, "Crashed"),  # never stored: recovery decides
    }
    assert (decision.state.type, decision.state.name) == expected[reason]


def test_exits_without_a_report_crash_with_an_explanation() -> None:
    assert "out of memory" in explain_exit(-signal.SIGKILL)
    assert "SIGTERM" in explain_exit(-signal.SIGTERM)
    assert "code 3" in explain_exit(3)
    crashed = decide_outcome(run(), ProcessReport(3), NOW)
    assert crashed.state.type == StateType.CRASHED
    load_error = decide_outcome(run(), ProcessReport(0, Crashed("no module x")), NOW)
    assert load_error.state.message == "no module x"


def test_orphans_crash_unless_attempts_remain() -> None:
    assert decide_orphan(run(), "died", NOW).state.type == StateType.CRASHED
    retried = decide_orphan(run(max_retries=1), "died", NOW)
    assert retried.state.type == StateType.SCHEDULED
    cancelling = decide_orphan(run(StateType.CANCELLING), "died", NOW)
    assert cancelling.state.type == StateType.CANCELLED


def test_a_pid_reused_by_a_newer_process_is_not_the_runner() -> None:
    me = os.getpid()
    began = process_start(me)
    assert began is not None and abs(began - utcnow()) < timedelta(days=1)
    assert pid_alive(me, began)  # this very process
    assert not pid_alive(me, began - timedelta(minutes=1))  # one started before it: gone
    assert pid_alive(me)


def test_why_dead() -> None:
    me = RunnerRecord(name="me", host="h1", pid=100)
    timeout = timedelta(seconds=90)
    alive = RunnerRecord(name="other", host="h1", pid=200, heartbeat=NOW)
    assert why_dead(alive, me, now=NOW, heartbeat_timeout=timeout, is_alive=lambda *_: True) is None
    gone = why_dead(alive, me, now=NOW, heartbeat_timeout=timeout, is_alive=lambda *_: False)
    assert gone is not None and "died" in gone
    paused = alive.model_copy(update={"heartbeat": NOW - timedelta(hours=1)})  # SIGSTOP, say
    assert (
        why_dead(paused, me, now=NOW, heartbeat_timeout=timeout, is_alive=lambda *_: True) is None
    )
    remote = RunnerRecord(name="far", host="h2", pid=200, heartbeat=NOW - timedelta(seconds=91))
    silent = why_dead(remote, me, now=NOW, heartbeat_timeout=timeout, is_alive=lambda *_: True)
    assert silent is not None and "heartbeats" in silent
    assert why_dead(me, me, now=NOW, heartbeat_timeout=timeout) is None
    assert why_dead(None, me, now=NOW, heartbeat_timeout=timeout) == "its runner is unknown"


def test_why_a_queued_run_cannot_start_names_the_runner_it_was_sent_to() -> None:
    me = RunnerRecord(name="me", host="h1", pid=100)
    timeout = timedelta(seconds=90)
    other = RunnerRecord(name="other", host="h1", pid=200, heartbeat=NOW)
    died = why_dead(
        other, me, now=NOW, heartbeat_timeout=timeout, is_alive=lambda *_: False, queued=True
    )
    assert died == "it was sent to runner 'other' (pid 200 on h1), which died"
    stopped = other.model_copy(update={"stopped": NOW})
    said = why_dead(stopped, me, now=NOW, heartbeat_timeout=timeout, queued=True)
    assert said == "it was sent to runner 'other' (pid 200 on h1), which stopped"


def test_a_runner_can_load_runs_from_the_files_and_modules_it_serves() -> None:
    served = ServedDeployments()
    for entrypoint in ("/srv/flows.py:etl", "pkg.jobs:nightly"):
        spec = SimpleNamespace(id=uuid4(), entrypoint=entrypoint)
        served.deployments[spec.id] = spec  # type: ignore[assignment]
    assert served.can_load("/srv/flows.py:helper") and served.can_load("pkg.jobs:other")
    assert not served.can_load("/srv/other.py:etl") and not served.can_load("pkg:jobs")
    assert not served.can_load(None) and not served.can_load("no entrypoint")


def test_a_process_lost_with_its_fork_server_is_a_runner_death_not_a_crash() -> None:
    retried = decide_outcome(run(max_retries=1), ProcessReport(None), NOW)
    assert (retried.state.type, retried.state.name) == (StateType.SCHEDULED, "Rescheduled")
    crashed = decide_outcome(run(), ProcessReport(None), NOW)
    assert crashed.state.type == StateType.CRASHED
    assert "fork server" in (crashed.state.message or "")
    finished = decide_outcome(run(max_retries=1), ProcessReport(None, Completed(5)), NOW)
    assert (finished.state.type, finished.fields["result"]) == (StateType.COMPLETED, 5)
