"""Watching the database for runs other processes queue or cancel."""

from __future__ import annotations

import asyncio

from headrace.flow_runs import NewFlowRun
from headrace.states import StateType
from headrace.store import RunnerRecord, SQLStore
from headrace.store.changes import Wake, watch_changes


async def test_other_processes_writes_are_seen_and_our_own_are_not_on_postgres(
    database_url: str,
) -> None:
    ours, other = SQLStore(database_url), SQLStore(database_url)  # two engines: two "processes"
    seen: asyncio.Queue[Wake] = asyncio.Queue()
    watch = asyncio.create_task(watch_changes(ours.engine, seen.put_nowait))
    try:
        if not ours.is_sqlite:  # the listener says "maybe missed something" once connected
            assert await asyncio.wait_for(seen.get(), 10) == "created"
        queued, _ = await asyncio.to_thread(ours.create_flow_run, NewFlowRun(flow_name="mine"))
        await asyncio.to_thread(ours.claim_flow_run, queued.id, RunnerRecord(name="r"))
        cancelling = await asyncio.to_thread(other.request_cancellation, queued.id)
        assert cancelling.state.type == StateType.CANCELLING
        first = await asyncio.wait_for(seen.get(), 10)
        if ours.is_sqlite:  # data_version moves with any other connection's commit
            assert first == "created"
        else:  # our own insert notified, but only the other process's cancel counts
            assert first == "cancelled"
        while not seen.empty():
            seen.get_nowait()
        await asyncio.to_thread(other.create_flow_run, NewFlowRun(flow_name="theirs"))
        assert await asyncio.wait_for(seen.get(), 10) == "created"
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        ours.close()
        other.close()
