from __future__ import annotations

import datetime
import inspect
from typing import Any

import pytest

from headrace.exceptions import FlowDefinitionError, ParameterValidationError
from headrace.flows import Flow, flow
from headrace.parameters import ParameterSchema


@flow
def simple_flow(day: datetime.date, times: int = 1) -> list[datetime.date]:
    """Repeat a day."""
    return [day] * times


@flow(name="async-one", version="1.2", retries=2, retry_delay_seconds=0.5, timeout_seconds=3)
async def async_flow(x: int) -> int:
    return x * 2


def test_bare_decorator_defaults() -> None:
    assert isinstance(simple_flow, Flow)
    assert simple_flow.name == "simple-flow"
    assert simple_flow.version is None
    assert simple_flow.description == "Repeat a day."
    assert simple_flow.retries == 0
    assert simple_flow.retry_delay_seconds == 0
    assert simple_flow.timeout_seconds is None
    assert simple_flow.is_async is False
    assert simple_flow.fn.__name__ == "simple_flow"


def test_decorator_with_options() -> None:
    assert async_flow.name == "async-one"
    assert async_flow.version == "1.2"
    assert async_flow.description is None
    assert async_flow.retries == 2
    assert async_flow.retry_delay_seconds == 0.5
    assert async_flow.timeout_seconds == 3.0
    assert async_flow.is_async is True


def test_decorator_with_empty_parentheses_and_description() -> None:
    @flow()
    def a_b() -> int:
        """Doc."""
        return 1

    @flow(description="Given.")
    def c() -> int:
        return 2

    assert a_b.name == "a-b"
    assert a_b.description == "Doc."
    assert c.description == "Given."
    assert a_b() == 1


def test_wrapper_attributes() -> None:
    assert simple_flow.__name__ == "simple_flow"  # type: ignore[attr-defined]
    assert simple_flow.__doc__ == "Repeat a day."
    assert simple_flow.__module__ == __name__
    assert simple_flow.__wrapped__ is simple_flow.fn  # type: ignore[attr-defined]
    assert list(inspect.signature(simple_flow).parameters) == ["day", "times"]
    assert repr(simple_flow) == f"Flow(name='simple-flow', fn={__name__}.simple_flow)"


def test_call_coerces_arguments() -> None:
    day = datetime.date(2026, 1, 31)
    assert simple_flow("2026-01-31", times="2") == [day, day]  # type: ignore[arg-type]
    assert simple_flow(day) == [day]


async def test_async_call_returns_an_awaitable() -> None:
    result = async_flow("4")  # type: ignore[arg-type]
    assert inspect.isawaitable(result)
    assert await result == 8


def test_call_validation_names_every_bad_parameter() -> None:
    with pytest.raises(ParameterValidationError) as info:
        simple_flow("someday", times="often")  # type: ignore[arg-type]
    assert info.value.parameter_names == ["day", "times"]


async def test_async_call_validates_before_creating_the_coroutine() -> None:
    with pytest.raises(ParameterValidationError):
        async_flow("x")  # type: ignore[arg-type,unused-coroutine]


def test_call_with_wrong_arity_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        simple_flow(datetime.date.today(), 1, 2)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        simple_flow(datetime.date.today(), bogus=1)  # type: ignore[call-arg]


def test_missing_argument_is_a_validation_error() -> None:
    with pytest.raises(ParameterValidationError) as info:
        simple_flow()  # type: ignore[call-arg]
    assert info.value.parameter_names == ["day"]


def test_keyword_only_parameters() -> None:
    @flow
    def kw(a: int, *, b: int = 2) -> int:
        return a + b

    assert kw(1, b="3") == 4  # type: ignore[arg-type]
    assert kw.parameters.model_dump()["properties"]["b"]["position"] == 1


def test_parameters_and_validate_parameters() -> None:
    schema = simple_flow.parameters
    assert isinstance(schema, ParameterSchema)
    assert schema is simple_flow.parameters
    assert schema.model_dump()["required"] == ["day"]
    assert simple_flow.validate_parameters({"day": "2026-01-31"}) == {
        "day": datetime.date(2026, 1, 31)
    }


def test_errors_raised_by_the_function_propagate() -> None:
    @flow
    def boom() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        boom()


@pytest.mark.parametrize(
    "source",
    ["def fn(*args): pass", "def fn(**kwargs): pass", "def fn(a, /): pass"],
)
def test_unsupported_signatures_fail_at_decoration(source: str) -> None:
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    with pytest.raises(FlowDefinitionError):
        flow(namespace["fn"])


@pytest.mark.parametrize(
    "options",
    [
        {"retries": -1},
        {"retries": 1.5},
        {"retries": True},
        {"retry_delay_seconds": -0.1},
        {"retry_delay_seconds": "1"},
        {"timeout_seconds": 0},
        {"timeout_seconds": -5},
        {"timeout_seconds": float("nan")},
        {"name": ""},
        {"name": "   "},
    ],
)
def test_invalid_options(options: dict[str, Any]) -> None:
    def fn() -> None:
        pass

    with pytest.raises(FlowDefinitionError):
        flow(**options)(fn)


def test_not_callable() -> None:
    with pytest.raises(FlowDefinitionError):
        Flow(42)  # type: ignore[arg-type]
