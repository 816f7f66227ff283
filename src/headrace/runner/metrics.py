"""A runner's metrics, in a registry of its own, for ``GET /metrics`` (Prometheus text).

Each runner has its own ``CollectorRegistry``: several runners in one process
(tests, embedded use) must not count into each other. Hot paths only touch
pre-bound children (a dict lookup and an increment); what is read from the
runner's state (running, queued, free slots, heartbeat age) is computed at
scrape time, never on the way of a run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar
from uuid import UUID

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from headrace.flow_runs import FlowRun
from headrace.states import utcnow

M = TypeVar("M", bound=MetricWrapperBase)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
NO_DEPLOYMENT = ""
"""The ``deployment`` label of runs of no deployment (``POST /flow/run``)."""

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600)
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class RunObserver(Protocol):
    """What hears about each run's process: the metrics, a console."""

    def run_started(self, run: FlowRun) -> None: ...

    def run_finished(self, run: FlowRun, final: FlowRun | None, seconds: float | None) -> None: ...

    def start_failed(self, run: FlowRun) -> None: ...


class RunnerState(Protocol):
    """What the gauges read at scrape time."""

    limit: int

    @property
    def running_count(self) -> int: ...


class RunnerMetrics:
    """The counters and histograms of one runner; observes its runs."""

    def __init__(self, runner: RunnerState) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self._add_counters(registry)
        self.start_latency = Histogram(
            "headrace_flow_run_start_latency_seconds",
            "From a run's trigger (or due time) to its process start",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.duration = Histogram(
            "headrace_flow_run_duration_seconds",
            "From a run's process start to its recorded end",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.store_write = _children(
            Histogram(
                "headrace_store_write_duration_seconds",
                "Writes to the database: a trigger's new run, a run's outcome",
                ["operation"],
                buckets=FAST_BUCKETS,
                registry=registry,
            )
        )
        self._create_write = self.store_write("create_flow_run")
        self.outcome_written = self.store_write("outcome").observe
        self.http = HttpMetrics(registry)
        self.queued: Callable[[], float] = lambda: 0.0
        """Runs queued for this runner now (the webserver's backlog estimate, when it serves)."""
        self.heartbeat_age: Callable[[], float] = lambda: float("nan")
        """Seconds since the runner's last heartbeat (the runner says how to read it)."""
        self._add_gauges(runner)

    def _add_counters(self, registry: CollectorRegistry) -> None:
        def counter(name: str, text: str, *labels: str) -> Counter:
            return Counter(name, text, labels, registry=registry)

        by_deployment = ("deployment",)
        self.created = _children(
            counter("headrace_flow_runs_created", "Flow runs created", *by_deployment)
        )
        self.started = _children(
            counter("headrace_flow_runs_started", "Flow run processes started", *by_deployment)
        )
        self._finished = counter(
            "headrace_flow_runs_finished",
            "Flow runs that ended, by final state",
            "deployment",
            "state",
        )
        self._finished_children: dict[tuple[str, str], Counter] = {}
        self.rejected = counter(
            "headrace_trigger_rejections", "Triggers refused with 429 (backlog full)"
        )
        self.start_failures = counter(
            "headrace_process_start_failures", "Run processes that could not start"
        )

    def _add_gauges(self, runner: RunnerState) -> None:
        gauges = {
            "headrace_flow_runs_running": ("Flow runs executing now", lambda: runner.running_count),
            "headrace_flow_runs_queued": (
                "Flow runs queued for this runner now",
                lambda: self.queued(),
            ),
            "headrace_runner_free_slots": (
                "Runs this runner could start now",
                lambda: max(0, runner.limit - runner.running_count),
            ),
            "headrace_runner_heartbeat_age_seconds": (
                "Seconds since this runner's last heartbeat",
                lambda: self.heartbeat_age(),
            ),
        }
        for name, (text, read) in gauges.items():
            Gauge(name, text, registry=self.registry).set_function(read)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)

    def created_run(self, deployment_id: UUID | None, seconds: float, *, created: bool) -> None:
        """A trigger wrote a run (``created``) or found its Idempotency-Key's run."""
        self._create_write.observe(seconds)
        if created:
            self.created(_deployment(deployment_id)).inc()

    # -- observer ------------------------------------------------------------

    def run_started(self, run: FlowRun) -> None:
        self.started(_deployment(run.deployment_id)).inc()
        since = run.expected_start_time or run.created
        self.start_latency.observe(max(0.0, (utcnow() - since).total_seconds()))

    def run_finished(self, run: FlowRun, final: FlowRun | None, seconds: float | None) -> None:
        if seconds is not None:
            self.duration.observe(seconds)
        state = "CRASHED" if final is None else final.state.type.value
        if state not in FINAL_STATES:
            return  # a retry or a requeue: the run goes on
        key = (_deployment(run.deployment_id), state)
        child = self._finished_children.get(key)
        if child is None:
            child = self._finished_children[key] = self._finished.labels(*key)
        child.inc()

    def start_failed(self, run: FlowRun) -> None:
        self.start_failures.inc()


class HttpMetrics:
    """Request durations by method and route template (``/flow_runs/{flow_run_id}``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._histogram = Histogram(
            "headrace_http_request_duration_seconds",
            "Webserver requests, by method, route template and status",
            ["method", "route", "status"],
            buckets=FAST_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[str, str, int], Histogram] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._histogram.labels(method, route, str(status))
        child.observe(seconds)


def _children(metric: M) -> Callable[[str], M]:
    """``metric.labels(value)``, each child bound once and kept."""
    bound: dict[str, M] = {}

    def child(value: str) -> M:
        found = bound.get(value)
        if found is None:
            found = bound[value] = metric.labels(value)
        return found

    return child


def _deployment(deployment_id: UUID | None) -> str:
    return NO_DEPLOYMENT if deployment_id is None else str(deployment_id)
