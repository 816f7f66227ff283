"""``GET /metrics``: counts of the runs a test made, the API key, route templates."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from headrace.runner.server import build_server
from headrace.settings import Settings
from headrace.states import StateType
from tests.flows import basic
from tests.helpers import make_runner, running, wait_for_state
from tests.integration.server_app import client, sqlite_settings_in

pytestmark = pytest.mark.timeout(60)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Each sample of the exposition, keyed by its name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def _trigger(c: httpx.AsyncClient, deployment_id: UUID, body: dict[str, object]) -> UUID:
    response = await c.post(f"/deployment/{deployment_id}/run", json=body)
    assert response.status_code == 201, response.text
    return UUID(response.json()["flow_run_id"])


async def test_metrics_count_the_runs_made(settings: Settings) -> None:
    runner = make_runner(settings, limit=2)
    adder = await runner.add_flow(basic.add, "adder")
    failer = await runner.add_flow(basic.fail, "failer")
    app = await build_server(runner)
    async with running(runner), client(app) as c:
        ids = [await _trigger(c, adder, {"x": n}) for n in range(3)]
        ids.append(await _trigger(c, failer, {}))
        for run_id in ids:
            await wait_for_state(runner.store, run_id)
        await c.get(f"/flow_runs/{ids[0]}")
        await c.get(f"/flow_runs/{ids[1]}")
        response = await c.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    a, f = str(adder), str(failer)
    assert value(found, "headrace_flow_runs_created_total", deployment=a) == 3
    assert value(found, "headrace_flow_runs_created_total", deployment=f) == 1
    assert value(found, "headrace_flow_runs_started_total", deployment=a) == 3
    finished = "headrace_flow_runs_finished_total"
    assert value(found, finished, deployment=a, state="COMPLETED") == 3
    assert value(found, finished, deployment=f, state="FAILED") == 1
    assert value(found, "headrace_flow_runs_running") == 0
    assert value(found, "headrace_runner_free_slots") == 2
    assert value(found, "headrace_flow_run_start_latency_seconds_count") == 4
    assert value(found, "headrace_flow_run_duration_seconds_count") == 4
    assert value(found, "headrace_store_write_duration_seconds_count", operation="outcome") >= 4
    assert 0 <= value(found, "headrace_runner_heartbeat_age_seconds") < 60
    routes = {labels for name, labels in found if name.startswith("headrace_http_request")}
    templates = {dict(labels).get("route") for labels in routes}
    assert "/flow_runs/{flow_run_id}" in templates
    assert not any(str(run_id) in str(template) for run_id in ids for template in templates)


async def test_a_running_run_is_counted_running(settings: Settings) -> None:
    runner = make_runner(settings, limit=1)
    sleeper = await runner.add_flow(basic.sleepy, "sleeper")
    app = await build_server(runner)
    async with running(runner), client(app) as c:
        run_id = await _trigger(c, sleeper, {"seconds": 30})
        await wait_for_state(runner.store, run_id, [StateType.RUNNING])
        found = samples((await c.get("/metrics")).text)
        assert value(found, "headrace_flow_runs_running") == 1
        assert value(found, "headrace_runner_free_slots") == 0
        assert (await c.post(f"/flow_runs/{run_id}/cancel")).status_code < 300
        await wait_for_state(runner.store, run_id)
        found = samples((await c.get("/metrics")).text)
    cancelled = ("headrace_flow_runs_finished_total", str(sleeper), "CANCELLED")
    assert value(found, cancelled[0], deployment=cancelled[1], state=cancelled[2]) == 1


async def test_metrics_need_the_api_key(tmp_path: Path) -> None:
    settings = sqlite_settings_in(tmp_path).model_copy(update={"api_key": "s3cret"})
    runner = make_runner(settings)
    app = await build_server(runner)
    async with client(app) as c:
        assert (await c.get("/metrics")).status_code == 401
    async with client(app, Authorization="Bearer s3cret") as c:
        response = await c.get("/metrics")
    assert response.status_code == 200
    assert "headrace_flow_runs_created_total" in response.text


async def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    settings = sqlite_settings_in(tmp_path).model_copy(update={"metrics_enabled": False})
    app = await build_server(make_runner(settings))
    async with client(app) as c:
        assert (await c.get("/metrics")).status_code == 404


async def test_refused_triggers_are_counted(tmp_path: Path) -> None:
    settings = sqlite_settings_in(tmp_path).model_copy(update={"runner_backlog_limit": 1})
    runner = make_runner(settings)
    adder = await runner.add_flow(basic.add, "adder")
    app = await build_server(runner)
    async with client(app) as c:  # not started: what is queued stays queued
        statuses = [(await c.post(f"/deployment/{adder}/run", json={"x": 1})).status_code]
        statuses += [(await c.post(f"/deployment/{adder}/run", json={"x": 2})).status_code]
        found = samples((await c.get("/metrics")).text)
    assert statuses == [201, 429]
    assert value(found, "headrace_trigger_rejections_total") == 1
    assert value(found, "headrace_flow_runs_created_total", deployment=str(adder)) == 1
    assert value(found, "headrace_flow_runs_queued") == 1
