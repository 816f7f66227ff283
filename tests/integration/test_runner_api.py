"""The Runner API and what a runner promises, with real processes and databases."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from headrace.client import get_client
from headrace.exceptions import StoreUnavailable
from headrace.flow_runs import NewFlowRun
from headrace.runner.server import build_server
from headrace.settings import Settings
from headrace.states import State, StateType, utcnow
from headrace.store import RunnerRecord
from tests.flows import basic, extra
from tests.helpers import eventually, make_runner, running, wait_for_state

pytestmark = pytest.mark.timeout(90)

SLOW_POLLS: dict[str, object] = {
    "query_seconds": 600.0,
    "dispatch_seconds": 600.0,
    "cancel_check_seconds": 600.0,
}
"""Fallback polls far apart, longer than the test's own timeout: what happens at all was not
a poll, however loaded the machine. Bounds on how long it took would say nothing more."""


# -- the Runner API --------------------------------------------------------------------------


async def test_runner_properties_and_slots(settings: Settings, tmp_path: Path) -> None:
    runner = make_runner(settings, limit=1)
    assert runner.limit == 1 and runner.last_polled is None
    adder = await runner.add_flow(basic.add, "adder")
    toucher = await runner.add_flow(extra.touch_until, "toucher")
    assert await runner.add_flow(basic.add, "adder", parameters={"y": 3}) == adder, "upsert"
    assert runner.deployment_ids == {adder, toucher}
    async with running(runner), get_client(settings) as client:
        assert runner.last_polled is not None
        assert runner.last_polled.utcoffset() == timedelta(0)
        assert abs((utcnow() - runner.last_polled).total_seconds()) < 30
        assert runner.has_slots_available()
        out, gate = tmp_path / "markers", tmp_path / "gate"
        run = await client.create_flow_run_from_deployment(
            toucher, {"t0": 0, "out": str(out), "gate": str(gate)}
        )
        await wait_for_state(client.store, run.id, {StateType.RUNNING})
        assert not runner.has_slots_available()
        gate.touch()
        await wait_for_state(client.store, run.id)
        await eventually(
            lambda: _value(runner.has_slots_available()), bool, what="the slot to free up"
        )
    assert (await runner.store.read_deployment(adder)).parameters == {"y": 3}


async def test_async_with_executes_runs_without_polling(settings: Settings) -> None:
    runner = make_runner(settings)
    adder = await runner.add_flow(basic.add, "adder")
    async with get_client(settings) as client:
        queued = await client.create_flow_run_from_deployment(adder, {"x": 1})
        other = await client.create_flow_run_from_deployment(adder, {"x": 1})
    with pytest.raises(RuntimeError):
        runner.execute_in_background(asyncio.sleep, 0)
    async with runner:
        await asyncio.sleep(1.0)
        assert runner.last_polled is None
        assert (await runner.store.read_flow_run(queued.id)).state.type == StateType.SCHEDULED

        done = await asyncio.wait_for(runner.execute_flow_run(queued.id), 60)
        assert done.state.type == StateType.COMPLETED and done.result == 2
        swapped = await asyncio.wait_for(
            runner.execute_flow_run(other.id, entrypoint="tests.flows.extra:add_more"), 60
        )
        assert swapped.state.type == StateType.COMPLETED and swapped.result == 102

        seen: list[str] = []

        async def record(word: str) -> str:
            seen.append(threading.current_thread().name)
            return word.upper()

        future = await asyncio.to_thread(runner.execute_in_background, record, "hi")
        assert await asyncio.to_thread(future.result, 10) == "HI"
        assert seen == [threading.current_thread().name], "it ran on the runner's loop"


async def test_start_run_once_executes_due_runs_and_returns(settings: Settings) -> None:
    runner = make_runner(settings)
    adder = await runner.add_flow(basic.add, "adder")
    async with get_client(settings) as client:
        runs = [await client.create_flow_run_from_deployment(adder, {"x": x}) for x in (1, 2)]
    await asyncio.wait_for(runner.start(run_once=True), 60)
    assert runner.last_polled is not None
    async with get_client(settings) as client:
        results = [(await client.read_flow_run(run.id)) for run in runs]
    assert [(r.state.type, r.result) for r in results] == [
        (StateType.COMPLETED, 2),
        (StateType.COMPLETED, 3),
    ]


# -- starting at once ----------------------------------------------------------------------


async def test_local_work_starts_without_waiting_for_a_poll(
    settings: Settings, tmp_path: Path
) -> None:
    runner = make_runner(settings, limit=1, **SLOW_POLLS)
    toucher = await runner.add_flow(basic.touch, "toucher")
    out = tmp_path / "markers"
    async with running(runner), get_client(settings) as client:
        first = await client.create_flow_run_from_deployment(
            toucher, {"t0": 1, "out": str(out), "sleep": 0.5}
        )
        second = await client.create_flow_run_from_deployment(
            toucher, {"t0": 2, "out": str(out), "sleep": 0}
        )
        # The second starts once the first frees the only slot, and no poll comes before
        # the test's timeout.
        done_first = await wait_for_state(client.store, first.id, timeout=30)
        done_second = await wait_for_state(client.store, second.id, timeout=30)
    assert done_first.state.type == done_second.state.type == StateType.COMPLETED


async def test_cancellation_is_noticed_without_waiting_for_a_poll(
    settings: Settings, tmp_path: Path
) -> None:
    runner = make_runner(settings, **SLOW_POLLS)
    toucher = await runner.add_flow(basic.touch, "toucher")
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(
            toucher, {"t0": 0, "out": str(tmp_path / "m"), "sleep": 60}
        )
        await wait_for_state(client.store, run.id, {StateType.RUNNING}, timeout=30)
        await client.cancel_flow_run(run.id)
        done = await wait_for_state(client.store, run.id, timeout=30)  # before its body ends
    assert done.state.type == StateType.CANCELLED


# -- a failing poll --------------------------------------------------------------------------


async def test_a_failing_poll_is_retried_and_health_recovers(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    runner = make_runner(settings)
    adder = await runner.add_flow(basic.add, "adder")
    store = runner.store
    real_heartbeat = store.heartbeat
    failures = {"left": 3, "seen": 0}

    async def flaky_heartbeat(*args: Any, **kwargs: Any) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            failures["seen"] += 1
            raise StoreUnavailable("The database cannot be reached (simulated)")
        await real_heartbeat(*args, **kwargs)

    gate = asyncio.Event()

    async def gated_heartbeat(*args: Any, **kwargs: Any) -> None:
        if failures["seen"] >= 2:
            await gate.wait()
        await flaky_heartbeat(*args, **kwargs)

    monkeypatch.setattr(store, "heartbeat", gated_heartbeat)
    app = await build_server(runner)
    task = asyncio.create_task(runner.start())
    try:
        async with _asgi(app) as http:
            with caplog.at_level(logging.ERROR, logger="headrace.runner.poller"):
                await eventually(
                    lambda: _value(failures["seen"]), lambda n: n >= 2, what="two failed polls"
                )
            assert not task.done(), "a failing poll must not stop the runner"
            assert runner.last_polled is None
            assert (await http.get("/health")).status_code == 503
            assert "failed; retrying" in caplog.text
            gate.set()
            await eventually(lambda: _value(runner.last_polled), lambda v: v is not None)
            assert (await http.get("/health")).status_code == 200
            async with get_client(settings) as client:
                run = await client.create_flow_run_from_deployment(adder, {"x": 4})
                done = await wait_for_state(client.store, run.id)
            assert done.state.type == StateType.COMPLETED and done.result == 5
    finally:
        gate.set()
        await runner.stop()
        await asyncio.wait_for(task, 60)


# -- what a run records ------------------------------------------------------------------------


async def test_runs_that_cannot_start_crash_with_the_cause(settings: Settings) -> None:
    runner = make_runner(settings)
    ghost = await runner.add_flow(
        basic.add, "ghost-module", entrypoint="tests.flows.no_such_module_here:add"
    )
    gone = await runner.add_flow(basic.add, "ghost-file", entrypoint="/no/such/dir/flows.py:add")
    missing_name = await runner.add_flow(
        basic.add, "ghost-name", entrypoint="tests.flows.basic:no_such_flow"
    )
    async with running(runner), get_client(settings) as client:
        expected = {ghost: "no_such_module_here", gone: "flows.py", missing_name: "no_such_flow"}
        runs = [
            (await client.create_flow_run_from_deployment(deployment, {"x": 1}), fragment)
            for deployment, fragment in expected.items()
        ]
        for run, fragment in runs:
            done = await wait_for_state(client.store, run.id)
            assert done.state.type == StateType.CRASHED, (fragment, done.state)
            assert fragment in (done.state.message or ""), done.state.message


async def test_large_results_are_kept_whole_apart_from_the_run(settings: Settings) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(extra.big_result)
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment, {"size": 200_000})
        done = await wait_for_state(client.store, run.id)
        whole = await client.read_flow_run_result(run.id)
    assert done.state.type == StateType.COMPLETED, done.state.message
    assert done.result is None and not done.result_truncated and done.result_ref is not None
    assert len(json.dumps(whole)) > 200_000


async def test_run_logs_reach_the_console_prefixed_with_the_run_name(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(basic.add, "adder")
    with caplog.at_level(logging.INFO, logger="headrace.flow_runs"):
        async with running(runner), get_client(settings) as client:
            run = await client.create_flow_run_from_deployment(deployment, {"x": 5})
            done = await wait_for_state(client.store, run.id)
    assert done.state.type == StateType.COMPLETED
    lines = [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if getattr(r, "flow_run_id", None) == str(run.id)
    ]
    assert (logging.INFO, f"{run.name} | adding 5 and 1") in lines
    assert (logging.WARNING, f"{run.name} | user - about to return") in lines


# -- draining and recovery --------------------------------------------------------------------


async def test_requeue_policy_requeues_at_once_and_the_next_start_runs_it_again(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        home=tmp_path / "home", database_url=database_url, runner_shutdown_grace_seconds=600
    )
    marker = tmp_path / "starts"
    runner = make_runner(settings)
    deployment = await runner.add_flow(extra.slow_first_time, on_shutdown="requeue")
    async with get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment, {"marker": str(marker)})
    async with running(runner), get_client(settings) as client:
        await wait_for_state(client.store, run.id, {StateType.RUNNING})
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 60, "requeue does not wait for the grace period"
    async with get_client(settings) as client:
        requeued = await client.read_flow_run(run.id)
    assert requeued.state.type == StateType.SCHEDULED and requeued.state.name == "Requeued"

    again = make_runner(settings)
    await again.add_flow(extra.slow_first_time, on_shutdown="requeue")
    async with running(again), get_client(settings) as client:
        done = await wait_for_state(client.store, run.id)
        history = await client.read_state_history(run.id)
    assert done.state.type == StateType.COMPLETED and done.result == 2
    assert done.run_count == 2, "the second execution is a new, recorded attempt"
    assert sum(1 for s in history if s.type.is_terminal) == 1


async def _orphan(
    settings: Settings, deployment: UUID, *, heartbeat_age: timedelta, max_retries: int = 0
) -> UUID:
    """A run a runner on another machine claimed and started, then stopped heart-beating."""
    store = (await _client_store(settings)).sync
    remote = RunnerRecord(
        name="far-away", host="another-machine", pid=1, heartbeat=utcnow() - heartbeat_age
    )
    store.register_runner(remote)
    run, _ = store.create_flow_run(
        NewFlowRun(flow_name="x", deployment_id=deployment, max_retries=max_retries)
    )
    (claimed,) = store.claim_runs(deployment_ids=[deployment], runner=remote, limit=1)
    assert claimed.id == run.id
    store.set_state(run.id, State(type=StateType.RUNNING), pid=1)
    return run.id


async def _client_store(settings: Settings) -> Any:
    async with get_client(settings) as client:
        return client.store


async def test_runs_of_a_silent_remote_runner_are_recovered(settings: Settings) -> None:
    runner = make_runner(settings)
    crashing = await runner.add_flow(basic.add, "once", parameters={"x": 1})
    retrying = await runner.add_flow(extra.retried_once, "twice")
    recent = await runner.add_flow(basic.add, "alive", parameters={"x": 1})
    silent_orphan = await _orphan(settings, crashing, heartbeat_age=timedelta(hours=1))
    retried_orphan = await _orphan(
        settings, retrying, heartbeat_age=timedelta(hours=1), max_retries=1
    )
    alive = await _orphan(settings, recent, heartbeat_age=timedelta(seconds=0))
    async with running(runner), get_client(settings) as client:
        crashed = await wait_for_state(client.store, silent_orphan, timeout=30)
        retried = await wait_for_state(client.store, retried_orphan, timeout=30)
        still = await client.read_flow_run(alive)
    assert crashed.state.type == StateType.CRASHED
    assert "heartbeat" in (crashed.state.message or "")
    assert retried.state.type == StateType.COMPLETED, retried.state.message
    assert retried.run_count == 2
    assert still.state.type == StateType.RUNNING, "a runner that still beats keeps its run"


# -- helpers -----------------------------------------------------------------------------------


async def _value(value: Any) -> Any:
    return value


def _asgi(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")


async def test_a_flow_loaded_from_a_script_runs_in_a_child_process(
    settings: Settings, tmp_path: Path
) -> None:
    from headrace.entrypoints import load_flow_from_entrypoint

    script = tmp_path / "scripted_flows.py"
    script.write_text(
        "from headrace import flow\n\n@flow\ndef shout(word: str) -> str:\n"
        "    return word.upper()\n"
    )
    loaded = load_flow_from_entrypoint(f"{script}:shout")
    runner = make_runner(settings)
    deployment = await runner.add_flow(loaded, "shouter")
    assert runner.deployments[deployment].entrypoint == f"{script.resolve()}:shout"
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment, {"word": "hi"})
        done = await wait_for_state(client.store, run.id)
    assert done.state.type == StateType.COMPLETED, done.state.message
    assert done.result == "HI"
