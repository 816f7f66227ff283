"""Pausing, resuming and deleting deployments, retrying and deleting runs over HTTP, in-process:
on ``headrace ui``'s app over a database and on a runner's webserver."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from headrace.runner.server import build_server
from headrace.runner.server.dashboard_server import build_dashboard_server
from headrace.settings import Settings
from headrace.states import State, StateType
from headrace.store import AsyncStore, SQLStore
from tests.helpers import running, wait_for_state
from tests.integration.server_app import client, served
from tests.integration.test_store import queue_runs, spec

pytestmark = pytest.mark.timeout(60)


async def test_pause_resume_retry_and_delete(
    settings: Settings, store: SQLStore, async_store: AsyncStore
) -> None:
    deployment = store.upsert_deployment(spec(parameters={"x": 1}))
    ended, queued, executing = queue_runs(store, deployment.id, 3)
    for run_id, state in ((ended, StateType.FAILED), (executing, StateType.RUNNING)):
        store.set_state(run_id, State(type=StateType.PENDING))
        store.set_state(run_id, State(type=state))
    app = build_dashboard_server(async_store, settings)
    async with client(app) as c:
        paused = await c.post(f"/deployments/{deployment.id}/pause")
        assert paused.status_code == 200
        assert (paused.json()["paused"], paused.json()["runners"]) == (True, [])
        assert (await c.get(f"/deployments/{deployment.id}")).json()["paused"] is True
        resumed = await c.post(f"/deployments/{deployment.id}/resume")
        assert resumed.json()["paused"] is False

        retried = await c.post(f"/flow_runs/{ended}/retry")
        assert retried.status_code == 201
        again = retried.json()
        assert again["id"] != str(ended) and again["deployment_id"] == str(deployment.id)
        assert (again["state"]["type"], again["parameters"]) == ("SCHEDULED", {"x": 1})
        not_ended = await c.post(f"/flow_runs/{queued}/retry")
        assert not_ended.status_code == 409
        assert "has not ended" in not_ended.json()["message"]

        running_run = await c.delete(f"/flow_runs/{executing}")
        assert running_run.status_code == 409
        assert "cancel it first" in running_run.json()["message"]
        busy = await c.delete(f"/deployments/{deployment.id}")
        assert busy.status_code == 409 and "being executed" in busy.json()["message"]

        deleted_run = await c.delete(f"/flow_runs/{ended}")
        assert deleted_run.status_code == 200
        assert (await c.get(f"/flow_runs/{ended}")).status_code == 404
        store.set_state(executing, State(type=StateType.COMPLETED))
        deleted = await c.delete(f"/deployments/{deployment.id}")
        assert deleted.status_code == 200
        assert deleted.json() == {
            "message": "Deleted deployment etl/default and 2 queued run(s)",
            "deleted_queued_runs": 2,
        }
        assert (await c.get(f"/flow_runs/{executing}")).json()["deployment_id"] is None

        unknown = uuid4()
        for method, path in [
            ("POST", f"/deployments/{deployment.id}/pause"),
            ("POST", f"/deployments/{unknown}/resume"),
            ("DELETE", f"/deployments/{deployment.id}"),
            ("POST", f"/flow_runs/{unknown}/retry"),
            ("DELETE", f"/flow_runs/{ended}"),
        ]:
            assert (await c.request(method, path)).status_code == 404, (method, path)


async def test_a_runner_runs_the_retry_keeps_what_it_serves_and_guards_the_routes(
    sqlite_settings: Settings,
) -> None:
    runner, ids = await served(sqlite_settings.model_copy(update={"api_key": "k"}))
    app = await build_server(runner)
    async with running(runner), client(app, Authorization="Bearer k") as c:
        first = await c.post(f"/deployment/{ids['adder']}/run?wait=20", json={"x": 2})
        run_id = first.json()["flow_run_id"]
        for method, path in [
            ("DELETE", f"/flow_runs/{run_id}"),
            ("POST", f"/flow_runs/{run_id}/retry"),
            ("POST", f"/deployments/{ids['adder']}/pause"),
        ]:
            foreign = await c.request(method, path, headers={"Origin": "http://evil.example"})
            assert foreign.status_code == 403, path
            keyless = await c.request(method, path, headers={"Authorization": ""})
            assert keyless.status_code == 401, path
        assert (await c.get(f"/flow_runs/{run_id}")).status_code == 200
        assert (await c.get(f"/deployments/{ids['adder']}")).json()["paused"] is False
        retried = await c.post(f"/flow_runs/{run_id}/retry")
        assert retried.status_code == 201
        done = await wait_for_state(runner.store, UUID(retried.json()["id"]))
        assert (done.state.type, done.result) == (StateType.COMPLETED, 12)
        refused = await c.delete(f"/deployments/{ids['adder']}")
        assert refused.status_code == 409
        assert "serves this deployment" in refused.json()["message"]
