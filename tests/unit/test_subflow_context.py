"""Inside a subflow the run context is the child's, and the caller's again after it."""

from __future__ import annotations

import asyncio

from headrace import flow, runtime
from headrace.runtime import FlowRunContext, entered_subflow_run


def test_a_subflow_context_is_entered_and_left() -> None:
    assert runtime.flow_run.id is None
    child = FlowRunContext(id="child", name="c", run_count=2, parent_flow_run_id="parent")
    with entered_subflow_run(child):
        assert (runtime.flow_run.id, runtime.flow_run.run_count) == ("child", 2)
        assert runtime.flow_run.parent_flow_run_id == "parent"
    assert runtime.flow_run.id is None and runtime.flow_run.parameters == {}


async def test_concurrent_async_subflows_each_see_their_own_run() -> None:
    async def inside(name: str) -> str | None:
        with entered_subflow_run(FlowRunContext(id=name)):
            await asyncio.sleep(0.01)
            return runtime.flow_run.id

    assert await asyncio.gather(inside("a"), inside("b")) == ["a", "b"]


def test_outside_a_run_calling_a_flow_is_a_plain_call() -> None:
    @flow
    def add(x: int, y: int = 1) -> int:
        return x + y

    assert runtime.subflow_call() is None
    assert add("2") == 3
