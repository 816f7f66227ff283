"""``@flow``: a plain function plus what headrace needs to run it.

A ``Flow`` keeps its function's signature for type checkers (``ParamSpec``) and
for people (``functools.update_wrapper``), so a decorated function can still be
called, tested and imported as before; calling it validates the arguments the
same way a run triggered over HTTP would.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from headrace import runtime
from headrace.exceptions import FlowDefinitionError
from headrace.hooks import Hook, HookKind, check_hooks
from headrace.retries import (
    RetryCondition,
    RetryDelays,
    check_condition,
    check_jitter,
    resolve_delays,
)
from headrace.signatures import check_signature

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from headrace.deployments import DeploymentOptions, RunnerDeployment
    from headrace.parameters import ParameterModel, ParameterSchema

P = ParamSpec("P")
R = TypeVar("R")


class Flow(Generic[P, R]):
    """A function headrace can deploy, run in a child process, retry and time out."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        version: str | None = None,
        description: str | None = None,
        retries: int = 0,
        retry_delay_seconds: RetryDelays = 0,
        timeout_seconds: float | None = None,
        retry_jitter_factor: float | None = None,
        retry_condition_fn: RetryCondition | None = None,
        on_completion: Sequence[Hook] | None = None,
        on_failure: Sequence[Hook] | None = None,
        on_crashed: Sequence[Hook] | None = None,
        on_cancellation: Sequence[Hook] | None = None,
    ) -> None:
        if not callable(fn):
            raise FlowDefinitionError(f"@flow needs a function, got {fn!r}")
        self._signature = check_signature(fn)
        self.fn = fn
        self.name = _check_name(name if name is not None else _default_name(fn))
        self.version = version
        self.description = description if description is not None else inspect.getdoc(fn)
        self.retries = _check_retries(retries)
        self.retry_delays = resolve_delays(self.retries, retry_delay_seconds)
        """One delay per retry, the last one repeated (``headrace.retries``)."""
        self.retry_delay_seconds = self.retry_delays[0]
        self.retry_jitter_factor = check_jitter(retry_jitter_factor)
        self.retry_condition_fn = check_condition(retry_condition_fn)
        self.timeout_seconds = _check_timeout(timeout_seconds)
        self.on_completion = _hooks("on_completion", on_completion)
        self.on_failure = _hooks("on_failure", on_failure)
        self.on_crashed = _hooks("on_crashed", on_crashed)
        self.on_cancellation = _hooks("on_cancellation", on_cancellation)
        functools.update_wrapper(self, fn, updated=())

    def hooks(self, kind: HookKind) -> tuple[Hook, ...]:
        """The hooks of one kind (``on_failure``, ...), in the order given."""
        hooks: tuple[Hook, ...] = getattr(self, kind)
        return hooks

    @property
    def parameters(self) -> ParameterSchema:
        """The JSON schema of the function's parameters (built once)."""
        return self._compiled.schema

    @property
    def is_async(self) -> bool:
        """True when calling the flow returns an awaitable."""
        return inspect.iscoroutinefunction(self.fn)

    @property
    def _compiled(self) -> ParameterModel:
        # Imported on first use: pydantic is paid for when a schema or a validation
        # is needed, not by ``@flow`` or ``import headrace``.
        from headrace.parameters import compile_parameters

        return compile_parameters(self.fn)

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Coerce a dict of parameters for this flow, or raise ParameterValidationError."""
        return self._compiled.validate(parameters)

    def validate_json_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Check parameters for this flow and return them JSON-encoded, as stored."""
        return self._compiled.validate_json(parameters)

    def check_default_parameters(self, parameters: dict[str, Any]) -> None:
        """Check the given values without requiring every parameter (deployment defaults)."""
        self._compiled.check_partial(parameters)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function in-process with validated, coerced arguments.

        Wrong arity or unknown keywords raise TypeError as a plain call would;
        bad values raise ParameterValidationError naming each parameter. Inside
        a run, the call is a subflow: a child run of the caller's run.
        """
        bound = self._signature.bind_partial(*args, **kwargs)
        arguments = self._compiled.validate(bound.arguments)
        subflow = runtime.subflow_call()
        if subflow is not None:  # inside a run: a child run of it (``process/subflows.py``)
            result: R = subflow(self, arguments)
            return result
        return self.fn(**arguments)  # type: ignore[call-arg]

    def __repr__(self) -> str:
        return f"Flow(name={self.name!r}, fn={_qualified_name(self.fn)})"

    def to_deployment(
        self, name: str | None = None, **options: Unpack[DeploymentOptions]
    ) -> RunnerDeployment:
        """This flow as a deployment: checked now, served by ``serve()`` or a ``Runner``."""
        # Imported here, not at the top: ``import headrace`` and every run's child
        # process load this module, and need neither deployments nor pydantic.
        from headrace.deployments import RunnerDeployment

        return RunnerDeployment(self, name, **options)

    def serve(
        self,
        name: str | None = None,
        *,
        limit: int | None = None,
        webserver: bool = False,
        **options: Unpack[DeploymentOptions],
    ) -> None:
        """Serve this flow as one deployment until Ctrl-C or SIGTERM (blocks).

        The deployment keywords are ``to_deployment``'s; ``limit`` and
        ``webserver`` configure the runner that serves it.
        """
        # Imported here, not at the top, to keep ``import headrace`` and run
        # processes light: the runner brings the store and the web stack.
        from headrace.runner.serving import serve

        serve(self.to_deployment(name, **options), limit=limit, webserver=webserver)


def _default_name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__name__", type(fn).__name__)).replace("_", "-")


def _qualified_name(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "?"
    qualname = getattr(fn, "__qualname__", None) or repr(fn)
    return f"{module}.{qualname}"


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise FlowDefinitionError(f"A flow's name must be a non-empty string, got {name!r}")
    return name


def _check_retries(retries: int) -> int:
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise FlowDefinitionError(f"retries must be an integer >= 0, got {retries!r}")
    return retries


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _hooks(kind: str, hooks: Sequence[Hook] | None) -> tuple[Hook, ...]:
    try:
        return check_hooks(kind, hooks)
    except ValueError as exc:
        raise FlowDefinitionError(str(exc)) from None


def _check_timeout(seconds: float | None) -> float | None:
    if seconds is None:
        return None
    if not _is_number(seconds) or not seconds > 0:
        raise FlowDefinitionError(f"timeout_seconds must be a number > 0 or None, got {seconds!r}")
    return float(seconds)


@overload
def flow(fn: Callable[P, R], /) -> Flow[P, R]: ...


@overload
def flow(
    *,
    name: str | None = None,
    version: str | None = None,
    description: str | None = None,
    retries: int = 0,
    retry_delay_seconds: RetryDelays = 0,
    timeout_seconds: float | None = None,
    retry_jitter_factor: float | None = None,
    retry_condition_fn: RetryCondition | None = None,
    on_completion: Sequence[Hook] | None = None,
    on_failure: Sequence[Hook] | None = None,
    on_crashed: Sequence[Hook] | None = None,
    on_cancellation: Sequence[Hook] | None = None,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    version: str | None = None,
    description: str | None = None,
    retries: int = 0,
    retry_delay_seconds: RetryDelays = 0,
    timeout_seconds: float | None = None,
    retry_jitter_factor: float | None = None,
    retry_condition_fn: RetryCondition | None = None,
    on_completion: Sequence[Hook] | None = None,
    on_failure: Sequence[Hook] | None = None,
    on_crashed: Sequence[Hook] | None = None,
    on_cancellation: Sequence[Hook] | None = None,
) -> Flow[P, R] | Callable[[Callable[P, R]], Flow[P, R]]:
    """Turn a sync or async function into a Flow, with or without options.

    Retry options are ``headrace.retries``': a delay list or ``exponential_backoff``,
    jitter, and a ``retry_condition_fn(exception) -> bool``. The ``on_*`` hooks are
    lists of ``hook(flow, flow_run, state)`` functions called once a run ends
    COMPLETED, FAILED, CRASHED or CANCELLED (``hooks.py``).
    """

    def decorate(function: Callable[P, R]) -> Flow[P, R]:
        return Flow(
            function,
            name=name,
            version=version,
            description=description,
            retries=retries,
            retry_delay_seconds=retry_delay_seconds,
            timeout_seconds=timeout_seconds,
            retry_jitter_factor=retry_jitter_factor,
            retry_condition_fn=retry_condition_fn,
            on_completion=on_completion,
            on_failure=on_failure,
            on_crashed=on_crashed,
            on_cancellation=on_cancellation,
        )

    return decorate if fn is None else decorate(fn)
