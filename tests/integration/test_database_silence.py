"""A database that goes silent never holds a request; ``GET /ready`` says when to send work."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from uuid import UUID

import pytest
import sqlalchemy as sa

from headrace.client import get_client
from headrace.deployments import DeploymentSpec
from headrace.exceptions import StoreTimeout, StoreUnavailable
from headrace.flow_runs import NewFlowRun
from headrace.runner.server import build_server
from headrace.runner.server.readiness import CHECK_SECONDS
from headrace.settings import Settings
from headrace.states import StateType
from headrace.store import AsyncStore, SQLStore, bounded_waits
from tests.flows import basic, extra
from tests.helpers import eventually, make_runner, running, wait_for_state
from tests.integration.dbproxy import proxy_for
from tests.integration.server_app import client

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 2.0
"""``HEADRACE_DATABASE_TIMEOUT_SECONDS`` in these tests."""
MARGIN = 8.0
"""What a loaded 2-core machine may add to a bounded wait. The waits checked would last
minutes unbounded (a silent network) or 30 s (the statement cancelled), far beyond it."""


def status_is(code: int) -> object:
    return lambda answer: answer.status_code == code


@pytest.mark.postgres
async def test_a_trigger_answers_503_while_the_database_is_silent_and_all_recovers_after(
    postgres_url: str, tmp_path: Path
) -> None:
    direct = Settings(home=tmp_path / "home", database_url=postgres_url)
    with proxy_for(postgres_url) as proxy:
        through = {"database_url": proxy.url_for(postgres_url), "database_timeout_seconds": TIMEOUT}
        runner = make_runner(direct.model_copy(update=through))
        deployment_id = await runner.add_flow(basic.add, "adder")
        route = f"/deployment/{deployment_id}/run"
        key = {"Idempotency-Key": "during-the-partition"}
        async with running(runner), client(await build_server(runner)) as http:
            assert (await http.get("/ready")).status_code == 200
            proxy.black_hole()
            try:
                started = time.monotonic()
                refused = await asyncio.wait_for(
                    http.post(route, json={"x": 1}, headers=key), TIMEOUT + MARGIN
                )
                elapsed = time.monotonic() - started
                red = await eventually(
                    lambda: http.get("/ready"),
                    status_is(503),  # type: ignore[arg-type]
                    timeout=CHECK_SECONDS + TIMEOUT + MARGIN,
                    what="/ready to turn red",
                )
            finally:
                proxy.resume()
            await eventually(
                lambda: http.get("/ready"),
                status_is(200),  # type: ignore[arg-type]
                timeout=30,
                what="/ready to turn green again",
            )
            retried = await http.post(route, json={"x": 1}, headers=key)
            fresh = await http.post(route, json={"x": 2})
            async with get_client(direct) as direct_client:
                retried_run = await wait_for_state(
                    direct_client.store, UUID(retried.json()["flow_run_id"]), timeout=30
                )
                fresh_run = await wait_for_state(
                    direct_client.store, UUID(fresh.json()["flow_run_id"]), timeout=30
                )
    assert refused.status_code == 503, refused.text
    assert elapsed < TIMEOUT + MARGIN
    assert int(refused.headers["Retry-After"]) > 0
    assert "did not answer" in refused.json()["message"]
    assert red.headers["Retry-After"]
    assert retried.status_code in (200, 201), retried.text  # the same key: safe to repeat
    assert retried_run.state.type == StateType.COMPLETED and retried_run.result == 2
    assert fresh.status_code == 201, fresh.text
    assert fresh_run.state.type == StateType.COMPLETED and fresh_run.result == 3


@pytest.mark.postgres
def test_connecting_to_a_silent_database_fails_within_the_timeout(postgres_url: str) -> None:
    with proxy_for(postgres_url) as proxy:
        proxy.black_hole()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            SQLStore(proxy.url_for(postgres_url), timeout_seconds=TIMEOUT)
        elapsed = time.monotonic() - started
    assert elapsed < TIMEOUT + MARGIN


@pytest.mark.postgres
def test_a_statement_the_server_takes_too_long_over_is_cancelled(postgres_url: str) -> None:
    store = SQLStore(postgres_url, timeout_seconds=1)
    try:
        with store.engine.connect() as conn:
            parameters = conn.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
            started = time.monotonic()
            with pytest.raises(sa.exc.OperationalError, match="statement timeout"):
                conn.exec_driver_sql("SELECT pg_sleep(30)")
            elapsed = time.monotonic() - started
    finally:
        store.close()
    assert elapsed < 1 + MARGIN
    # A network gone silent: unacknowledged data and unanswered probes end the connection.
    assert parameters["tcp_user_timeout"] == "1000"
    assert parameters["keepalives"] == "1"


async def test_ready_is_200_while_the_database_answers_with_the_current_schema(
    settings: Settings,
) -> None:
    runner = make_runner(settings)
    await runner.add_flow(basic.add, "adder")
    async with running(runner), client(await build_server(runner)) as http:
        ready = await http.get("/ready")
        assert ready.status_code == 200 and ready.json() == {"message": "OK"}
        other = SQLStore(settings.resolved_database_url, migrate=False)
        with other.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0001'")
        other.close()
        behind = await eventually(
            lambda: http.get("/ready"),
            status_is(503),  # type: ignore[arg-type]
            timeout=CHECK_SECONDS + MARGIN,
            what="/ready to see the schema behind",
        )
    assert "schema" in behind.json()["message"]


async def test_ready_is_503_while_the_runner_drains(settings: Settings, tmp_path: Path) -> None:
    runner = make_runner(settings, kill_grace_seconds=0.5)
    deployment_id = await runner.add_flow(extra.touch_until, "gated")
    gate = tmp_path / "gate"
    body = {"t0": 0, "out": str(tmp_path / "m"), "gate": str(gate)}
    async with running(runner), client(await build_server(runner)) as http:
        triggered = await http.post(f"/deployment/{deployment_id}/run", json=body)
        run_id = triggered.json()["flow_run_id"]
        async with get_client(settings) as direct:
            await wait_for_state(direct.store, UUID(run_id), {StateType.RUNNING}, timeout=30)
        assert (await http.get("/ready")).status_code == 200
        await runner.stop()
        draining = await http.get("/ready")
        health = await http.get("/health")
        gate.touch()  # the drain ends with the run
    assert draining.status_code == 503, draining.text
    assert "stopping" in draining.json()["message"]
    assert health.status_code == 200  # liveness is another question


@pytest.mark.postgres
async def test_a_creation_that_timed_out_says_to_repeat_it_and_a_repeat_makes_one_run(
    postgres_url: str,
) -> None:
    with proxy_for(postgres_url) as proxy:
        store = AsyncStore(SQLStore(proxy.url_for(postgres_url), timeout_seconds=TIMEOUT))
        try:
            deployment = await store.upsert_deployment(DeploymentSpec(flow_name="etl", name="d"))
            new = NewFlowRun(flow_name="etl", deployment_id=deployment.id, idempotency_key="k")
            proxy.black_hole()
            try:
                with bounded_waits(), pytest.raises(StoreTimeout) as timed_out:
                    await store.create_flow_run(new)
            finally:
                proxy.resume()
            with bounded_waits():
                await store.create_flow_run(new)
            runs = await store.read_flow_runs(deployment_id=deployment.id)
        finally:
            store.close()
    assert "same Idempotency-Key" in str(timed_out.value)
    assert len(runs) == 1
