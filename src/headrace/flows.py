"""``@flow``: a plain function plus what headrace needs to run it.

A ``Flow`` keeps its function's signature for type checkers (``ParamSpec``) and
for people (``functools.update_wrapper``), so a decorated function can still be
called, tested and imported as before; calling it validates the arguments the
same way a run triggered over HTTP would.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from headrace import runtime
from headrace.exceptions import FlowDefinitionError
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
        retry_delay_seconds: float = 0,
        timeout_seconds: float | None = None,
    ) -> None:
        if not callable(fn):
            raise FlowDefinitionError(f"@flow needs a function, got {fn!r}")
        self._signature = check_signature(fn)
        self.fn = fn
        self.name = _check_name(name if name is not None else _default_name(fn))
        self.version = version
        self.description = description if description is not None else inspect.getdoc(fn)
        self.retries = _check_retries(retries)
        self.retry_delay_seconds = _check_delay(retry_delay_seconds)
        self.timeout_seconds = _check_timeout(timeout_seconds)
        functools.update_wrapper(self, fn, updated=())

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


def _check_delay(seconds: float) -> float:
    if not _is_number(seconds) or seconds < 0:
        raise FlowDefinitionError(f"retry_delay_seconds must be a number >= 0, got {seconds!r}")
    return float(seconds)


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
    retry_delay_seconds: float = 0,
    timeout_seconds: float | None = None,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    version: str | None = None,
    description: str | None = None,
    retries: int = 0,
    retry_delay_seconds: float = 0,
    timeout_seconds: float | None = None,
) -> Flow[P, R] | Callable[[Callable[P, R]], Flow[P, R]]:
    """Turn a sync or async function into a Flow, with or without options."""

    def decorate(function: Callable[P, R]) -> Flow[P, R]:
        return Flow(
            function,
            name=name,
            version=version,
            description=description,
            retries=retries,
            retry_delay_seconds=retry_delay_seconds,
            timeout_seconds=timeout_seconds,
        )

    return decorate if fn is None else decorate(fn)
