"""Watching the database for runs other processes queue or cancel."""

from __future__ import annotations

import asyncio

from headrace.flow_runs import NewFlowRun
from headrace.states import StateType
from headrace.store import RunnerRecord, SQLStore
from headrace.store.changes import ChangeFeed, Wake


async def test_other_processes_writes_are_seen_and_our_own_are_not_on_postgres(
    database_url: str,
) -> None:
    ours, other = SQLStore(database_url), SQLStore(database_url)  # two engines: two "processes"
    seen: asyncio.Queue[Wake] = asyncio.Queue()
    feed = ChangeFeed(ours.engine)
    feed.subscribe(seen.put_nowait)
    watch = asyncio.create_task(feed.watch())
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


def test_the_feed_tells_each_subscriber_until_it_unsubscribes(database_url: str) -> None:
    store = SQLStore(database_url)
    try:
        feed = ChangeFeed(store.engine)
        first: list[Wake] = []
        second: list[Wake] = []
        stop_first = feed.subscribe(first.append)
        feed.subscribe(second.append)
        feed.publish("created")
        stop_first()
        stop_first()  # twice is harmless
        feed.publish("cancelled")
        assert first == ["created"]
        assert second == ["created", "cancelled"]
    finally:
        store.close()


async def test_the_store_publishes_its_own_creations_and_cancellations(database_url: str) -> None:
    from headrace.store import AsyncStore

    store = AsyncStore(SQLStore(database_url))
    try:
        seen: list[Wake] = []
        store.changes.subscribe(seen.append)
        new = NewFlowRun(flow_name="mine", idempotency_key="once")
        run, _ = await store.create_flow_run(new)
        await store.create_flow_run(new)  # the same run again: nothing new to claim
        assert seen == ["created"]
        await store.request_cancellation(run.id)
        assert seen == ["created", "cancelled"]
    finally:
        store.close()
