"""Limits, graceful drain and crash recovery, with real processes and real databases."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import pytest

from headrace.client import get_client
from headrace.settings import Settings
from headrace.states import TERMINAL_STATES, StateType
from tests.flows import basic, extra
from tests.helpers import eventually, make_runner, process_alive, running, wait_for_state

pytestmark = pytest.mark.timeout(120)


def max_overlap(markers: Path) -> int:
    """The most runs that were inside their body at once, from start/end markers."""
    events = []
    for line in markers.read_text().splitlines():
        kind, _, at = line.split()
        events.append((float(at), 1 if kind == "start" else -1))
    current = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        current += delta
        peak = max(peak, current)
    return peak


async def trigger(
    settings: Settings, deployment_id: UUID, count: int, first: int = 0, **params: object
) -> list[UUID]:
    """``count`` runs of ``touch``-like flows, their ``t0`` numbered from ``first``."""
    async with get_client(settings) as client:
        runs = [
            await client.create_flow_run_from_deployment(deployment_id, {"t0": i, **params})
            for i in range(first, first + count)
        ]
    return [run.id for run in runs]


async def wait_all(settings: Settings, ids: list[UUID], timeout: float = 60) -> None:
    async with get_client(settings) as client:
        for run_id in ids:
            done = await wait_for_state(client.store, run_id, timeout=timeout)
            assert done.state.type == StateType.COMPLETED, done.state.message


async def test_runner_limit_is_never_exceeded(settings: Settings, tmp_path: Path) -> None:
    runner = make_runner(settings, limit=2)
    deployment_id = await runner.add_flow(basic.touch)
    out = tmp_path / "markers"
    ids = await trigger(settings, deployment_id, 6, out=str(out), sleep=0.3)
    async with running(runner):
        await wait_all(settings, ids)
    assert max_overlap(out) == 2


async def test_a_full_runner_waits_for_a_free_slot_without_polling_hard(
    settings: Settings, tmp_path: Path
) -> None:
    """A due run that finds every slot busy waits for the slot, not in a busy loop."""
    runner = make_runner(settings, limit=1)
    deployment_id = await runner.add_flow(extra.touch_until)
    gate = tmp_path / "gate"
    first, second = await trigger(
        settings, deployment_id, 2, out=str(tmp_path / "m"), gate=str(gate)
    )
    async with get_client(settings) as client, running(runner):
        await wait_for_state(client.store, first, {StateType.RUNNING})
        assert runner._session is not None
        poll = runner._session.poll
        steps, started = poll.steps, time.monotonic()
        await asyncio.sleep(1.5)  # the span watched; the gate keeps the only slot busy all along
        polls = poll.steps - steps
        allowed = (time.monotonic() - started) / runner.query_seconds + 3
        gate.touch()
        assert polls <= allowed, f"{polls} polls while the only slot was busy"
        done = await wait_for_state(client.store, second)
        assert done.state.type == StateType.COMPLETED, done.state.message


async def test_deployment_concurrency_limit(settings: Settings, tmp_path: Path) -> None:
    runner = make_runner(settings, limit=4)
    deployment_id = await runner.add_flow(basic.touch, concurrency_limit=1)
    out = tmp_path / "markers"
    ids = await trigger(settings, deployment_id, 4, out=str(out), sleep=0.2)
    async with running(runner):
        await wait_all(settings, ids)
    assert max_overlap(out) == 1


async def test_a_run_that_outlives_the_grace_period_follows_the_crash_rule(
    database_url: str, tmp_path: Path
) -> None:
    """Without retries it ends CRASHED and never runs again; queued runs stay queued."""
    settings = Settings(
        home=tmp_path / "home", database_url=database_url, runner_shutdown_grace_seconds=0.5
    )
    out = tmp_path / "markers"
    runner = make_runner(settings, limit=1)
    deployment_id = await runner.add_flow(basic.touch)
    # The first outlives the grace period by far whatever the machine's delays; the queued
    # ones are quick once run.
    ids = await trigger(settings, deployment_id, 1, out=str(out), sleep=60)
    ids += await trigger(settings, deployment_id, 2, first=1, out=str(out), sleep=0)
    async with get_client(settings) as client, running(runner):
        await wait_for_state(client.store, ids[0], {StateType.RUNNING})
    async with get_client(settings) as client:
        first = await client.read_flow_run(ids[0])
        assert first.state.type == StateType.CRASHED, first.state
        assert first.state.message == "Crashed: the runner shut down before it finished"
        for run_id in ids[1:]:
            queued = await client.read_flow_run(run_id)
            assert queued.state.type == StateType.SCHEDULED and queued.run_count == 0

    fast = make_runner(settings, limit=3)
    await fast.add_flow(basic.touch)
    async with running(fast):
        await wait_all(settings, ids[1:])
    async with get_client(settings) as client:
        first = await client.read_flow_run(ids[0])
        assert (first.state.type, first.run_count) == (StateType.CRASHED, 1), "not re-run"
    assert out.read_text().count("start 0.0 ") == 1


async def test_a_run_with_a_retry_left_gets_a_new_attempt_after_the_grace_period(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        home=tmp_path / "home", database_url=database_url, runner_shutdown_grace_seconds=0.5
    )
    out = tmp_path / "markers"
    runner = make_runner(settings, limit=1)
    deployment_id = await runner.add_flow(extra.touch_retried)
    (run_id,) = await trigger(settings, deployment_id, 1, out=str(out), sleep=60, retry_sleep=0)
    async with get_client(settings) as client, running(runner):
        await wait_for_state(client.store, run_id, {StateType.RUNNING})
    async with get_client(settings) as client:
        stopped = await client.read_flow_run(run_id)
        assert (stopped.state.type, stopped.state.name) == (StateType.SCHEDULED, "Rescheduled")

    again = make_runner(settings, limit=1)
    await again.add_flow(extra.touch_retried)
    async with running(again):
        await wait_all(settings, [run_id])
    async with get_client(settings) as client:
        assert (await client.read_flow_run(run_id)).run_count == 2
        history = await client.read_state_history(run_id)
        assert sum(1 for s in history if s.type in TERMINAL_STATES) == 1


async def test_drain_finishes_runs_within_the_grace_period(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        home=tmp_path / "home", database_url=database_url, runner_shutdown_grace_seconds=30
    )
    runner = make_runner(settings, limit=2)
    deployment_id = await runner.add_flow(extra.touch_until)
    gate = tmp_path / "gate"
    (run_id,) = await trigger(settings, deployment_id, 1, out=str(tmp_path / "m"), gate=str(gate))
    async with get_client(settings) as client, running(runner):
        await wait_for_state(client.store, run_id, {StateType.RUNNING})
        await runner.stop()
        assert runner.draining
        gate.touch()  # it ends while its runner drains
    async with get_client(settings) as client:
        assert (await client.read_flow_run(run_id)).state.type == StateType.COMPLETED


@pytest.mark.parametrize("on_shutdown", ["requeue", "cancel"])
async def test_a_run_that_finishes_as_it_is_stopped_is_completed_and_runs_once(
    database_url: str, tmp_path: Path, on_shutdown: str
) -> None:
    """Its body returned after SIGTERM, before SIGKILL: done, never requeued to run again."""
    settings = Settings(
        home=tmp_path / "home", database_url=database_url, runner_shutdown_grace_seconds=0
    )
    marker = tmp_path / "starts"
    runner = make_runner(settings, kill_grace_seconds=20)
    deployment_id = await runner.add_flow(extra.finishes_on_sigterm, on_shutdown=on_shutdown)
    async with get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment_id, {"marker": str(marker)})
        async with running(runner):
            await wait_for_state(client.store, run.id, {StateType.RUNNING})
        done = await client.read_flow_run(run.id)
    assert done.state.type == StateType.COMPLETED, done.state
    assert done.result == "finished after SIGTERM"
    assert marker.read_text() == "start\n"


async def test_a_cancelled_run_that_finishes_first_keeps_its_result(
    settings: Settings, tmp_path: Path
) -> None:
    runner = make_runner(settings, kill_grace_seconds=20)
    deployment_id = await runner.add_flow(extra.finishes_on_sigterm)
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(
            deployment_id, {"marker": str(tmp_path / "starts")}
        )
        await wait_for_state(client.store, run.id, {StateType.RUNNING})
        await client.cancel_flow_run(run.id)
        done = await wait_for_state(client.store, run.id)
    assert done.state.type == StateType.COMPLETED, done.state
    assert done.state.message == "The cancellation came after it had finished"
    assert done.result == "finished after SIGTERM"


async def test_a_run_cancelled_during_the_drain_stops_at_once(
    database_url: str, tmp_path: Path
) -> None:
    """The drain waits for a run; somebody cancels it meanwhile: it is CANCELLED, now."""
    settings = Settings(
        home=tmp_path / "home", database_url=database_url, runner_shutdown_grace_seconds=600
    )
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(basic.touch)
    (run_id,) = await trigger(settings, deployment_id, 1, out=str(tmp_path / "m"), sleep=600)
    task = asyncio.create_task(runner.start())
    async with get_client(settings) as client:
        await wait_for_state(client.store, run_id, {StateType.RUNNING}, timeout=30)
        await runner.stop()
        await client.cancel_flow_run(run_id)
        done = await wait_for_state(client.store, run_id, timeout=30)
    await asyncio.wait_for(task, timeout=30)  # the drain ended with its last run
    assert done.state.type == StateType.CANCELLED, done.state


async def test_a_drain_longer_than_the_heartbeat_timeout_keeps_its_runs(
    database_url: str, tmp_path: Path
) -> None:
    """Heartbeats go on while the runner drains: it keeps its lease, and nobody takes
    its run over, however long the grace period is."""
    timeout = 1.5
    settings = Settings(
        home=tmp_path / "home",
        database_url=database_url,
        runner_shutdown_grace_seconds=120,
        runner_heartbeat_timeout_seconds=timeout,
    )
    out = tmp_path / "m"
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(extra.touch_retried)
    (run_id,) = await trigger(settings, deployment_id, 1, t0=0, out=str(out), sleep=3 * timeout)
    async with get_client(settings) as client, running(runner):
        await wait_for_state(client.store, run_id, {StateType.RUNNING}, timeout=30)
    async with get_client(settings) as client:
        done = await client.read_flow_run(run_id)
    assert done.state.type == StateType.COMPLETED, done.state
    assert done.run_count == 1, "the drain lost its lease and the run was started again"


async def test_drain_can_cancel(settings: Settings, tmp_path: Path) -> None:
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(basic.touch, on_shutdown="cancel")
    (run_id,) = await trigger(settings, deployment_id, 1, out=str(tmp_path / "m"), sleep=30)
    async with get_client(settings) as client, running(runner):
        await wait_for_state(client.store, run_id, {StateType.RUNNING})
    async with get_client(settings) as client:
        cancelled = await client.read_flow_run(run_id)
    assert cancelled.state.type == StateType.CANCELLED
    assert "runner shut down" in (cancelled.state.message or ""), "nobody asked for it"


async def test_killed_runner_leaves_nothing_unresolved(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.runner_process",
            database_url,
            str(settings.home),
        ],
        stdout=subprocess.PIPE,
        env=env,
    )
    out = tmp_path / "markers"
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 30)
        assert line.strip() == b"ready"
        async with get_client(settings) as client:
            deployment = await client.read_deployment_by_name("touch", "touch")
        (orphan_id,) = await trigger(settings, deployment.id, 1, out=str(out), sleep=60)
        async with get_client(settings) as client:
            running_run = await wait_for_state(
                client.store, orphan_id, {StateType.RUNNING}, timeout=30
            )
        queued = await trigger(settings, deployment.id, 2, out=str(out), sleep=0)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    # The orphaned child dies with its runner rather than running on unrecorded.
    assert running_run.pid is not None
    await eventually(
        lambda: process_alive(running_run.pid or 0),
        lambda alive: not alive,
        what="the orphan to die",
    )

    runner = make_runner(settings, name="doomed", limit=3)
    await runner.add_flow(basic.touch, "touch")
    async with running(runner), get_client(settings) as client:
        orphan = await wait_for_state(client.store, orphan_id, timeout=30)
        assert orphan.state.type == StateType.CRASHED
        assert "died" in (orphan.state.message or "")
        await wait_all(settings, queued)
    assert "end" not in " ".join(
        line for line in out.read_text().splitlines() if line.startswith("end 0 ")
    )


async def test_a_run_whose_end_went_unrecorded_is_resolved_by_its_own_runner(
    settings: Settings,
) -> None:
    from datetime import timedelta

    from headrace.flow_runs import NewFlowRun
    from headrace.states import State, utcnow

    runner = make_runner(settings, query_seconds=0.1)
    deployment_id = await runner.add_flow(basic.add)
    async with running(runner), get_client(settings) as client:
        later = utcnow() + timedelta(hours=1)
        run, _ = await client.store.create_flow_run(
            NewFlowRun(flow_name="add", deployment_id=deployment_id, expected_start_time=later)
        )
        # As if this runner had claimed and started it, then failed to record its end.
        await client.store.claim_flow_run(run.id, runner.record)
        await client.store.set_state(run.id, State(type=StateType.RUNNING))
        resolved = await wait_for_state(client.store, run.id, timeout=30)
    assert resolved.state.type == StateType.CRASHED
    assert "could not be recorded" in (resolved.state.message or "")
