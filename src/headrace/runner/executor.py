"""The executor: takes a claimed run from PENDING to its final state, in named steps.

resolve the job -> start the process -> pump its events (RUNNING, logs) ->
watch its timeout -> wait for its exit -> decide the outcome -> persist it.
``_persist`` is the only place a run's outcome is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from headrace.exceptions import (
    InvalidStateTransition,
    ObjectNotFound,
    StoreError,
    StoreUnavailable,
)
from headrace.flow_runs import FlowRun
from headrace.process.pipes import EventReader, read_output
from headrace.process.protocol import ChildEvent, ChildJob, FinalEvent, Log, Running
from headrace.process.starter import ChildProcess, ProcessLost, ProcessStarter
from headrace.runner.journal import Entry, Journal
from headrace.runner.logsink import LogSink
from headrace.runner.metrics import RunObserver
from headrace.runner.outcomes import Decision, KillReason, ProcessReport, decide_outcome
from headrace.states import ACTIVE_STATES, State, StateType
from headrace.store import AsyncStore
from headrace.store.records import Attempt

logger = logging.getLogger(__name__)

RUNNING_WRITE_DELAY_SECONDS = 0.02
"""RUNNING is written this late (or at the run's first log line, whichever comes first): a
quiet run shorter than this records RUNNING and its end in one transaction (the state
history still shows both, with the child's own times)."""
PERSIST_ATTEMPTS = 5
"""Tries to store an outcome the database refuses (an outage is waited out, however long)."""
PERSIST_RETRY_SECONDS = 0.5
PERSIST_RETRY_MAX_SECONDS = 5.0
"""An outcome the database did not take is retried this often at most, for as long as it takes."""


@dataclass(eq=False)
class RunHandle:
    """A run this runner is executing."""

    run: FlowRun
    process: ChildProcess | None = None
    kill_reason: KillReason | None = None
    final_event: FinalEvent | None = None
    task: asyncio.Task[FlowRun | None] | None = None
    running_timer: asyncio.TimerHandle | None = None
    running_args: tuple[datetime, int] = (datetime.min, 0)
    running_write: asyncio.Future[FlowRun] | None = None
    events: EventReader | None = None
    journal_entry: Entry | None = None
    started_at: float | None = None
    """When its process started (monotonic seconds)."""


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
        observers: Sequence[RunObserver] = (),
    ) -> None:
        self._store = store
        self._observers = tuple(observers)
        self._starter = starter
        self._logs = logs
        self._kill_grace_seconds = kill_grace_seconds
        self._on_finished = on_finished
        self._journal = journal
        self.active: dict[UUID, RunHandle] = {}
        self.waiting_outcomes = 0
        """Runs that ended and whose outcome the database has not taken yet."""
        self._giving_up = asyncio.Event()
        self.timed_write: Callable[[float], None] | None = None
        """Told how long each outcome took to write, when the runner keeps metrics."""

    def launch(self, run: FlowRun, entrypoint: str | None = None, *, title: str = "") -> RunHandle:
        """Start executing a claimed (PENDING) run in the background."""
        handle = RunHandle(run)
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

    def _kill_process(self, handle: RunHandle) -> asyncio.Task[int] | None:
        if handle.process is None:
            return None  # not started yet: _attempt kills it as soon as it exists
        return asyncio.get_running_loop().create_task(handle.process.kill(self._kill_grace_seconds))

    async def _execute(
        self, handle: RunHandle, entrypoint: str | None, title: str
    ) -> FlowRun | None:
        final: FlowRun | None = None
        try:
            final = await self._attempt(handle, entrypoint, title)
        except Exception as exc:
            # Whatever went wrong here, the run must not be left RUNNING under a live runner.
            logger.exception("Executing flow run %s failed", handle.run.name)
            final = await self._persist(handle, _crashed(f"The runner failed it: {exc!r}"))
        finally:
            if self.active.get(handle.run.id) is handle:  # not a later attempt's handle
                del self.active[handle.run.id]
            self._on_finished(final)
            self._tell_finished(handle, final)
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
        run = handle.run
        if self._journal is not None:
            handle.journal_entry = self._journal.entry_for(run)
        job = _job_for(run, entrypoint, handle.journal_entry, title)
        if job is None:
            return await self._persist(handle, _crashed("The flow run has no entrypoint to load"))
        try:
            handle.process = await self._starter.start(job)
        except Exception as exc:
            logger.exception("Could not start a process for flow run %s", run.name)
            for observer in self._observers:
                self._tell(observer.start_failed, run)
            return await self._persist(handle, _crashed(f"Could not start its process: {exc!r}"))
        handle.started_at = time.monotonic()
        for observer in self._observers:
            self._tell(observer.run_started, run)
        self._pump_events(handle)
        readers = read_output(handle.process.output, functools.partial(self._on_line, handle))
        if handle.kill_reason is not None:
            self._kill_process(handle)
        timer = self._watch_timeout(handle)
        try:
            exit_code: int | None = await handle.process.wait()
        except ProcessLost:
            exit_code = None
        finally:
            if timer is not None:
                timer.cancel()
            for reader in readers:
                reader.close()
            if handle.events is not None:
                handle.events.drain()  # what the process sent before it ended
                handle.events.close()
        self._flush_running(handle)  # before its logs; with none, RUNNING and the end share a batch
        await self._logs.flush()
        entry = handle.journal_entry
        if handle.final_event is None and entry is not None and self._journal is not None:
            handle.final_event = self._journal.recorded(entry)  # recorded, but not reported
        report = ProcessReport(exit_code, handle.final_event, handle.kill_reason)
        final = await self._persist(handle, decide_outcome(run, report))
        await self._settle_running(handle)
        return final

    # -- events from the child ---------------------------------------------

    def _pump_events(self, handle: RunHandle) -> None:
        assert handle.process is not None
        on_event = functools.partial(self._on_event, handle)
        handle.events = EventReader(handle.process.events, on_event)

    def _on_line(self, handle: RunHandle, level: int, line: str) -> None:
        self._add_log(handle, level, line, time.time())

    def _add_log(self, handle: RunHandle, level: int, message: str, timestamp: float) -> None:
        # A reader never sees a log line of a run the store still calls PENDING.
        self._flush_running(handle)
        run = handle.run
        self._logs.add(run.id, run.name, level, message, timestamp, after=handle.running_write)

    def _on_event(self, handle: RunHandle, event: ChildEvent) -> None:
        match event:
            case Log(level, message, timestamp):
                self._add_log(handle, level, message, timestamp)
            case Running(started, pid):
                handle.running_args = (datetime.fromtimestamp(started, UTC), pid)
                handle.running_timer = asyncio.get_running_loop().call_later(
                    RUNNING_WRITE_DELAY_SECONDS, self._mark_running, handle, *handle.running_args
                )
            case _:
                handle.final_event = event

    def _mark_running(self, handle: RunHandle, started: datetime, pid: int) -> None:
        """Queue RUNNING (with the child's own start time); a cancel meanwhile makes it moot."""
        handle.running_timer = None
        state = State(type=StateType.RUNNING, timestamp=started)
        run_id = handle.run.id
        handle.running_write = self._store.queue_state(
            run_id, state, expected=[StateType.PENDING], attempt=_attempt(handle.run), pid=pid
        )

    def _flush_running(self, handle: RunHandle) -> None:
        """Queue a RUNNING still held back now, ahead of the run's end, in the same batch."""
        timer = handle.running_timer
        if timer is not None:
            timer.cancel()
            self._mark_running(handle, *handle.running_args)

    async def _settle_running(self, handle: RunHandle) -> None:
        if handle.running_write is None:
            return
        try:
            await handle.running_write
        except InvalidStateTransition:
            pass  # cancelled before it ran: the cancellation path kills the process
        except StoreError:
            logger.exception("Could not record flow run %s as RUNNING", handle.run.name)

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
        """Record the outcome of this attempt; retried until the store takes it.

        However long the database is away, the run keeps its slot (so what waits
        is bounded by the runner's limit) and stays this runner's: recovery does
        not take it for lost. Only a stopping runner, or an error that is not an
        outage, gives up: recovery then resolves the run, from the journal if the
        child recorded its end there.
        """
        run = handle.run
        failures = 0
        try:
            while True:
                try:
                    final = await self._timed_outcome(run, decision)
                    break
                except StoreError as exc:
                    failures += 1
                    if failures == 1:
                        self.waiting_outcomes += 1
                    if not self._keep_trying(run, exc, failures):
                        return None
                    await self._sleep_unless_giving_up(_retry_delay(failures))
        finally:
            if failures:
                self.waiting_outcomes -= 1
        if failures:
            logger.info("Recorded the end of %s once the database took it", run.name)
        if handle.journal_entry is not None and self._journal is not None:
            self._journal.stored(handle.journal_entry)
        return final

    def _keep_trying(self, run: FlowRun, exc: StoreError, failures: int) -> bool:
        outage = isinstance(exc, StoreUnavailable)
        if self._giving_up.is_set() or (not outage and failures >= PERSIST_ATTEMPTS):
            logger.error("Gave up recording the end of %s: %s", run.name, exc)
            return False
        waiting = self.waiting_outcomes
        logger.warning(
            "Could not record the end of %s (%d outcomes wait for the database): %s",
            run.name,
            waiting,
            exc,
        )
        return True

    async def _timed_outcome(self, run: FlowRun, decision: Decision) -> FlowRun | None:
        began = time.monotonic()
        final = await self._store_outcome(run, decision)
        if self.timed_write is not None:
            self.timed_write(time.monotonic() - began)
        return final

    async def _store_outcome(self, run: FlowRun, decision: Decision) -> FlowRun | None:
        try:
            return await self._store.set_state(
                run.id,
                decision.state,
                expected=ACTIVE_STATES,
                attempt=_attempt(run),
                **decision.fields,
            )
        except InvalidStateTransition:
            return await self._persist_conflict(run, decision)
        except ObjectNotFound:
            return None

    def give_up_waiting(self) -> None:
        """Stop retrying outcomes the database did not take (the runner is stopping)."""
        self._giving_up.set()

    async def _sleep_unless_giving_up(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._giving_up.wait(), seconds)

    async def _persist_conflict(self, run: FlowRun, decision: Decision) -> FlowRun | None:
        current = await self._store.read_flow_run(run.id)
        attempt = _attempt(run)
        if attempt is not None and (current.runner_id, current.run_count) != attempt:
            logger.warning(
                "Flow run %s was taken over (it is attempt %d now); not recording attempt %d",
                run.name,
                current.run_count,
                attempt.run_count,
            )
            return current
        if current.state.type == StateType.CANCELLING:
            # Cancelled while it ended: a retry or requeue must not outlive the cancel.
            cancelled = State(type=StateType.CANCELLED, message="Cancelled by request")
            with contextlib.suppress(InvalidStateTransition):
                return await self._store.set_state(
                    run.id, cancelled, expected=[current.state.type], attempt=attempt
                )
        logger.warning(
            "Flow run %s is already %s; not recording %s",
            run.name,
            current.state.type.value,
            decision.state.type.value,
        )
        return current


def _attempt(run: FlowRun) -> Attempt | None:
    """The claim this runner is executing: its writes must not land on a later one."""
    return None if run.runner_id is None else Attempt(run.runner_id, run.run_count)


def _retry_delay(failures: int) -> float:
    return min(PERSIST_RETRY_SECONDS * 2.0 ** (failures - 1), PERSIST_RETRY_MAX_SECONDS)


def _job_for(
    run: FlowRun, entrypoint: str | None, journal: Entry | None, title: str
) -> ChildJob | None:
    target = entrypoint or run.entrypoint
    if not target:
        return None
    return ChildJob(
        flow_run_id=str(run.id),
        flow_run_name=run.name,
        entrypoint=target,
        parameters=dict(run.parameters),
        journal_path=None if journal is None else str(journal.segment),
        journal_key="" if journal is None else journal.key,
        title=title or f"headrace run {run.flow_name} {run.name}",
    )


def _crashed(message: str) -> Decision:
    return Decision(State(type=StateType.CRASHED, message=message))
