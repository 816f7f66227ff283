"""Traces: a trigger and each run attempt are spans of the caller's trace; the run sees it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from headrace.runner.server import build_server
from headrace.settings import Settings
from headrace.states import StateType
from tests.flows import observed
from tests.helpers import eventually, make_runner, running, wait_for_state
from tests.integration.server_app import client

pytestmark = pytest.mark.timeout(120)

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CALLER = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


def _reset_global_provider() -> None:
    """OpenTelemetry sets its global provider once per process; its own tests reset it so."""
    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE = Once()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """A configured tracer provider whose spans are kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _reset_global_provider()
    trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        provider.shutdown()
        _reset_global_provider()


def named(exporter: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name.startswith(prefix)]


async def finished(exporter: InMemorySpanExporter, prefix: str) -> ReadableSpan:
    found = await eventually(
        lambda: _value(named(exporter, prefix)), bool, what=f"a finished {prefix!r} span"
    )
    return found[0]


async def _value(value: Any) -> Any:
    return value


def _root_parent(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> int:
    """The span id this span's ancestry starts from: the caller's, when it continues one."""
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
    assert span.parent is not None, f"{span.name} has no parent"
    return span.parent.span_id


async def test_a_run_is_a_span_of_the_callers_trace_and_its_process_continues_it(
    settings: Settings, spans: InMemorySpanExporter
) -> None:
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(observed.traceparent, "traced")
    async with running(runner), client(await build_server(runner)) as http:
        answer = await http.post(
            f"/deployment/{deployment_id}/run", headers={"traceparent": CALLER}
        )
        run_id = UUID(answer.json()["flow_run_id"])
        done = await wait_for_state(runner.store, run_id)
        run_span = await finished(spans, "flow run ")
    by_id = {span.context.span_id: span for span in spans.get_finished_spans() if span.context}
    assert done.state.type == StateType.COMPLETED, done.state.message
    # The run is the trigger's child, and the trigger is in the caller's trace, below its span.
    assert run_span.context is not None and run_span.parent is not None
    assert f"{run_span.context.trace_id:032x}" == CALLER_TRACE
    trigger_span = by_id[run_span.parent.span_id]
    assert trigger_span.attributes is not None and run_span.attributes is not None
    assert trigger_span.attributes["headrace.flow_run.id"] == str(run_id)
    assert trigger_span.attributes["http.response.status_code"] == 201
    assert f"{_root_parent(trigger_span, by_id):016x}" == CALLER_SPAN
    assert run_span.name == "flow run traceparent/traced"
    assert run_span.attributes["headrace.flow_run.id"] == str(run_id)
    assert run_span.attributes["headrace.deployment.id"] == str(deployment_id)
    assert run_span.attributes["headrace.deployment.name"] == "traceparent/traced"
    assert run_span.attributes["headrace.flow_run.state"] == "COMPLETED"
    assert [event.name for event in run_span.events] == [
        "claimed",
        "process started",
        "process ended",
    ]
    assert run_span.start_time is not None and trigger_span.start_time is not None
    assert run_span.start_time <= trigger_span.end_time  # type: ignore[operator]  # queueing
    # The run's process has the run's span as its trace context.
    span_id = f"{run_span.context.span_id:016x}"
    assert done.result == f"00-{CALLER_TRACE}-{span_id}-01"


async def test_a_failed_run_ends_its_span_with_an_error(
    sqlite_settings: Settings, spans: InMemorySpanExporter
) -> None:
    from tests.flows import basic

    runner = make_runner(sqlite_settings)
    deployment_id = await runner.add_flow(basic.fail, "failing")
    async with running(runner), client(await build_server(runner)) as http:
        answer = await http.post(f"/deployment/{deployment_id}/run")
        done = await wait_for_state(runner.store, UUID(answer.json()["flow_run_id"]))
        run_span = await finished(spans, "flow run ")
    assert done.state.type == StateType.FAILED
    assert run_span.attributes is not None
    assert run_span.attributes["headrace.flow_run.state"] == "FAILED"
    assert run_span.status.status_code == trace.StatusCode.ERROR
    assert run_span.parent is not None  # the trigger's, though the caller sent no context


async def test_a_run_accepted_by_one_runner_and_run_by_another_gets_the_callers_context(
    settings: Settings,
) -> None:
    """No tracer provider: the trace context passes through, stored with the run."""
    accepting = make_runner(settings)  # never started: it only answers the trigger
    executing = make_runner(settings)
    deployment_id = await accepting.add_flow(observed.traceparent, "traced")
    await executing.add_flow(observed.traceparent, "traced")
    async with client(await build_server(accepting)) as http:
        answer = await http.post(
            f"/deployment/{deployment_id}/run", headers={"traceparent": CALLER.upper()}
        )
        bad = await http.post(f"/deployment/{deployment_id}/run", headers={"traceparent": "x"})
    async with running(executing):
        done = await wait_for_state(executing.store, UUID(answer.json()["flow_run_id"]))
        untraced = await wait_for_state(executing.store, UUID(bad.json()["flow_run_id"]))
    assert done.state.type == StateType.COMPLETED, done.state.message
    assert done.traceparent == CALLER
    assert done.result == CALLER
    assert bad.status_code == 201  # a malformed header is ignored, never an error
    assert untraced.result is None and untraced.traceparent is None
