"""Pure decisions: what state a finished process, a retry or a dead runner leaves a run in.

The executor gathers the facts (the child's last event, its exit code, why we
killed it); these functions turn them into the one state change to persist.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from headrace.flow_runs import FlowRun
from headrace.process.protocol import Completed, Crashed, Failed, FinalEvent, Invalid
from headrace.retries import delay_before
from headrace.states import State, StateType, utcnow

STOPPED_WHY = "the runner shut down before it finished"
LATE_CANCEL = "The cancellation came after it had finished"
"""The message of a run that completed although it had been asked to cancel."""
FORK_SERVER_DIED_WHY = "the fork server that started its process died while it ran"


class KillReason(StrEnum):
    """Why the runner ended a run's process itself."""

    CANCEL = "cancel"
    SHUTDOWN = "shutdown"
    """Cancelled because its runner stopped and its deployment says ``on_shutdown="cancel"``."""
    TIMEOUT = "timeout"
    REQUEUE = "requeue"
    """Queued again: its deployment says ``on_shutdown="requeue"``."""
    STOPPED = "stopped"
    """Still running when its runner's grace period ended (or a second signal cut it short):
    the crash rule decides, as for a runner that died, so a body is never re-run unasked."""
    LOST = "lost"
    """Another runner took the run over (this one was presumed dead): stop this attempt."""
    LEASE = "lease"
    """Its runner could not renew its heartbeat in time: another may take the run over, so
    the attempt stops, and its outcome is left to recovery."""


@dataclass(frozen=True)
class Decision:
    """The state to record, and the run fields to set with it."""

    state: State
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProcessReport:
    """What we know once a run's process has exited."""

    exit_code: int | None
    final_event: FinalEvent | None = None
    kill_reason: KillReason | None = None


def decide_outcome(run: FlowRun, report: ProcessReport, now: datetime | None = None) -> Decision:
    """The state a run ends its attempt in, from the facts of its process."""
    now = now or utcnow()
    match report.final_event, report.kill_reason:
        case Completed(result, note, truncated, ref), reason:
            # The body returned before the kill took effect: it is done, whatever we meant to
            # do. Requeued, it would run again; cancelled, its result would be lost.
            cancelled = reason in (KillReason.CANCEL, KillReason.SHUTDOWN)
            late = LATE_CANCEL if cancelled else None
            message = "; ".join(filter(None, (late, note))) or None
            fields = {"result": result, "result_truncated": truncated, "result_ref": ref}
            return Decision(State(type=StateType.COMPLETED, message=message), fields)
        case _, KillReason() as reason:
            return _decide_kill(run, reason, now)
        case Invalid(message), _:  # its parameters: every attempt would fail
            return Decision(State(type=StateType.FAILED, message=message))
        case Failed(message, retry), _:
            return decide_failure(run, message, now, retry=retry)
        case Crashed(message), _:
            return Decision(State(type=StateType.CRASHED, message=message))
        case None, None if report.exit_code is None:
            # Its process died with the fork server (an OOM kill, say): not the run's doing.
            return decide_orphan(run, FORK_SERVER_DIED_WHY, now)
        case _:
            return Decision(State(type=StateType.CRASHED, message=explain_exit(report.exit_code)))


def _decide_kill(run: FlowRun, reason: KillReason, now: datetime) -> Decision:
    """The state of a run whose process the runner ended itself, for ``reason``."""
    match reason:
        case KillReason.CANCEL:
            return Decision(State(type=StateType.CANCELLED, message="Cancelled by request"))
        case KillReason.SHUTDOWN:
            message = "Cancelled: its runner shut down, and its deployment cancels runs then"
            return Decision(State(type=StateType.CANCELLED, message=message))
        case KillReason.REQUEUE:
            return requeue("Requeued: its runner shut down before it finished", now)
        case KillReason.STOPPED:
            return decide_orphan(run, STOPPED_WHY, now)
        case KillReason.LOST:  # not recorded: the run is another attempt now
            return Decision(State(type=StateType.CRASHED, message="Taken over by another runner"))
        case KillReason.LEASE:  # not recorded either: recovery resolves it
            return Decision(State(type=StateType.CRASHED, message="Its runner lost its lease"))
        case KillReason.TIMEOUT:
            return decide_failure(run, f"Flow run timed out after {run.timeout_seconds:g} s", now)
    raise AssertionError(f"no decision for {reason!r}")  # every reason has a case above


def decide_failure(run: FlowRun, message: str, now: datetime, *, retry: bool = True) -> Decision:
    """FAILED, unless attempts remain and the run's process allows a retry (its flow's
    ``retry_condition_fn``): then SCHEDULED again after this retry's delay.

    The delay is the run's delay list entry for this retry (the last one repeated),
    jittered by its ``retry_jitter_factor``; the state message says which attempt
    failed, how long the retry waits and when it is due.
    """
    if retry and run.attempts_left > 0:
        delays = run.retry_delays or [run.retry_delay_seconds]
        delay = delay_before(run.run_count, delays, run.retry_jitter_factor)
        due = now + timedelta(seconds=delay)
        attempts = run.max_retries + 1
        return Decision(
            State(
                type=StateType.SCHEDULED,
                name="AwaitingRetry",
                message=(
                    f"Attempt {run.run_count} of {attempts} failed, retrying in {delay:.3g} s "
                    f"(at {due:%H:%M:%S} UTC): {message}"
                ),
            ),
            {"expected_start_time": due},
        )
    return Decision(State(type=StateType.FAILED, message=message))


def requeue(message: str, now: datetime) -> Decision:
    return Decision(
        State(type=StateType.SCHEDULED, name="Requeued", message=message),
        {"expected_start_time": now, "pid": None},
    )


def decide_orphan(run: FlowRun, why: str, now: datetime | None = None) -> Decision:
    """A run whose runner died: CANCELLED if it was being cancelled, else retried or CRASHED."""
    now = now or utcnow()
    if run.state.type == StateType.CANCELLING:
        return Decision(State(type=StateType.CANCELLED, message=f"Cancelled: {why}"))
    if run.attempts_left > 0:
        # Its process may have started the body, even if PENDING: a new attempt, never the same.
        return Decision(
            State(type=StateType.SCHEDULED, name="Rescheduled", message=f"Rescheduled: {why}"),
            {"expected_start_time": now, "pid": None},
        )
    return Decision(State(type=StateType.CRASHED, message=f"Crashed: {why}"))


def explain_exit(code: int | None) -> str:
    """A sentence a user can act on, for a process that ended without reporting a result."""
    if code is None:
        return "The flow run's process was lost: the fork server that started it died"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code == signal.SIGKILL:
            return f"The flow run's process was killed ({name}), often because it ran out of memory"
        return f"The flow run's process was terminated by {name}"
    if code == 0:
        return "The flow run's process exited without reporting a result"
    return f"The flow run's process exited with code {code} before it finished"
