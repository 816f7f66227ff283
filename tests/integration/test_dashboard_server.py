"""``headrace ui``'s app: the dashboard and API over a database, with no runner of its own;
the runs it creates are run by the runner serving their deployment."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

import httpx
import pytest

from headrace.remote import RemoteClient
from headrace.runner.server.dashboard_server import build_dashboard_server
from headrace.settings import Settings
from headrace.states import StateType
from headrace.store import AsyncStore, SQLStore
from tests.helpers import running, wait_for_state
from tests.integration.server_app import client, served

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def other_store(settings: Settings) -> Iterator[AsyncStore]:
    """The database as another process opens it."""
    store = AsyncStore(SQLStore(settings.resolved_database_url))
    yield store
    store.close()


async def test_runs_it_creates_are_run_by_the_serving_runner(
    settings: Settings, other_store: AsyncStore
) -> None:
    runner, ids = await served(settings)
    app = build_dashboard_server(other_store, settings)
    async with running(runner), client(app) as c:
        made = await c.post(f"/deployment/{ids['adder']}/run", json={"x": 5})
        assert made.status_code == 201
        run_id = UUID(made.json()["flow_run_id"])
        run = await wait_for_state(other_store, run_id)
        assert run.state.type == StateType.COMPLETED and run.result == 15
        assert run.runner_name == runner.name
        bad = await c.post(f"/deployment/{ids['adder']}/run", json={"x": "five"})
        assert bad.status_code == 400 and bad.json()["errors"][0]["parameter"] == "x"
        unknown = await c.post(f"/deployment/{UUID(int=1)}/run", json={})
        assert unknown.status_code == 404
        listed = (await c.get("/flow_runs")).json()
        assert str(run_id) in [r["id"] for r in listed]
        names = {d["name"] for d in (await c.get("/deployments")).json()}
        assert {"adder", "toucher", "complex", "double"} <= names
        assert runner.name in (await c.get("/ui/runners")).text
        form = await c.post(
            f"/ui/deployments/{ids['adder']}/run",
            content="x=6",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert form.status_code == 303
        from_form = UUID(form.headers["location"].rsplit("/", 1)[-1])
        assert (await wait_for_state(other_store, from_form)).result == 16
        page = (await c.get(f"/ui/runs/{from_form}")).text
        assert "Completed" in page and runner.name in page


async def test_remote_inspect_reads_every_part_of_a_run(
    settings: Settings, other_store: AsyncStore
) -> None:
    runner, ids = await served(settings)
    app = build_dashboard_server(other_store, settings)
    remote_settings = settings.model_copy(update={"api_url": "http://localhost"})
    async with running(runner), client(app) as c:
        made = await c.post(f"/deployment/{ids['adder']}/run?wait=20", json={"x": 5})
        run_id = UUID(made.json()["flow_run_id"])
        await wait_for_state(other_store, run_id)
        async with RemoteClient(remote_settings, httpx.ASGITransport(app=app)) as remote:
            assert (await remote.read_flow_run(run_id)).state.type == StateType.COMPLETED
            assert await remote.read_flow_run_result(run_id) == 15
            assert await remote.read_task_runs(run_id) == []
            assert await remote.read_notification_deliveries(run_id) == []
        for part in ("task_runs", "result", "notifications"):
            missing = await c.get(f"/flow_runs/{UUID(int=3)}/{part}")
            assert missing.status_code == 404 and missing.json()["message"].startswith("No flow")
