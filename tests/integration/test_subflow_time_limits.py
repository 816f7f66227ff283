"""A sync subflow's timeout_seconds, in the main thread and in a task run in a thread."""

from __future__ import annotations

import pytest

from headrace.client import HeadraceClient, get_client
from headrace.flow_runs import FlowRun
from headrace.settings import Settings
from headrace.states import StateType
from tests.flows import subflow_time_limits
from tests.helpers import make_runner, running, wait_for_state

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.parametrize("caller", ["calls_from_a_thread", "calls_from_the_main_thread"]),
]

TIMED_OUT = "TimeoutError: Flow run timed out after"


async def children_of(client: HeadraceClient, run: FlowRun) -> list[FlowRun]:
    return await client.read_flow_runs(parent_flow_run_id=run.id)


async def called(
    settings: Settings, caller: str, name: str
) -> tuple[HeadraceClient, FlowRun, FlowRun]:
    runner = make_runner(settings)
    deployment = await runner.add_flow(getattr(subflow_time_limits, caller))
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment, {"name": name})
        parent = await wait_for_state(client.store, run.id)
        (child,) = await children_of(client, run)
        child = await wait_for_state(client.store, child.id)
    assert parent.state.type == StateType.COMPLETED, parent.state.message
    return client, parent, child


async def test_a_subflow_times_out_and_raises_in_its_caller(
    settings: Settings, caller: str
) -> None:
    _, parent, child = await called(settings, caller, "past")
    assert parent.result == "caught TimeoutError: Flow run timed out after 1 s"
    assert child.state.type == StateType.FAILED and child.timeout_seconds == 1
    assert f"{TIMED_OUT} 1 s" in (child.state.message or ""), child.state.message


async def test_a_timed_out_attempt_is_retried_as_any_failed_one(
    settings: Settings, caller: str
) -> None:
    _, parent, child = await called(settings, caller, "past twice")
    assert parent.result == "caught TimeoutError: Flow run timed out after 0.5 s"
    assert child.state.type == StateType.FAILED and child.run_count == 2
    assert f"{TIMED_OUT} 0.5 s" in (child.state.message or ""), child.state.message


async def test_a_subflow_that_returns_in_time_is_unaffected(
    settings: Settings, caller: str
) -> None:
    _, parent, child = await called(settings, caller, "in time")
    assert parent.result == "42"
    assert child.state.type == StateType.COMPLETED and child.result == 42


async def test_an_inner_shorter_limit_applies_inside_an_outer_one(
    settings: Settings, caller: str
) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(getattr(subflow_time_limits, caller))
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment, {"name": "shorter inside"})
        parent = await wait_for_state(client.store, run.id)
        (outer,) = await children_of(client, parent)
        (inner,) = await children_of(client, outer)
    assert parent.result == "caught TimeoutError: Flow run timed out after 1 s"
    assert outer.state.type == StateType.COMPLETED, outer.state.message
    assert inner.state.type == StateType.FAILED
    assert f"{TIMED_OUT} 1 s" in (inner.state.message or ""), inner.state.message


async def test_an_outer_shorter_limit_ends_the_inner_call_without_its_retries(
    settings: Settings, caller: str
) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(getattr(subflow_time_limits, caller))
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment, {"name": "longer inside"})
        parent = await wait_for_state(client.store, run.id)
        (outer,) = await children_of(client, parent)
        (inner,) = await children_of(client, outer)
    assert parent.result == "caught TimeoutError: Flow run timed out after 1 s"
    assert outer.state.type == StateType.FAILED
    assert f"{TIMED_OUT} 1 s" in (outer.state.message or ""), outer.state.message
    # The outer limit ended the inner call: none of its retries may outlive it.
    assert inner.state.type == StateType.FAILED and inner.run_count == 1
    assert f"{TIMED_OUT} 1 s" in (inner.state.message or ""), inner.state.message
