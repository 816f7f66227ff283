"""Task runs inside a flow run's process: retries, timeouts, the cache, and their reports.

Each call of a task becomes a task run named ``<task>-<n>`` and is reported to
the runner as ``TaskRunUpdate`` events (started, awaiting a retry, ended), the
runner keeping the last. The process never opens the database, so the task
cache comes with the job (``ChildJob.task_cache``: the deployment's live
entries, handed over by the runner) and new entries go back as ``TaskCached``
events; the runner stores them before it records the run's end, so a retry of
the flow run finds them.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from headrace import runtime
from headrace.jsonvalues import storable
from headrace.process.protocol import ChildEvent, ChildJob, Completed, TaskCached, TaskRunUpdate
from headrace.process.task_reports import TaskReports
from headrace.retries import delay_before, should_retry
from headrace.tasks import Task, TaskFuture, install_engine, loop_future, resolve_futures

current_task_run: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "headrace_task_run", default=None
)
"""The name of the task run executing here (what its log lines say)."""

_MISS = object()
MESSAGE_LIMIT_CHARS = 4000
SUBMIT_THREADS = 32
"""Threads that run submitted sync tasks at once (created as needed): tasks often wait on I/O,
and a task that waits on tasks it submitted needs threads to spare."""


@dataclass
class _Attempts:
    """One task run as it goes: its identity, attempts and cache key."""

    id: str
    name: str
    task_name: str
    start_time: float
    flow_run_id: str | None = None
    """The run whose body called it (a subflow's, when called inside one)."""
    key: str | None = None
    run_count: int = 0
    notes: list[str] = field(default_factory=list)


class RunTaskEngine:
    """Runs the task calls of one flow run and reports each as a task run."""

    def __init__(
        self,
        send: Callable[[ChildEvent], None],
        cache: dict[str, Any] | None = None,
        encode: Callable[[Any], tuple[Any, str | None]] | None = None,
    ) -> None:
        self.reports = TaskReports(send)
        self._cache: dict[str, tuple[Any, float | None]] = {
            key: (entry[0], entry[1]) for key, entry in (cache or {}).items()
        }
        self._encode = encode or (lambda value: (value, None))
        self._counters: dict[str, itertools.count[int]] = {}
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    # -- the TaskEngine interface ----------------------------------------------

    def call(self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The call's result; for an async task an awaitable, or in a sync flow (no loop
        running) its result, the task run on a loop of its own."""
        if task.is_async:
            import asyncio  # here: sync runs do without it

            coroutine = self._run_async(task, args, kwargs)
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(coroutine)
            return coroutine
        return self._run_sync(task, args, kwargs)

    def submit(
        self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> TaskFuture[Any]:
        # Reported now, not when a thread or the loop gets to it: a flow that returns at
        # once still leaves a trace of every task it submitted.
        run = self._new_run(task)
        self._report(run, "PENDING", "Pending")
        if task.is_async:
            import asyncio  # here: sync runs do without it

            try:
                asyncio.get_running_loop()
            except RuntimeError:  # a sync flow: the async task gets a loop of its own
                work = lambda: asyncio.run(self._run_async(task, args, kwargs, run))  # noqa: E731
                return TaskFuture(self._threads().submit(work), run.name)
            return loop_future(self._run_async(task, args, kwargs, run), run.name)
        context = contextvars.copy_context()
        future = self._threads().submit(context.run, self._run_sync, task, args, kwargs, run)
        return TaskFuture(future, run.name)

    # -- one task run --------------------------------------------------------

    def _run_sync(
        self,
        task: Task[Any, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        run: _Attempts | None = None,
    ) -> Any:
        run = run or self._new_run(task)
        args, kwargs = resolve_futures(args, kwargs)
        self._key(task, run, args, kwargs)
        if (hit := self._cached(run)) is not _MISS:
            return hit
        while True:
            run.run_count += 1
            self._report(run, "RUNNING", "Running")
            token = current_task_run.set(run.name)
            try:
                result = self._invoke_sync(task, args, kwargs)
            except BaseException as exc:
                delay = self._after_failure(task, run, exc)
                if delay is None:
                    raise
                time.sleep(delay)
                continue
            finally:
                current_task_run.reset(token)
            return self._completed(task, run, result)

    async def _run_async(
        self,
        task: Task[Any, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        run: _Attempts | None = None,
    ) -> Any:
        import asyncio  # an async task runs on a loop: it is loaded already

        run = run or self._new_run(task)
        args, kwargs = await _awaited_futures(args, kwargs)
        self._key(task, run, args, kwargs)
        if (hit := self._cached(run)) is not _MISS:
            return hit
        while True:
            run.run_count += 1
            self._report(run, "RUNNING", "Running")
            token = current_task_run.set(run.name)
            try:
                result = await asyncio.wait_for(task.fn(*args, **kwargs), task.timeout_seconds)
            except BaseException as exc:
                named = _timeout_named(task, exc)
                delay = self._after_failure(task, run, named)
                if delay is None and named is exc:
                    raise
                if delay is None:
                    raise named from None
                await asyncio.sleep(delay)
                continue
            finally:
                current_task_run.reset(token)
            return self._completed(task, run, result)

    def _invoke_sync(
        self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if task.timeout_seconds is None:
            return task.fn(*args, **kwargs)
        # A thread cannot be interrupted: the call is waited for at most its timeout, then
        # left to finish on its own while the task run fails. A thread of its own, not one
        # of the pool: submitted calls waiting on the pool's threads would starve it.
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        context = contextvars.copy_context()

        def call() -> None:
            try:
                future.set_result(context.run(task.fn, *args, **kwargs))
            except BaseException as exc:  # handed to the waiting caller
                future.set_exception(exc)

        threading.Thread(target=call, name=f"headrace-task-{task.name}", daemon=True).start()
        try:
            return future.result(task.timeout_seconds)
        except concurrent.futures.TimeoutError:
            raise _timeout(task) from None

    def _new_run(self, task: Task[Any, Any]) -> _Attempts:
        with self._lock:
            counter = self._counters.setdefault(task.name, itertools.count())
            name = f"{task.name}-{next(counter)}"
        return _Attempts(str(uuid.uuid4()), name, task.name, time.time(), runtime.flow_run.id)

    def _key(
        self, task: Task[Any, Any], run: _Attempts, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """The run's cache key, from ``cache_key_fn`` (which fails the task run if it raises)."""
        if task.cache_key_fn is None:
            return
        try:
            key = task.cache_key_fn(runtime.flow_run, task.parameters_of(args, kwargs))
        except Exception as exc:
            message = f"Its cache_key_fn raised {_describe(exc)}"
            self._report(run, "FAILED", "Failed", message, ended=True)
            raise
        run.key = None if key is None else f"{task.name}:{key}"

    def _cached(self, run: _Attempts) -> Any:
        """The cached result for the run's key, reported as a Cached task run; else ``_MISS``."""
        if run.key is None:
            return _MISS
        with self._lock:
            entry = self._cache.get(run.key)
        if entry is None or (entry[1] is not None and entry[1] <= time.time()):
            return _MISS
        message = "Reused the cached result of an earlier run"
        self._report(run, "COMPLETED", "Cached", message, ended=True)
        return entry[0]

    def _after_failure(
        self, task: Task[Any, Any], run: _Attempts, exc: BaseException
    ) -> float | None:
        """The delay before the next attempt, or None (then the task run FAILED)."""
        what = _describe(exc)
        if isinstance(exc, Exception) and run.run_count <= task.retries:
            allowed, note = should_retry(task.retry_condition_fn, exc)
            if allowed:
                delay = delay_before(run.run_count, task.retry_delays, task.retry_jitter_factor)
                message = f"Attempt {run.run_count} failed, retrying in {delay:.3g} s: {what}"
                self._report(run, "SCHEDULED", "AwaitingRetry", message)
                return delay
            what = f"{what} ({note})"
        self._report(run, "FAILED", "Failed", f"Task run raised {what}", ended=True)
        return None

    def _completed(self, task: Task[Any, Any], run: _Attempts, result: Any) -> Any:
        note = None
        if run.key is not None:
            value, why_not = self._encode(result)
            if why_not is None:
                expires = task.cache_expiration
                until = None if expires is None else time.time() + expires.total_seconds()
                with self._lock:
                    self._cache[run.key] = (value, until)
                self.reports.cache(TaskCached(run.key, value, until))
            else:
                note = f"Not cached: {why_not}"
        self._report(run, "COMPLETED", "Completed", note, ended=True)
        return result

    def _report(
        self,
        run: _Attempts,
        state_type: str,
        state_name: str,
        message: str | None = None,
        *,
        ended: bool = False,
    ) -> None:
        if message is not None:
            message = storable(message[:MESSAGE_LIMIT_CHARS])
        self.reports.update(
            TaskRunUpdate(
                run.id,
                run.name,
                run.task_name,
                state_type,
                state_name,
                run.run_count,
                run.start_time,
                time.time() if ended else None,
                message,
                run.key,
                run.flow_run_id,
            )
        )

    def _threads(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    SUBMIT_THREADS, thread_name_prefix="headrace-task"
                )
            return self._pool


async def _awaited_futures(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Futures among the arguments, awaited (on a loop, ``.result()`` would block it)."""
    if not any(isinstance(a, TaskFuture) for a in (*args, *kwargs.values())):
        return args, kwargs
    values = tuple([await a if isinstance(a, TaskFuture) else a for a in args])
    keywords = {k: await v if isinstance(v, TaskFuture) else v for k, v in kwargs.items()}
    return values, keywords


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _timeout(task: Task[Any, Any]) -> TimeoutError:
    return TimeoutError(f"Task {task.name!r} timed out after {task.timeout_seconds:g} s")


def _timeout_named(task: Task[Any, Any], exc: BaseException) -> BaseException:
    """asyncio's bare TimeoutError of ``wait_for`` as one that names the task."""
    if isinstance(exc, TimeoutError) and task.timeout_seconds is not None and not str(exc):
        return _timeout(task)
    return exc


def engine_for(
    job: ChildJob,
    send: Callable[[ChildEvent], None],
    encode: Callable[[Any], Completed],
) -> RunTaskEngine:
    """The engine of ``job``'s run, installed: from now on this process's task calls are
    task runs of it."""

    def encoded(value: Any) -> tuple[Any, str | None]:
        completed = encode(value)
        return completed.result, completed.message

    global _installed
    engine = _installed = RunTaskEngine(send, job.task_cache, encoded)
    install_engine(engine)
    return engine


_installed: RunTaskEngine | None = None


def flush_task_runs() -> None:
    """Send the task run reports still waiting: the run is about to report its end."""
    if _installed is not None:
        _installed.reports.flush()
