"""Errors that say what happened: a full database, a client gone mid-body."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from headrace.exceptions import StoreFull
from headrace.flow_runs import NewFlowRun
from headrace.runner import Runner
from headrace.runner.server import build_server
from headrace.settings import Settings
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
