"""The executor: takes a claimed run from PENDING to its final state, in named steps.

resolve the job -> start the process -> pump its events (RUNNING, logs) ->
watch its timeout -> wait for its exit -> decide the outcome -> persist it.
``_persist`` is the only place a run's outcome is written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from headrace.flow_runs import FlowRun
from headrace.process.pipes import EventReader, read_output
from headrace.process.protocol import (
    ChildEvent,
    Completed,
    Crashed,
    Failed,
    FinalEvent,
    Invalid,
    Log,
    Running,
    TaskRunEvents,
)
from headrace.process.starter import ChildProcess, ProcessLost, ProcessStarter
from headrace.runner.jobs import crashed, job_for
from headrace.runner.journal import Entry, Journal
from headrace.runner.lease import Lease
from headrace.runner.logsink import LogSink
from headrace.runner.metrics import RunObserver
from headrace.runner.outcome_writer import OutcomeWriter
from headrace.runner.outcomes import (
    Decision,
    KillReason,
    ProcessReport,
    decide_outcome,
)
from headrace.runner.running_mark import RunningMark
from headrace.runner.subflow_events import SubflowEvents
from headrace.runner.task_events import TaskRunSink
from headrace.runner.tracing import RunTrace, run_trace
from headrace.store import AsyncStore

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class RunHandle:
    """A run this runner is executing."""

    run: FlowRun
    process: ChildProcess | None = None
    kill_reason: KillReason | None = None
    final_event: FinalEvent | None = None
    task: asyncio.Task[FlowRun | None] | None = None
    running: RunningMark | None = None
    events: EventReader | None = None
    journal_entry: Entry | None = None
    lease_lost: bool = False
    """The runner's lease lapsed during this attempt: nothing about it is recorded here."""
    started_at: float | None = None
    """When its process started (monotonic seconds)."""
    log_fields: dict[str, object] = field(default_factory=dict)
    """What each of its echoed log lines carries: the run's id, name, deployment, attempt."""
    trace: RunTrace = field(default_factory=lambda: RunTrace(None, None))


class Executor:
    """Runs claimed flow runs in child processes and records how each ended."""

    def __init__(
        self,
        store: AsyncStore,
        starter: ProcessStarter,
        logs: LogSink,
        *,
        kill_grace_seconds: float,
        on_finished: Callable[[FlowRun | None], None],
        journal: Journal | None = None,
        lease: Lease | None = None,
        observers: Sequence[RunObserver] = (),
    ) -> None:
        self._store = store
        self._observers = tuple(observers)
        self._starter = starter
        self._lease = lease
        self._logs = logs
        self._kill_grace_seconds = kill_grace_seconds
        self._on_finished = on_finished
        self._journal = journal
        self.active: dict[UUID, RunHandle] = {}
        self.outcomes = OutcomeWriter(store)
        self.on_ended: Callable[[FlowRun, FinalEvent | None], None] | None = None
        """Told of each run whose final state this runner wrote, with what its process
        reported (its hooks and webhooks follow)."""
        self.subflows = SubflowEvents(
            store, logs, lambda i: getattr(self.active.get(i), "process", None)
        )
        self.task_runs = TaskRunSink(store, self.subflows.created)
        self.environment: dict[str, str] = {}
        """Settings each run's process takes as its own (``ChildJob.environment``)."""

    def launch(
        self,
        run: FlowRun,
        entrypoint: str | None = None,
        *,
        title: str = "",
        deployment: str | None = None,
    ) -> RunHandle:
        """Start executing a claimed (PENDING) run in the background.

        ``deployment``: how its log lines name its deployment (``flow/deployment``).
        """
        handle = RunHandle(run, lease_lost=not self.lease_held())
        handle.log_fields = {
            "flow_run_id": str(run.id),
            "flow_run_name": run.name,
            "deployment": deployment,
            "attempt": run.run_count,
        }
        handle.trace = run_trace(run, deployment)
        earlier = self.active.get(run.id)
        if earlier is not None:  # an attempt of ours was taken over, then claimed again by us
            self.kill(run.id, KillReason.LOST)
        self.active[run.id] = handle
        handle.task = asyncio.get_running_loop().create_task(
            self._execute(handle, entrypoint, title), name=f"headrace-run-{run.name}"
        )
        return handle

    def kill(self, flow_run_id: UUID, reason: KillReason) -> asyncio.Task[int] | None:
        """End a run's process for ``reason`` (the first reason given wins).

        The reason is recorded at once; the returned task finishes when the
        process is gone. The run's outcome is recorded by its own task.
        """
        handle = self.active.get(flow_run_id)
        if handle is None or handle.kill_reason is not None:
            return None
        handle.kill_reason = reason
        return self._kill_process(handle)

    def lease_held(self) -> bool:
        return self._lease is None or self._lease.held()

    def lose_lease(self) -> int:
        """The lease lapsed: kill every run's process soon enough that it is gone before the
        lease expires, and record none of their outcomes (recovery resolves them)."""
        stopped = 0
        for handle in [h for h in self.active.values() if not h.lease_lost]:
            handle.lease_lost = True
            handle.kill_reason = handle.kill_reason or KillReason.LEASE
            stopped += handle.process is not None and handle.process.exitcode is None
            self._kill_process(handle)
        return stopped

    def _kill_process(self, handle: RunHandle) -> asyncio.Task[int] | None:
        if handle.process is None:
            return None  # not started yet: _attempt kills it as soon as it exists
        grace = self._kill_grace_seconds
        if handle.lease_lost and self._lease is not None:
            grace = self._lease.kill_grace(grace)
        return asyncio.get_running_loop().create_task(handle.process.kill(grace))

    async def _execute(
        self, handle: RunHandle, entrypoint: str | None, title: str
    ) -> FlowRun | None:
        final: FlowRun | None = None
        try:
            final = await self._attempt(handle, entrypoint, title)
        except Exception as exc:
            # Whatever went wrong here, the run must not be left RUNNING under a live runner.
            logger.exception("Executing flow run %s failed", handle.run.name)
            final = await self._persist(handle, crashed(f"The runner failed it: {exc!r}"))
        finally:
            if self.active.get(handle.run.id) is handle:  # not a later attempt's handle
                del self.active[handle.run.id]
                self.subflows.forget(handle.run.id)
            self._on_finished(final)
            self._tell_finished(handle, final)
            handle.trace.finished(final)
        return final

    def _tell_finished(self, handle: RunHandle, final: FlowRun | None) -> None:
        started = handle.started_at
        seconds = None if started is None else time.monotonic() - started
        for observer in self._observers:
            self._tell(observer.run_finished, handle.run, final, seconds)

    @staticmethod
    def _tell(hear: Callable[..., None], *args: object) -> None:
        """An observer that fails (a console whose pipe closed) costs no run anything."""
        try:
            hear(*args)
        except Exception:
            logger.exception("Could not report a flow run's start or end")

    async def _attempt(
        self, handle: RunHandle, entrypoint: str | None, title: str
    ) -> FlowRun | None:
        started = await self._start(handle, entrypoint, title)
        if isinstance(started, Decision):
            return await self._persist(handle, started)
        if not started:
            return None  # claimed as the lease lapsed: recovery resolves it
        exit_code = await self._wait_for_exit(handle)
        return await self._finish(handle, exit_code)

    async def _start(
        self, handle: RunHandle, entrypoint: str | None, title: str
    ) -> Decision | bool:
        """Start the run's process: True, False (not to be started), or why it could not."""
        run = handle.run
        if self._journal is not None:
            handle.journal_entry = self._journal.entry_for(run)
        job = job_for(run, entrypoint, handle.journal_entry, title, handle.trace.traceparent)
        if job is None:
            return crashed("The flow run has no entrypoint to load")
        job = await self.task_runs.job_with_cache(job, run)
        job = dataclasses.replace(job, environment=self.environment)
        if handle.lease_lost:
            logger.warning("Not starting flow run %s: this runner lost its lease", run.name)
            return False
        try:
            handle.process = await self._starter.start(job)
        except Exception as exc:
            for observer in self._observers:
                self._tell(observer.start_failed, run)
            if isinstance(exc, ProcessLost):
                # The fork server died with the fork asked for: a run of the dead fork server
                # like those it had started (what it forked died with it): a retry if left.
                logger.error("The fork server died as it started flow run %s", run.name)
                return self._lost_at_start(handle)
            logger.exception("Could not start a process for flow run %s", run.name)
            return crashed(f"Could not start its process: {exc!r}")
        handle.started_at = time.monotonic()
        handle.trace.event("process started", pid=handle.process.pid)
        for observer in self._observers:
            self._tell(observer.run_started, run)
        return True

    def _lost_at_start(self, handle: RunHandle) -> Decision:
        """The outcome of a run whose process the fork server died forking, or never forked."""
        entry = handle.journal_entry
        if entry is not None and self._journal is not None:
            handle.final_event = self._journal.recorded(entry)  # its body may have ended
        return decide_outcome(
            handle.run, ProcessReport(None, handle.final_event, handle.kill_reason)
        )

    async def _wait_for_exit(self, handle: RunHandle) -> int | None:
        """Pump the process's events and output, watch its timeout, wait for its exit."""
        process = handle.process
        assert process is not None
        self._pump_events(handle)
        on_line = functools.partial(self._on_line, handle)
        readers = read_output(process.output, on_line, self._logs.line_limit_chars)
        if handle.kill_reason is not None:
            self._kill_process(handle)
        timer = self._watch_timeout(handle)
        try:
            return await process.wait()
        except ProcessLost:
            process.signal_group(signal.SIGKILL)  # what it started, before a new attempt
            return None
        finally:
            if timer is not None:
                timer.cancel()
            for reader in readers:
                reader.close()
            if handle.events is not None:
                handle.events.drain()  # what the process sent before it ended
                handle.events.close()

    async def _finish(self, handle: RunHandle, exit_code: int | None) -> FlowRun | None:
        """Write what it logged, decide its outcome and persist it."""
        run = handle.run
        handle.trace.event("process ended", exit_code=-1 if exit_code is None else exit_code)
        self._flush_running(handle)  # before its logs; with none, RUNNING and the end share a batch
        self._logs.end_attempt(run.id, run.name, handle.log_fields)
        await self._logs.flush()
        self.task_runs.end_attempt(run)
        await self.task_runs.flush()  # before its end: a retry is handed what it cached
        entry = handle.journal_entry
        if handle.final_event is None and entry is not None and self._journal is not None:
            handle.final_event = self._journal.recorded(entry)  # recorded, but not reported
        report = ProcessReport(exit_code, handle.final_event, handle.kill_reason)
        decision = decide_outcome(run, report)
        await self.subflows.settle(run, decision.state)  # its subflows' ends come first
        final = await self._persist(handle, decision)
        if handle.running is not None:
            await handle.running.settle()
        return final

    # -- events from the child ---------------------------------------------

    def _pump_events(self, handle: RunHandle) -> None:
        assert handle.process is not None
        on_event = functools.partial(self._on_event, handle)
        handle.events = EventReader(handle.process.events, on_event)

    def _on_line(self, handle: RunHandle, level: int, line: str, cut: int) -> None:
        self._add_log(handle, level, line, time.time(), cut)

    def _add_log(
        self, handle: RunHandle, level: int, message: str, timestamp: float, cut: int = 0
    ) -> None:
        # A reader never sees a log line of a run the store still calls PENDING.
        self._flush_running(handle)
        run = handle.run
        self._logs.add(
            run.id,
            run.name,
            level,
            message,
            timestamp,
            after=None if handle.running is None else handle.running.write,
            cut=cut,
            fields=handle.log_fields,
        )

    def _on_event(self, handle: RunHandle, event: ChildEvent) -> None:
        if self.subflows.take(handle.run, event):
            return  # about a subflow's run
        match event:
            case Log(level, message, timestamp, task_run_name):
                if task_run_name is not None:
                    message = f"{task_run_name} | {message}"
                self._add_log(handle, level, message, timestamp)
            case TaskRunEvents():
                self.task_runs.add(handle.run, event)
            case Running(started, pid):
                handle.running = RunningMark(self._store, handle.run)
                handle.running.started(started, pid)
            case Completed() | Failed() | Invalid() | Crashed():
                handle.final_event = event

    @staticmethod
    def _flush_running(handle: RunHandle) -> None:
        if handle.running is not None:
            handle.running.flush()

    def _watch_timeout(self, handle: RunHandle) -> asyncio.TimerHandle | None:
        seconds = handle.run.timeout_seconds
        if seconds is None:
            return None
        loop = asyncio.get_running_loop()

        def expire() -> None:
            self.kill(handle.run.id, KillReason.TIMEOUT)

        return loop.call_later(seconds, expire)

    # -- the one writer ----------------------------------------------------

    async def _persist(self, handle: RunHandle, decision: Decision) -> FlowRun | None:
        """Record the outcome of this attempt: the one place a run's outcome is written."""
        on_ended = self.on_ended

        def written(final: FlowRun) -> None:
            if on_ended is not None and final.state.type.is_terminal:
                self._tell(on_ended, final, handle.final_event)

        final = await self.outcomes.write(handle.run, decision, lambda: handle.lease_lost, written)
        if final is not None and handle.journal_entry is not None and self._journal is not None:
            self._journal.stored(handle.journal_entry)
        return final

    @property
    def waiting_outcomes(self) -> int:
        """Runs that ended and whose outcome the database has not taken yet."""
        return self.outcomes.waiting

    def give_up_waiting(self) -> None:
        """Stop retrying outcomes the database did not take (the runner is stopping)."""
        self.outcomes.give_up()
