"""Errors that say what happened: a full database, a client gone mid-body."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from headrace.exceptions import StoreFull
from headrace.flow_runs import NewFlowRun
from headrace.runner import Runner
from headrace.runner.server import build_server, serve_in_loop
from headrace.settings import Settings
from tests.helpers import eventually, free_port
from tests.integration.server_app import client, served

pytestmark = pytest.mark.timeout(60)


def fill_up(runner: Runner) -> None:
    """Leave the runner's database no room to grow: real SQLite and PostgreSQL errors.

    SQLite: ``max_page_count`` at the pages it has (what a full disk does to it).
    PostgreSQL: a trigger that fails inserts with ``disk_full`` (SQLSTATE 53100), as
    PostgreSQL does when it cannot extend a file.
    """
    engine = runner.store.sync.engine
    if engine.dialect.name == "sqlite":

        def cap(dbapi_connection: Any, record: Any) -> None:
            pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
            dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

        sa.event.listen(engine, "connect", cap)
        engine.dispose()
        return
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION no_space() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'could not extend file: No space left on device' "
            "USING ERRCODE = 'disk_full'; END $$"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER no_space BEFORE INSERT ON flow_runs "
            "FOR EACH ROW EXECUTE FUNCTION no_space()"
        )


async def test_a_full_database_is_507_not_unreachable(settings: Settings) -> None:
    runner, ids = await served(settings)
    app = await build_server(runner)
    fill_up(runner)
    # More than the room left in the file's last pages: the insert must grow the file.
    shape = {"name": "x" * 200_000, "points": []}
    async with client(app) as c:
        response = await c.post(f"/deployment/{ids['complex']}/run", json={"shape": shape})
    assert response.status_code == 507, response.text
    assert response.json() == {"message": "The database is full (no space left)"}
    new = NewFlowRun(flow_name="complex-flow", parameters={"shape": shape})
    with pytest.raises(StoreFull, match="full"):
        await runner.store.create_flow_run(new)


HALF_BODIES = {
    "content-length": 'Content-Length: 1000\r\n\r\n{"x": 1, ',
    "chunked": 'Transfer-Encoding: chunked\r\n\r\n8\r\n{"x": 1}\r\n',
}


@pytest.mark.parametrize("framing", sorted(HALF_BODIES))
async def test_a_client_gone_mid_body_is_one_log_line(
    framing: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        home=tmp_path / "home",
        database_url=f"sqlite:///{tmp_path / 'web.db'}",
        runner_server_host="127.0.0.1",
        runner_server_port=free_port(),
    )
    runner, ids = await served(settings)
    caplog.set_level(logging.INFO)
    task = await serve_in_loop(runner)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", settings.runner_server_port)
        writer.write(
            f"POST /deployment/{ids['adder']}/run HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\n{HALF_BODIES[framing]}".encode()
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        gone = await eventually(
            lambda: _records(caplog, "disconnected"), lambda found: len(found) > 0
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=15)
    (line,) = gone
    assert line.exc_info is None, "no traceback"
    assert f"/deployment/{ids['adder']}/run" in line.getMessage()
    assert not [r for r in caplog.records if r.exc_info or "Exception in ASGI" in r.getMessage()]
    assert await runner.store.read_flow_runs() == [], "half a body creates nothing"


async def _records(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]
