"""A subflow's retry that starts as its run is cancelled: the runner stops it in its process.

A child awaiting its retry is CANCELLED at once by the request. Its process may
begin the next attempt before the runner passes the cancel on: the runner refuses
to record that attempt and tells the process at once to stop the child.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from uuid import uuid4

import pytest

from headrace.flow_runs import FlowRun, NewFlowRun
from headrace.process.protocol import (
    CANCEL_CHILD,
    CANCEL_CHILD_SIZE,
    ChildRunEnded,
    ChildRunRestarted,
    ChildRunRetrying,
    ChildRunStarted,
)
from headrace.process.starter import ChildProcess
from headrace.runner.logsink import LogSink
from headrace.runner.subflow_events import SubflowEvents
from headrace.states import State, StateType
from headrace.store import AsyncStore
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(60)


async def test_an_attempt_begun_as_its_run_was_cancelled_is_stopped_and_not_recorded(
    async_store: AsyncStore, caplog: pytest.LogCaptureFixture
) -> None:
    parent, _ = await async_store.create_flow_run(NewFlowRun(flow_name="caller"))
    runner_end, process_end = socket.socketpair()
    with runner_end, process_end:
        await passes_the_cancel_on(async_store, parent, runner_end, process_end, caplog)


async def passes_the_cancel_on(
    async_store: AsyncStore,
    parent: FlowRun,
    runner_end: socket.socket,
    process_end: socket.socket,
    caplog: pytest.LogCaptureFixture,
) -> None:
    process_end.settimeout(10)
    exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    process = ChildProcess(os.getpid(), runner_end.fileno(), exited)
    events = SubflowEvents(async_store, LogSink(async_store), lambda run_id: process)
    child_id = uuid4()
    now = time.time()
    events.take(
        parent,
        ChildRunStarted(str(child_id), str(parent.id), "brave-child", "child", {}, now, 1, 1),
    )
    creation = events.created(parent, str(child_id))
    assert creation is not None
    await creation
    events.take(parent, ChildRunRetrying(str(child_id), "attempt 1 failed", now, now + 60))
    await eventually(
        lambda: async_store.read_flow_run(child_id),
        lambda run: run.state.name == "AwaitingRetry",
        what="the child to await its retry",
    )
    cancelled = await async_store.request_cancellation(child_id)
    events.take(parent, ChildRunRestarted(str(child_id), 2, time.time()))  # the process went on
    told = await asyncio.to_thread(process_end.recv, CANCEL_CHILD_SIZE)
    events.take(parent, ChildRunEnded(str(child_id), "CANCELLED", "Cancelled by request", now))
    await events.settle(parent, parent.state)
    child = await async_store.read_flow_run(child_id)
    assert cancelled.state.type == StateType.CANCELLED
    assert told == CANCEL_CHILD + child_id.bytes
    assert child.state.type == StateType.CANCELLED and child.run_count == 1
    assert child.state.message == "Cancelled while waiting to run again"
    assert events.open_children() == {}
    assert not [r for r in caplog.records if r.name == "headrace.runner.subflow_events"]


async def test_a_child_that_completed_as_it_was_cancelled_keeps_its_result_and_says_so(
    async_store: AsyncStore,
) -> None:
    """Its body returned before the cancel reached its process: COMPLETED, as a top-level
    run is then, with the message that the cancellation came too late."""
    parent, _ = await async_store.create_flow_run(NewFlowRun(flow_name="caller"))
    events = SubflowEvents(async_store, LogSink(async_store))
    child_id, now = uuid4(), time.time()
    events.take(
        parent,
        ChildRunStarted(str(child_id), str(parent.id), "late-child", "child", {}, now, 1, 0),
    )
    creation = events.created(parent, str(child_id))
    assert creation is not None
    await creation
    asked = await async_store.request_cancellation(child_id)
    events.take(parent, ChildRunEnded(str(child_id), "COMPLETED", None, time.time(), result=7))
    await events.settle(parent, parent.state)
    child = await async_store.read_flow_run(child_id)
    assert asked.state.type == StateType.CANCELLING
    assert (child.state.type, child.result) == (StateType.COMPLETED, 7)
    assert child.state.message == "The cancellation came after it had finished"


async def test_a_child_being_cancelled_when_its_caller_crashes_ends_cancelled(
    async_store: AsyncStore,
) -> None:
    """Its caller's runner died before it could stop the child: the user's cancel stands."""
    parent, _ = await async_store.create_flow_run(NewFlowRun(flow_name="caller"))
    events = SubflowEvents(async_store, LogSink(async_store))
    stopped, going = uuid4(), uuid4()
    for child_id in (stopped, going):
        started = ChildRunStarted(
            str(child_id), str(parent.id), f"child-{child_id.hex[:4]}", "child", {}, 0.0, 1, 0
        )
        events.take(parent, started)
        creation = events.created(parent, str(child_id))
        assert creation is not None
        await creation
    await async_store.request_cancellation(stopped)
    await async_store.set_state(parent.id, State(type=StateType.CRASHED, message="runner died"))
    cancelled, crashed = [await async_store.read_flow_run(i) for i in (stopped, going)]
    assert cancelled.state.type == StateType.CANCELLED, cancelled.state
    assert crashed.state.type == StateType.CRASHED, crashed.state
