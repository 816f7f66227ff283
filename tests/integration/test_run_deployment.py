"""``run_deployment``: a run of a deployment, from any process that reaches the database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from headrace import run_deployment
from headrace.client import get_client
from headrace.exceptions import ObjectNotFound
from headrace.settings import Settings
from headrace.states import StateType
from tests.flows import subflows
from tests.helpers import make_runner, running, wait_for_state

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def configured(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The test's own process reaches the test database as ``get_client()`` finds it."""
    assert settings.database_url is not None
    monkeypatch.setenv("HEADRACE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HEADRACE_HOME", str(settings.home))
    return settings


async def test_run_deployment_waits_for_the_run_to_end(configured: Settings) -> None:
    runner = make_runner(configured)
    await runner.add_flow(subflows.quick, "quick")
    async with running(runner):
        run = await asyncio.to_thread(run_deployment, "quick/quick", {"x": 2})
    assert run.state.type == StateType.COMPLETED and run.result == 3
    assert run.parent_flow_run_id is None


async def test_run_deployment_by_id_without_waiting(configured: Settings) -> None:
    runner = make_runner(configured)
    deployment = await runner.add_flow(subflows.quick, "quick")
    created = await asyncio.to_thread(run_deployment, str(deployment), {"x": 1}, timeout=0)
    assert created.state.type == StateType.SCHEDULED and created.deployment_id == deployment
    async with running(runner), get_client(configured) as client:
        done = await wait_for_state(client.store, created.id)
    assert done.result == 2


async def test_run_deployment_returns_an_unfinished_run_at_its_timeout(
    configured: Settings,
) -> None:
    runner = make_runner(configured)
    await runner.add_flow(subflows.slow, "slow")
    async with running(runner), get_client(configured) as client:
        run = await asyncio.to_thread(run_deployment, "slow/slow", timeout=1.5)
        assert not run.state.type.is_terminal, run.state
        await client.cancel_flow_run(run.id)
        await wait_for_state(client.store, run.id)


async def test_an_unknown_deployment_is_named(configured: Settings) -> None:
    with pytest.raises(ObjectNotFound, match="nope/nothing"):
        await asyncio.to_thread(run_deployment, "nope/nothing")


async def test_run_deployment_inside_a_run_links_its_parent(configured: Settings) -> None:
    runner = make_runner(configured)
    await runner.add_flow(subflows.quick, "quick")
    caller = await runner.add_flow(subflows.calls_deployment)
    async with running(runner), get_client(configured) as client:
        run = await client.create_flow_run_from_deployment(caller, {"name": "quick/quick"})
        done = await wait_for_state(client.store, run.id)
        (child,) = await client.read_flow_runs(parent_flow_run_id=run.id)
    assert done.state.type == StateType.COMPLETED, done.state.message
    assert done.result == {"id": str(child.id), "state": "COMPLETED", "result": 42}
    assert child.parent_flow_run_id == run.id and child.deployment_id is not None


@pytest.mark.postgres
async def test_run_deployment_reaches_a_deployment_another_runner_serves(
    postgres_url: str, tmp_path: Path
) -> None:
    settings_a = Settings(home=tmp_path / "a", database_url=postgres_url)
    settings_b = Settings(home=tmp_path / "b", database_url=postgres_url)
    runner_a = make_runner(settings_a, name="runner-a")
    runner_b = make_runner(settings_b, name="runner-b")
    caller = await runner_a.add_flow(subflows.calls_deployment)
    await runner_b.add_flow(subflows.quick, "elsewhere")
    async with running(runner_a), running(runner_b), get_client(settings_a) as client:
        run = await client.create_flow_run_from_deployment(caller, {"name": "quick/elsewhere"})
        done = await wait_for_state(client.store, run.id)
        (child,) = await client.read_flow_runs(parent_flow_run_id=run.id)
    assert done.state.type == StateType.COMPLETED, done.state.message
    assert done.result["result"] == 42 and done.runner_name == "runner-a"
    assert child.runner_name == "runner-b" and child.parent_flow_run_id == run.id


async def test_run_deployment_with_an_idempotency_key_starts_one_run(
    configured: Settings,
) -> None:
    runner = make_runner(configured)
    await runner.add_flow(subflows.quick, "quick")
    first, second = [
        await asyncio.to_thread(
            run_deployment, "quick/quick", {"x": 5}, timeout=0, idempotency_key="once"
        )
        for _ in range(2)
    ]
    assert first.id == second.id
