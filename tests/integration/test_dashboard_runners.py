"""Several runners on one database: every dashboard over it (each runner's, and
``headrace ui``'s) shows each runner's runs held, limit and backlog as the database
has them, not only those of the runner answering."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from uuid import UUID

import pytest
import sqlalchemy as sa

from headrace.runner import Runner
from headrace.runner.server import build_server
from headrace.runner.server.dashboard_server import build_dashboard_server
from headrace.settings import Settings
from headrace.states import StateType
from headrace.store import AsyncStore, RunnerRecord, SQLStore
from headrace.store.tables import runners
from tests.flows import basic
from tests.helpers import make_runner, running, wait_for_state
from tests.integration.server_app import client
from tests.pages import runner_row

pytestmark = pytest.mark.timeout(60)

BEFORE_0014 = sa.table(
    "runners",
    *[
        sa.column(c.name, c.type)
        for c in runners.c
        if c.name not in ("process_limit", "backlog_limit")
    ],
)
"""The runners table as revision 0013 has it."""


@contextlib.asynccontextmanager
async def both_running(first: Runner, second: Runner) -> AsyncIterator[None]:
    async with running(first), running(second):
        yield


async def test_every_dashboard_shows_every_runners_limit(settings: Settings) -> None:
    first = make_runner(settings, name="first-runner", limit=2)
    second = make_runner(settings, name="second-runner", limit=3)
    await first.add_flow(basic.add, "adder")
    sleeper = await second.add_flow(basic.sleepy, "sleeper")
    other_store = AsyncStore(SQLStore(settings.resolved_database_url))  # as `headrace ui` opens it
    try:
        async with both_running(first, second):
            apps = [
                await build_server(first),
                await build_server(second),
                build_dashboard_server(other_store, settings),
            ]
            async with client(apps[1]) as c:  # the route of the runner serving it
                made = await c.post(f"/deployment/{sleeper}/run", json={"seconds": 60})
            run_id = UUID(made.json()["flow_run_id"])
            await wait_for_state(first.store, run_id, {StateType.RUNNING})
            for app in apps:
                async with client(app) as c:
                    for path in ("/ui/runners", "/ui/"):
                        html = (await c.get(path)).text
                        # Running / limit, then backlog (due runs waiting), then deployments.
                        assert runner_row(html, "first-runner")[5:] == ["0 / 2", "0", "1"]
                        assert runner_row(html, "second-runner")[5:] == ["1 / 3", "0", "1"]
            async with client(apps[2]) as c:
                cancelled = await c.post(f"/flow_runs/{run_id}/cancel")
            assert cancelled.status_code in (200, 202), cancelled.text
            await wait_for_state(first.store, run_id)
    finally:
        other_store.close()


async def test_a_runner_recorded_before_limits_were_stored_shows_none(
    database_url: str,
) -> None:
    from alembic import command

    from headrace.store.migrate import _config

    store = SQLStore(database_url)
    try:
        with store.engine.begin() as conn:
            command.downgrade(_config(conn), "0013")  # type: ignore[arg-type]
            conn.execute(
                sa.insert(BEFORE_0014),
                [
                    RunnerRecord(name="old-runner").model_dump(
                        exclude={"process_limit", "backlog_limit"}
                    )
                ],
            )
        with store.engine.begin() as conn:
            command.upgrade(_config(conn), "head")  # type: ignore[arg-type]
        (old,) = store.read_runners()
        assert old.name == "old-runner" and old.process_limit is old.backlog_limit is None
    finally:
        store.close()
