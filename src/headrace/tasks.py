"""``@task``: a function whose calls inside a flow run are recorded as task runs.

Outside a run a task is its function: calling it is a plain call, and
``submit``/``map`` give futures already resolved (sync tasks) or run on the
caller's event loop (async tasks). Inside a run, the run's process installs a
``TaskEngine`` (``headrace.process.taskruns``) that runs each call with the
task's retries, timeout and cache, and reports the task run to the runner.
This module stays free of I/O and of the process layer: the engine comes to
it, so ``@task`` costs nothing at import time.
"""

from __future__ import annotations

import concurrent.futures
import functools
import inspect
from collections.abc import Callable, Generator, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, overload

from headrace.exceptions import FlowDefinitionError
from headrace.retries import (
    RetryCondition,
    RetryDelays,
    check_condition,
    check_jitter,
    resolve_delays,
)

if TYPE_CHECKING:
    import asyncio

P = ParamSpec("P")
R = TypeVar("R")

CacheKeyFn = Callable[[Any, dict[str, Any]], "str | None"]
"""``cache_key_fn(context, parameters) -> str | None``: the run context
(``headrace.runtime.flow_run``) and the call's arguments by name; None: do not cache."""


class TaskEngine(Protocol):
    """What runs a task's calls inside a flow run (installed by the run's process)."""

    def call(self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any: ...

    def submit(
        self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> TaskFuture[Any]: ...


_engine: TaskEngine | None = None


def install_engine(engine: TaskEngine | None) -> None:
    """Make ``engine`` run every task call of this process (None: plain calls again)."""
    global _engine
    _engine = engine


class TaskFuture(Generic[R]):
    """A submitted task call: ``.result()`` waits for it (and raises what it raised).

    An async task submitted from a coroutine runs on that event loop: there, await
    the future (``await future``) rather than block the loop on ``.result()``.
    """

    __slots__ = ("_future", "_loop_task", "name")

    def __init__(
        self,
        future: concurrent.futures.Future[R],
        name: str = "",
        loop_task: asyncio.Future[R] | None = None,
    ) -> None:
        self._future = future
        self._loop_task = loop_task
        self.name = name

    def result(self, timeout: float | None = None) -> R:
        """The task's return value, waiting at most ``timeout`` seconds (None: as long as it
        takes)."""
        if self._loop_task is not None and not self._future.done() and _on_loop_of(self):
            raise RuntimeError(
                f"Task {self.name!r} runs on this event loop: `await` its future instead of "
                "calling .result(), which would block the loop it needs"
            )
        return self._future.result(timeout)

    def done(self) -> bool:
        return self._future.done()

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the call ended, without raising its exception."""
        concurrent.futures.wait([self._future], timeout)

    def __await__(self) -> Generator[Any, None, R]:
        import asyncio

        if self._loop_task is not None:
            return self._loop_task.__await__()
        return asyncio.wrap_future(self._future).__await__()

    def __repr__(self) -> str:
        state = "done" if self._future.done() else "pending"
        return f"TaskFuture({self.name!r}, {state})"


def _on_loop_of(future: TaskFuture[Any]) -> bool:
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return False
    task = future._loop_task
    return task is not None and task.get_loop() is loop


def resolve_futures(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Arguments that are futures become their results: a task may take another's future."""
    if not any(isinstance(a, TaskFuture) for a in (*args, *kwargs.values())):
        return args, kwargs
    return (
        tuple(a.result() if isinstance(a, TaskFuture) else a for a in args),
        {k: v.result() if isinstance(v, TaskFuture) else v for k, v in kwargs.items()},
    )


def done_future(fn: Callable[[], R], name: str) -> TaskFuture[R]:
    """Call ``fn`` now and hold its result (or exception) in a future."""
    future: concurrent.futures.Future[R] = concurrent.futures.Future()
    try:
        future.set_result(fn())
    except BaseException as exc:  # held for .result() to raise, as a thread would
        future.set_exception(exc)
    return TaskFuture(future, name)


def loop_future(coroutine: Any, name: str) -> TaskFuture[Any]:
    """Run ``coroutine`` on the running event loop (or, with none, on its own) as a future."""
    import asyncio  # here: ``import headrace`` and sync runs do without it

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return done_future(lambda: asyncio.run(coroutine), name)
    task = loop.create_task(coroutine, name=f"headrace-task-{name}")
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def settle(done: asyncio.Future[Any]) -> None:
        if done.cancelled():
            future.cancel()
        elif (exc := done.exception()) is not None:
            future.set_exception(exc)
        else:
            future.set_result(done.result())

    task.add_done_callback(settle)
    return TaskFuture(future, name, task)


class Task(Generic[P, R]):
    """A function recorded as a task run each time a flow run calls it."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        retries: int = 0,
        retry_delay_seconds: RetryDelays = 0,
        timeout_seconds: float | None = None,
        cache_key_fn: CacheKeyFn | None = None,
        cache_expiration: timedelta | None = None,
        retry_jitter_factor: float | None = None,
        retry_condition_fn: RetryCondition | None = None,
    ) -> None:
        if not callable(fn):
            raise FlowDefinitionError(f"@task needs a function, got {fn!r}")
        self.fn = fn
        self.name = _check_name(name if name is not None else _default_name(fn))
        self.retries = _check_retries(retries)
        self.retry_delays = resolve_delays(self.retries, retry_delay_seconds)
        self.retry_jitter_factor = check_jitter(retry_jitter_factor)
        self.retry_condition_fn = check_condition(retry_condition_fn)
        self.timeout_seconds = _check_timeout(timeout_seconds)
        self.cache_key_fn = _check_cache_key_fn(cache_key_fn)
        self.cache_expiration = _check_expiration(cache_expiration)
        self.is_async = inspect.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn, updated=())

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the task: recorded inside a flow run, a plain call outside one."""
        engine = _engine
        if engine is None:
            return self.fn(*args, **kwargs)
        result: R = engine.call(self, args, kwargs)
        return result

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> TaskFuture[R]:
        """Run the task concurrently: sync tasks on threads, async tasks on the event loop."""
        engine = _engine
        if engine is not None:
            return engine.submit(self, args, kwargs)
        if self.is_async:
            return loop_future(self.fn(*args, **kwargs), self.name)
        values, keywords = resolve_futures(args, kwargs)
        return done_future(functools.partial(self.fn, *values, **keywords), self.name)

    def map(self, *iterables: Iterable[Any], **kwargs: Any) -> list[TaskFuture[R]]:
        """One submitted call per item (``zip`` of several iterables), keywords shared."""
        return [self.submit(*items, **kwargs) for items in zip(*iterables, strict=True)]

    def parameters_of(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's arguments by parameter name (what ``cache_key_fn`` sees)."""
        bound = _signature(self.fn).bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    def __repr__(self) -> str:
        return f"Task(name={self.name!r})"


@functools.cache
def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(fn)


def _default_name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__name__", type(fn).__name__)).replace("_", "-")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise FlowDefinitionError(f"A task's name must be a non-empty string, got {name!r}")
    return name


def _check_retries(retries: int) -> int:
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise FlowDefinitionError(f"retries must be an integer >= 0, got {retries!r}")
    return retries


def _check_timeout(seconds: float | None) -> float | None:
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise FlowDefinitionError(f"timeout_seconds must be a number > 0 or None, got {seconds!r}")
    return float(seconds)


def _check_cache_key_fn(fn: CacheKeyFn | None) -> CacheKeyFn | None:
    if fn is not None and not callable(fn):
        raise FlowDefinitionError(
            f"cache_key_fn must be a callable (context, parameters) -> str | None, got {fn!r}"
        )
    return fn


def _check_expiration(expiration: timedelta | None) -> timedelta | None:
    if expiration is not None and (
        not isinstance(expiration, timedelta) or expiration <= timedelta(0)
    ):
        raise FlowDefinitionError(
            f"cache_expiration must be a positive datetime.timedelta or None, got {expiration!r}"
        )
    return expiration


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay_seconds: RetryDelays = 0,
    timeout_seconds: float | None = None,
    cache_key_fn: CacheKeyFn | None = None,
    cache_expiration: timedelta | None = None,
    retry_jitter_factor: float | None = None,
    retry_condition_fn: RetryCondition | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    fn: Callable[P, R] | None = None,
    /,
    **options: Any,
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Turn a sync or async function into a Task, with or without options."""

    def decorate(function: Callable[P, R]) -> Task[P, R]:
        return Task(function, **options)

    return decorate if fn is None else decorate(fn)
