"""Hooks and webhook targets as a flow and a deployment are defined: what is accepted, and
the errors that name what is wrong."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from headrace import Notify, flow
from headrace.cli.errors import UsageProblem
from headrace.cli.serve import notify_from_options
from headrace.exceptions import FlowDefinitionError, InvalidDeployment
from headrace.hooks import call_hooks
from headrace.notifications import SIGNATURE_HEADER, TIMESTAMP_HEADER, signed_headers
from headrace.process.protocol import Completed, Failed, Invalid
from headrace.runner.endings import runner_hook_kind
from headrace.runtime import FlowRunContext
from headrace.states import State, StateType


def record(flow: Any, flow_run: FlowRunContext, state: State) -> None:
    flow_run.parameters.setdefault("seen", []).append(state.type.value)


@flow(on_completion=[record], on_failure=[record, record])
def hooked() -> None:
    pass


@flow
def plain() -> None:
    pass


def test_hooks_are_kept_in_order_and_none_costs_nothing() -> None:
    assert hooked.hooks("on_completion") == (record,)
    assert hooked.hooks("on_failure") == (record, record)
    assert hooked.hooks("on_crashed") == hooked.hooks("on_cancellation") == ()
    assert plain.on_completion == plain.on_failure == ()


def test_a_hook_that_is_not_callable_is_refused_by_name() -> None:
    with pytest.raises(FlowDefinitionError, match="on_failure must be a list of functions"):
        flow(on_failure=["not a function"])(lambda: None)  # type: ignore[list-item]
    with pytest.raises(FlowDefinitionError, match="on_crashed must be a list of functions"):
        flow(on_crashed=42)(lambda: None)  # type: ignore[arg-type]


def test_a_hook_that_raises_is_reported_and_the_next_still_runs() -> None:
    def broken(flow: Any, flow_run: FlowRunContext, state: State) -> None:
        raise RuntimeError("nope")

    context = FlowRunContext(id="r", name="run", parameters={})
    reported: list[str] = []
    state = State(type=StateType.FAILED)
    failed = call_hooks("on_failure", [broken, record], hooked, context, state, reported.append)
    assert failed == 1
    assert context.parameters["seen"] == ["FAILED"]
    assert reported == [
        "on_failure hook test_a_hook_that_raises_is_reported_and_the_next_still_runs"
        ".<locals>.broken raised RuntimeError: nope"
    ]


def test_an_async_hook_is_awaited_and_one_that_exits_stops_no_other() -> None:
    async def later(flow: Any, flow_run: FlowRunContext, state: State) -> None:
        flow_run.parameters.setdefault("seen", []).append(f"async {state.type.value}")

    def leaves(flow: Any, flow_run: FlowRunContext, state: State) -> None:
        raise SystemExit(3)

    context = FlowRunContext(id="r", name="run", parameters={})
    state = State(type=StateType.COMPLETED)
    assert call_hooks("on_completion", [leaves, later, record], hooked, context, state) == 1
    assert context.parameters["seen"] == ["async COMPLETED", "COMPLETED"]


def test_the_runner_calls_only_the_hooks_a_runs_process_could_not() -> None:
    assert runner_hook_kind(StateType.CRASHED, None) == "on_crashed"
    assert runner_hook_kind(StateType.CANCELLED, Failed("raised as it was cancelled")) == (
        "on_cancellation"
    )
    assert runner_hook_kind(StateType.FAILED, None) == "on_failure"  # timed out: killed
    assert runner_hook_kind(StateType.FAILED, Failed("raised")) is None
    assert runner_hook_kind(StateType.FAILED, Invalid("bad parameters")) is None
    assert runner_hook_kind(StateType.COMPLETED, Completed(1)) is None


def test_targets_take_urls_dicts_or_notify_and_name_what_is_wrong() -> None:
    deployment = plain.to_deployment(
        notify=["https://a.example/h", {"url": "http://b.example", "states": ["completed"]}]
    )
    assert [(n.url, n.states) for n in deployment.notify] == [
        ("https://a.example/h", (StateType.FAILED, StateType.CRASHED)),
        ("http://b.example", (StateType.COMPLETED,)),
    ]
    assert deployment.to_spec().notify == deployment.notify
    cases = {
        "notify target 2: states: 'RUNNING' is not a final state": [
            "http://ok.example",
            {"url": "http://b.example", "states": ["RUNNING"]},
        ],
        "notify target 1: colour: Extra inputs are not permitted": [
            {"url": "http://b.example", "colour": "red"}
        ],
        "notify target 1: url:": ["ftp://files.example"],
        "notify target 1: states: must be a non-empty list": [
            {"url": "http://b.example", "states": []}
        ],
    }
    for message, notify in cases.items():
        with pytest.raises(InvalidDeployment, match=f"Deployment 'plain': {message}"):
            plain.to_deployment(notify=notify)


def test_a_secret_is_never_shown_and_signs_the_timestamp_and_body() -> None:
    target = Notify(url="http://a.example", secret="s3cret")
    assert "s3cret" not in repr(target)
    assert target.model_dump()["secret"] == "**********"
    assert target.model_dump(context={"reveal_secrets": True})["secret"] == "s3cret"
    headers = signed_headers("s3cret", "1700000000", b'{"a":1}')
    expected = hmac.new(b"s3cret", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert headers == {TIMESTAMP_HEADER: "1700000000", SIGNATURE_HEADER: f"sha256={expected}"}
    assert signed_headers(None, "1700000000", b"{}") == {}


def test_serve_options_build_targets_or_say_what_is_wrong() -> None:
    assert notify_from_options(None, None, None) == []
    [target] = notify_from_options(["http://a.example"], ["completed", "FAILED"], "k")
    assert isinstance(target, Notify)
    assert target.states == (StateType.COMPLETED, StateType.FAILED)
    assert target.secret == "k"
    with pytest.raises(UsageProblem, match="need --notify URL"):
        notify_from_options(None, ["FAILED"], None)
    with pytest.raises(UsageProblem, match="--notify: notify target 1: states: 'DONE'"):
        notify_from_options(["http://a.example"], ["DONE"], None)
