"""Trace context: a W3C ``traceparent`` is taken as given or ignored; without OpenTelemetry it
passes through to the run untouched."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from headrace.flow_runs import FlowRun
from headrace.runner import tracing
from headrace.states import State, StateType

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("header", "taken"),
    [
        (CALLER, CALLER),
        (f" {CALLER.upper()} ", CALLER),
        (None, None),
        ("", None),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", None),  # no flags
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),  # no trace
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", None),  # no span
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None),  # forbidden version
        ("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", None),  # not hex
    ],
)
def test_a_traceparent_is_taken_only_when_it_is_valid(
    header: str | None, taken: str | None
) -> None:
    assert tracing.traceparent_of(header) == taken


def test_without_opentelemetry_a_run_keeps_the_callers_context_and_nothing_is_traced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tracing, "_opentelemetry", None)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if not installed
    now = datetime(2026, 1, 31, tzinfo=UTC)
    run = FlowRun(
        id=uuid4(),
        name="brave-otter",
        flow_name="etl",
        state=State(type=StateType.PENDING),
        created=now,
        updated=now,
        run_count=1,
        traceparent=CALLER,
    )
    assert tracing.tracer() is None
    trace = tracing.run_trace(run, "etl/nightly")
    trace.event("process started", pid=1)
    trace.finished(run)
    assert trace.traceparent == CALLER
    with tracing.trigger_span(CALLER, "POST /flow/run", None) as trigger:
        trigger.created(run, True)
    assert trigger.traceparent == CALLER
