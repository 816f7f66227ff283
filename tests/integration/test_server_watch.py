"""Watching runs over HTTP in-process: ``?wait=`` on a trigger, and logs followed as SSE."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from headrace.runner.server import build_server
from headrace.settings import Settings
from tests.helpers import eventually, running
from tests.integration.server_app import client, served

pytestmark = pytest.mark.timeout(60)


async def test_wait_returns_the_result_or_202(settings: Settings, tmp_path: Path) -> None:
    runner, ids = await served(settings)
    app = await build_server(runner)
    async with running(runner), client(app) as c:
        done = await c.post(f"/deployment/{ids['adder']}/run?wait=20", json={"x": 1})
        assert done.status_code == 200, done.text
        assert done.json()["state"]["type"] == "COMPLETED"
        assert done.json()["result"] == 11
        assert done.json()["flow_run_id"] == done.json()["id"]
        body = {"t0": 2, "out": str(tmp_path / "t"), "sleep": 1.0}
        started = time.monotonic()
        slow = await c.post(f"/deployment/{ids['toucher']}/run?wait=0.2", json=body)
        assert time.monotonic() - started < 5
        assert slow.status_code == 202, slow.text
        location = slow.headers["Location"]
        assert location == f"/flow_runs/{slow.json()['id']}"
        final = await eventually(
            lambda: c.get(location), lambda r: r.json()["state"]["type"] == "COMPLETED"
        )
        assert [s["type"] for s in final.json()["state_history"]][-1] == "COMPLETED"
        flow = await c.post(
            "/flow/run?wait=20",
            json={"entrypoint": "tests.flows.nested:double", "parameters": {"x": 4}},
        )
        assert flow.status_code == 200
        assert flow.json()["result"] == 8
        assert (await c.post(f"/deployment/{ids['adder']}/run?wait=0", json={})).status_code == 422
        too_long = await c.post(f"/deployment/{ids['adder']}/run?wait=301", json={})
        assert too_long.status_code == 422
        not_a_number = await c.post(f"/deployment/{ids['adder']}/run?wait=nan", json={})
        assert not_a_number.status_code == 422
        assert "finite number" in not_a_number.json()["detail"][0]["msg"]


async def test_logs_follow_as_server_sent_events(settings: Settings) -> None:
    runner, ids = await served(settings)
    app = await build_server(runner)
    async with running(runner), client(app) as c:
        created = await c.post(f"/deployment/{ids['adder']}/run", json={"x": 5})
        run_id = created.json()["flow_run_id"]
        async with c.stream("GET", f"/flow_runs/{run_id}/logs", params={"follow": True}) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            text = "".join([chunk async for chunk in stream.aiter_text()])
    events = [e for e in text.split("\n\n") if e.strip()]
    assert events[-1].startswith("event: end\n")
    assert '"COMPLETED"' in events[-1]
    data = [e for e in events[:-1] if "data: " in e]
    assert any('"message":"adding 5 and 10"' in e for e in data)
    assert all(e.startswith("id: ") for e in data)


async def test_a_stream_resumes_after_its_last_event_id_and_refuses_others(
    settings: Settings,
) -> None:
    runner, ids = await served(settings)
    app = await build_server(runner)
    async with running(runner), client(app) as c:
        created = await c.post(f"/deployment/{ids['adder']}/run?wait=20", json={"x": 5})
        run_id = created.json()["flow_run_id"]
        lines = (await c.get(f"/flow_runs/{run_id}/logs")).json()
        assert len(lines) >= 2
        logs = f"/flow_runs/{run_id}/logs?follow=true"
        resumed = await c.get(logs, headers={"Last-Event-ID": str(lines[0]["id"])})
        assert f"id: {lines[0]['id']}\n" not in resumed.text
        assert f"id: {lines[1]['id']}\n" in resumed.text
        for never_sent in ("null", "-1", "1.5", "9" * 16, "x"):
            refused = await c.get(logs, headers={"Last-Event-ID": never_sent})
            assert refused.status_code == 400, (never_sent, refused.text)
            assert "Last-Event-ID" in refused.json()["message"]
