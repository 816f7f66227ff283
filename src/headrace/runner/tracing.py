"""Traces: a span per trigger and per run attempt, when OpenTelemetry is set up.

With the ``otel`` extra installed and a tracer provider configured (by the
application, or by ``opentelemetry-instrument`` from the standard ``OTEL_*``
variables), a trigger is a span (a child of the caller's, when the request
carries a W3C ``traceparent`` header) and each attempt of a run is a span from
its creation through its wait in the queue, its process's start and its end,
a child of the trigger's. Without a provider, or without OpenTelemetry, nothing
is traced and a given ``traceparent`` is passed through unchanged.

The trace context is stored with the run (its ``traceparent`` column): the
runner that executes it may not be the one that accepted the trigger. The run's
process gets it as ``TRACEPARENT`` (its environment: the programs it starts,
and any OpenTelemetry in the flow, can continue the trace); the run's process
never imports OpenTelemetry itself.

OpenTelemetry is imported on first use, never when a runner merely starts.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

from headrace.flow_runs import FlowRun
from headrace.states import StateType

logger = logging.getLogger(__name__)

TRACEPARENT_HEADER = "traceparent"
QUEUE_SPAN = "queue flow run"
"""A trigger's span inside the request's own span."""
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
_ENDED_WELL = frozenset({StateType.COMPLETED, StateType.SCHEDULED, StateType.CANCELLED})
"""A span ends with an error status unless its attempt ended in one of these."""

_opentelemetry: Any = None
"""``opentelemetry.trace`` once looked for; False when it is not installed."""


def traceparent_of(header: str | None) -> str | None:
    """A valid W3C ``traceparent`` value (lowercased), else None: a bad one is ignored."""
    if not header:
        return None
    match = _TRACEPARENT.match(header.strip().lower())
    if match is None:
        return None
    version, trace_id, span_id, _ = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return match.group(0)


def _trace_api() -> Any:
    global _opentelemetry
    if _opentelemetry is None:
        try:
            from opentelemetry import trace
        except ImportError:
            _opentelemetry = False
        else:
            _opentelemetry = trace
    return _opentelemetry or None


def tracer() -> Any:
    """headrace's tracer, or None: OpenTelemetry is missing or no provider is set."""
    trace = _trace_api()
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider):
        return None  # nobody configured tracing: spans would go nowhere
    from headrace._version import __version__

    return provider.get_tracer("headrace", __version__)


def _context_of(traceparent: str | None) -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {TRACEPARENT_HEADER: traceparent} if traceparent else {}
    return TraceContextTextMapPropagator().extract(carrier)


def _traceparent_of_span(span: Any) -> str | None:
    context = span.get_span_context()
    if not context.is_valid:
        return None
    flags = int(context.trace_flags)
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags:02x}"


class TriggerTrace:
    """The span of one trigger (None when not tracing) and the context its run inherits."""

    def __init__(self, span: Any, traceparent: str | None) -> None:
        self.span = span
        self.traceparent = traceparent

    def created(self, run: FlowRun, created: bool) -> None:
        if self.span is not None:
            self.span.set_attributes(run_attributes(run) | {"headrace.flow_run.created": created})

    def answered(self, status: int) -> None:
        if self.span is not None:
            self.span.set_attribute("http.response.status_code", status)


@contextlib.contextmanager
def trigger_span(
    incoming: str | None, name: str, deployment_id: UUID | None
) -> Iterator[TriggerTrace]:
    """The span of a trigger: a child of the request's span when the web stack traces
    requests (FastAPI does, with a provider set), else of ``incoming`` (the caller's)."""
    found = tracer()
    if found is None:
        yield TriggerTrace(None, incoming)
        return
    from opentelemetry.trace import SpanKind, get_current_span

    attributes = {"headrace.deployment.id": str(deployment_id or "")}
    if get_current_span().get_span_context().is_valid:
        context, kind, name = None, SpanKind.INTERNAL, QUEUE_SPAN
    else:
        context, kind = _context_of(incoming), SpanKind.SERVER
    with found.start_as_current_span(
        name, context=context, kind=kind, attributes=attributes
    ) as span:
        yield TriggerTrace(span, _traceparent_of_span(span) or incoming)


def run_attributes(run: FlowRun) -> dict[str, str | int]:
    """What names a run in its spans (and the trigger's)."""
    return {
        "headrace.flow_run.id": str(run.id),
        "headrace.flow_run.name": run.name,
        "headrace.flow.name": run.flow_name,
        "headrace.deployment.id": str(run.deployment_id or ""),
    }


class RunTrace:
    """The span of one attempt of a run, from its creation to its recorded end."""

    def __init__(self, span: Any, traceparent: str | None) -> None:
        self._span = span
        self.traceparent = traceparent
        """What the run's process gets as ``TRACEPARENT``."""

    def event(self, name: str, **attributes: str | int) -> None:
        if self._span is not None:
            self._span.add_event(name, attributes)

    def finished(self, final: FlowRun | None) -> None:
        span = self._span
        if span is None:
            return
        self._span = None
        try:
            _end(span, final)
        except Exception:
            logger.exception("Could not end the span of a flow run")


def _end(span: Any, final: FlowRun | None) -> None:
    if final is not None:
        span.set_attribute("headrace.flow_run.state", final.state.type.value)
        if final.state.type not in _ENDED_WELL:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, final.state.message or ""))
    span.end()


def run_trace(run: FlowRun, deployment: str | None) -> RunTrace:
    """Start the span of this attempt of ``run``: a child of the trigger's, from the run's
    creation (its first attempt) or from now (a retry, a takeover).

    Tracing that fails (a span processor that raises) costs the run nothing: it is
    started untraced.
    """
    try:
        return _run_trace(run, deployment)
    except Exception:
        logger.exception("Could not start the span of flow run %s; running it untraced", run.name)
        return RunTrace(None, run.traceparent)


def _run_trace(run: FlowRun, deployment: str | None) -> RunTrace:
    found = tracer()
    if found is None:
        return RunTrace(None, run.traceparent)
    began = run.created.timestamp() if run.run_count <= 1 else time.time()
    attributes = run_attributes(run) | {
        "headrace.deployment.name": deployment or "",
        "headrace.flow_run.attempt": run.run_count,
    }
    span = found.start_span(
        f"flow run {deployment or run.flow_name}",
        context=_context_of(run.traceparent),
        start_time=int(began * 1e9),
        attributes=attributes,
    )
    span.add_event("claimed")
    return RunTrace(span, _traceparent_of_span(span) or run.traceparent)
