"""The runner's logs: JSON lines a collector can search, an access log, and outages told briefly."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest

from headrace.client import get_client
from headrace.logconfig import JsonFormatter
from headrace.runner.server import build_server
from headrace.settings import Settings
from headrace.states import StateType
from tests.flows import basic, observed
from tests.helpers import eventually, make_runner, running, wait_for_state
from tests.integration.dbproxy import proxy_for
from tests.integration.server_app import client

pytestmark = pytest.mark.timeout(120)


@contextlib.contextmanager
def json_log() -> Iterator[io.StringIO]:
    """headrace's lines at INFO, formatted as ``HEADRACE_LOG_FORMAT=json`` does."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    headrace = logging.getLogger("headrace")
    level = headrace.level
    headrace.addHandler(handler)
    headrace.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        headrace.removeHandler(handler)
        headrace.setLevel(level)


async def test_json_lines_carry_the_runs_fields_and_each_request_is_logged(
    settings: Settings,
) -> None:
    runner = make_runner(settings.model_copy(update={"runner_server_access_log": True}))
    deployment_id = await runner.add_flow(observed.says, "greeter")
    with json_log() as stream:
        async with running(runner), client(await build_server(runner)) as http:
            answer = await http.post(f"/deployment/{deployment_id}/run", json={"words": "hi"})
            run_id = UUID(answer.json()["flow_run_id"])
            done = await wait_for_state(runner.store, run_id)
            await http.get(f"/flow_runs/{run_id}")
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert done.state.type == StateType.COMPLETED
    (said,) = [entry for entry in entries if entry["message"] == "the run says hi"]
    assert said["flow_run_id"] == str(run_id)
    assert said["flow_run_name"] == done.name
    assert said["deployment"] == "says/greeter"
    assert said["attempt"] == 1
    assert said["logger"] == "headrace.flow_runs" and said["level"] == "INFO"
    assert said["timestamp"].endswith("Z")
    access = [entry for entry in entries if entry["logger"] == "headrace.access"]
    trigger = next(entry for entry in access if entry["method"] == "POST")
    assert trigger["route"] == f"/deployment/{deployment_id}/run"
    assert trigger["status"] == 201 and trigger["duration_ms"] > 0
    read = next(entry for entry in access if entry["method"] == "GET")
    assert (read["route"], read["path"]) == ("/flow_runs/{flow_run_id}", f"/flow_runs/{run_id}")
    assert read["message"].startswith(f"GET /flow_runs/{run_id} 200 ")


async def test_without_the_access_log_requests_are_not_logged(sqlite_settings: Settings) -> None:
    runner = make_runner(sqlite_settings)
    await runner.add_flow(observed.says, "greeter")
    with json_log() as stream:
        async with client(await build_server(runner)) as http:
            assert (await http.get("/run_count")).status_code == 200
    assert "headrace.access" not in stream.getvalue()


@pytest.mark.postgres
async def test_a_database_outage_is_a_few_lines_and_its_end_is_told(
    postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    direct = Settings(home=tmp_path / "home", database_url=postgres_url)
    with proxy_for(postgres_url) as proxy:
        runner = make_runner(
            direct.model_copy(update={"database_url": proxy.url_for(postgres_url)})
        )
        deployment_id = await runner.add_flow(basic.add, "adder")
        caplog.set_level(logging.INFO, logger="headrace")
        async with running(runner):
            assert runner._session is not None
            poll = runner._session.poll
            proxy.down()
            try:
                # Polls every 0.2 s: without streaks, a traceback each time for each loop.
                await eventually(
                    lambda: asyncio.sleep(0, poll.failures), lambda n: n >= 10, timeout=30,
                    what="ten failed polls",
                )  # fmt: skip
                during = list(caplog.records)
            finally:
                proxy.up()
            await eventually(
                lambda: asyncio.sleep(0, caplog.text),
                lambda text: "The runner's poll recovered after" in text,
                timeout=30,
                what="the poll's recovery to be logged",
            )
            async with get_client(direct) as direct_client:
                run = await direct_client.create_flow_run_from_deployment(deployment_id, {"x": 1})
                done = await wait_for_state(direct_client.store, run.id, timeout=30)
    assert done.state.type == StateType.COMPLETED
    poll_lines = [r for r in during if r.name == "headrace.runner.poller"]
    loops = [r.getMessage().split(" failed", 1)[0] for r in poll_lines]
    assert len(loops) == len(set(loops)), loops  # one line per loop's streak at most
    assert len(during) <= 20, [r.getMessage() for r in during]
    assert sum(r.exc_info is not None for r in during) <= len(loops) + 1  # a traceback a streak
    assert any(r.getMessage() == "The runner's poll failed; retrying" for r in during)


async def test_a_run_that_raises_logs_its_traceback_as_one_record_with_exception(
    sqlite_settings: Settings,
) -> None:
    runner = make_runner(sqlite_settings)
    deployment_id = await runner.add_flow(basic.fail, "failer")
    with json_log() as stream:
        async with running(runner), get_client(sqlite_settings) as direct_client:
            run = await direct_client.create_flow_run_from_deployment(deployment_id, {})
            done = await wait_for_state(direct_client.store, run.id)
            stored = await direct_client.read_logs(run.id)
    assert done.state.type == StateType.FAILED
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    runs = [e for e in entries if e["logger"] == "headrace.flow_runs"]
    (raised,) = [e for e in runs if e["level"] == "ERROR"]
    assert raised["message"] == "ValueError: boom"
    assert raised["exception"].startswith("Traceback (most recent call last):")
    assert raised["exception"].endswith("ValueError: boom")
    (line,) = [line for line in stored if line.level == logging.ERROR]
    assert line.message.startswith("Traceback") and line.message.endswith("ValueError: boom")
