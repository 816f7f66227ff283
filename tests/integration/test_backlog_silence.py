"""Triggers that arrive together while the database is silent answer 503 together."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from headrace.runner.server import build_server
from headrace.runner.server.backlog import MAX_ESTIMATE_AGE_SECONDS
from headrace.settings import Settings
from tests.flows import basic
from tests.helpers import make_runner, running
from tests.integration.dbproxy import proxy_for
from tests.integration.server_app import client

pytestmark = [pytest.mark.timeout(120), pytest.mark.postgres]

TIMEOUT = 1.0
"""``HEADRACE_DATABASE_TIMEOUT_SECONDS`` here."""
TOGETHER = 10
"""Waiting in turn, the last would answer after ``TOGETHER`` timeouts."""
MARGIN = 4.0
"""What a loaded 2-core machine may add, still far under ``TOGETHER`` timeouts."""


async def timed_post(http: httpx.AsyncClient, route: str) -> tuple[int, float]:
    began = time.monotonic()
    answer = await http.post(route, json={"x": 1})
    return answer.status_code, time.monotonic() - began


async def test_triggers_queued_behind_a_backlog_count_that_timed_out_fail_with_it(
    postgres_url: str, tmp_path: Path
) -> None:
    """Each used to wait for a count of its own in turn: the tenth answered after 10 timeouts."""
    direct = Settings(home=tmp_path / "home", database_url=postgres_url)
    with proxy_for(postgres_url) as proxy:
        through = {"database_url": proxy.url_for(postgres_url), "database_timeout_seconds": TIMEOUT}
        runner = make_runner(direct.model_copy(update=through))
        deployment_id = await runner.add_flow(basic.add, "adder")
        route = f"/deployment/{deployment_id}/run"
        async with running(runner), client(await build_server(runner)) as http:
            proxy.black_hole()
            try:
                await asyncio.sleep(MAX_ESTIMATE_AGE_SECONDS)  # stale: the next trigger counts
                answers = await asyncio.gather(*(timed_post(http, route) for _ in range(TOGETHER)))
            finally:
                proxy.resume()
    assert [status for status, _ in answers] == [503] * TOGETHER
    assert max(seconds for _, seconds in answers) < TIMEOUT + MARGIN, answers
