"""The routes remote mode reads through: a deployment by id, totals, created-time filters,
and a triggered run's name and start time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from headrace.runner.server import build_server
from headrace.settings import Settings
from headrace.states import utcnow
from tests.helpers import running
from tests.integration.server_app import client, served

pytestmark = pytest.mark.timeout(60)


async def test_deployment_by_id_totals_and_time_filters(settings: Settings) -> None:
    runner, ids = await served(settings)
    app = await build_server(runner)
    async with running(runner), client(app) as c:
        deployment = (await c.get(f"/deployments/{ids['adder']}")).json()
        assert (deployment["name"], deployment["parameters"]) == ("adder", {"y": 10})
        assert "created" in deployment and "retries" in deployment
        assert [r["alive"] for r in deployment["runners"]] == [True]
        assert (await c.get(f"/deployments/{uuid4()}")).status_code == 404

        before = utcnow()
        start_at = datetime(2099, 1, 2, 3, 4, tzinfo=UTC)
        later = await c.post(
            f"/deployment/{ids['adder']}/run",
            params={"name": "backfill", "start_at": start_at.isoformat()},
            json={"x": 1},
        )
        assert later.status_code == 201, later.text
        run = (await c.get(f"/flow_runs/{later.json()['flow_run_id']}")).json()
        assert (run["name"], run["state"]["type"]) == ("backfill", "SCHEDULED")
        assert datetime.fromisoformat(run["expected_start_time"]) == start_at
        await c.post(f"/flow_runs/{run['id']}/cancel")
        await c.post(f"/deployment/{ids['adder']}/run", json={"x": 2})

        totals = (await c.get("/flow_runs/totals", params={"deployment_id": ids["adder"]})).json()
        assert totals["total"] == 2 and totals["by_state"]["CANCELLED"] == 1
        since = (before - timedelta(seconds=1)).isoformat()
        assert len((await c.get("/flow_runs", params={"since": since})).json()) == 2
        naive_until = before.replace(tzinfo=None).isoformat()  # read as UTC
        assert (await c.get("/flow_runs", params={"until": naive_until})).json() == []
        none = await c.get("/flow_runs/totals", params={"until": naive_until})
        assert none.json() == {"total": 0, "by_state": {}}
        assert (await c.get("/flow_runs", params={"since": "yesterday"})).status_code == 422
