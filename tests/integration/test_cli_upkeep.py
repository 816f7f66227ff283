"""Looking after deployments, runs and the database from the command line, on SQLite and
PostgreSQL: pause, resume and delete deployments; retry and delete runs; back up."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest
from typer.testing import CliRunner

from headrace.cli import app
from headrace.client import get_client
from headrace.settings import Settings
from headrace.states import StateType, utcnow
from headrace.store import SQLStore
from tests.flows import basic
from tests.integration.test_cli import (
    add_deployment,
    assert_one_error_line,
    env,  # noqa: F401  (a fixture)
    invoke,
    read_run,
    runner_in_thread,
)
from tests.integration.test_retention import seed_ended_runs

pytestmark = pytest.mark.timeout(120)

Env = dict[str, str | None]


@pytest.mark.parametrize(
    "command",
    [
        ["deployments", "pause"],
        ["deployments", "resume"],
        ["deployments", "delete"],
        ["runs", "retry"],
        ["runs", "delete"],
        ["db", "backup"],
        ["db", "prune"],
    ],
)
def test_every_upkeep_command_has_help_with_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout


def test_runs_retry_and_delete(settings: Settings, env: Env) -> None:  # noqa: F811
    add_deployment(settings, basic.add, "adder")
    first = invoke(env, "run", "add/adder", "-p", "x=7").stdout.strip()
    assert_one_error_line(invoke(env, "runs", "retry", first), "has not ended")
    assert_one_error_line(invoke(env, "runs", "delete", first, "--yes"), "has not ended")
    invoke(env, "runs", "cancel", first)

    retried = invoke(env, "runs", "retry", first)
    assert retried.exit_code == 0, retried.output
    again = read_run(settings, retried.stdout.strip())
    assert again.id != UUID(first) and again.parameters == read_run(settings, first).parameters == {
        "x": 7
    }
    assert again.deployment_id == read_run(settings, first).deployment_id
    assert again.state.type == StateType.SCHEDULED

    kept = CliRunner().invoke(app, ["runs", "delete", first], env=env, input="n\n")
    assert kept.exit_code == 1 and read_run(settings, first).id == UUID(first)
    deleted = invoke(env, "runs", "delete", first, "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert "Deleted flow run" in deleted.stdout
    assert_one_error_line(invoke(env, "runs", "inspect", first), "No flow run")
    assert_one_error_line(invoke(env, "runs", "retry", first), "No flow run")


def test_deployments_pause_resume_and_delete(settings: Settings, env: Env) -> None:  # noqa: F811
    add_deployment(settings, basic.add, "adder", interval=3600)
    paused = invoke(env, "deployments", "pause", "add/adder")
    assert paused.exit_code == 0, paused.output
    assert paused.stdout.strip() == "Paused add/adder."
    assert json.loads(invoke(env, "deployments", "inspect", "add/adder", "--json").stdout)["paused"]
    resumed = invoke(env, "deployments", "resume", "add/adder")
    assert resumed.stdout.strip() == "Resumed add/adder."
    assert not json.loads(invoke(env, "deployments", "inspect", "add/adder", "--json").stdout)[
        "paused"
    ]

    ended = invoke(env, "run", "add/adder", "-p", "x=1").stdout.strip()
    invoke(env, "runs", "cancel", ended)
    queued = invoke(env, "run", "add/adder", "-p", "x=2").stdout.strip()
    deleted = invoke(env, "deployments", "delete", "add/adder", "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert deleted.stdout.strip() == "Deleted deployment add/adder and 1 queued run(s)."
    assert read_run(settings, ended).deployment_id is None  # its history stays readable
    assert_one_error_line(invoke(env, "runs", "inspect", queued), "No flow run")
    assert_one_error_line(invoke(env, "deployments", "pause", "add/adder"), "No deployment")


def test_a_deployment_a_live_runner_serves_is_not_deleted(settings: Settings, env: Env) -> None:  # noqa: F811
    with runner_in_thread(settings, (basic.add, "adder")):
        refused = invoke(env, "deployments", "delete", "add/adder", "--yes")
        assert_one_error_line(refused, "serves this deployment", "stop it first")
    assert json.loads(invoke(env, "deployments", "inspect", "add/adder", "--json").stdout)


def test_db_backup_while_a_runner_serves_and_runs_are_created(
    settings: Settings,
    env: Env,  # noqa: F811
    tmp_path: Path,
) -> None:
    copy = tmp_path / "backup.db"
    if not settings.resolved_database_url.startswith("sqlite"):
        assert_one_error_line(invoke(env, "db", "backup", str(copy)), "pg_dump", code=2)
        return
    with runner_in_thread(settings, (basic.add, "adder")) as runner:
        deployment_id = next(iter(runner.deployment_ids))
        created: list[UUID] = []
        stop = threading.Event()
        creating = threading.Thread(
            target=_create_runs, args=(settings, deployment_id, created, stop)
        )
        creating.start()
        try:
            while len(created) < 20:
                creating.join(0.01)
                assert creating.is_alive()
            before = len(created)
            backed_up = invoke(env, "db", "backup", str(copy))
        finally:
            stop.set()
            creating.join(30)
    assert backed_up.exit_code == 0, backed_up.output
    assert backed_up.stdout.startswith("Backed up ")
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {UUID(row[0]) for row in conn.execute("SELECT id FROM flow_runs")}
        states = {row[0] for row in conn.execute("SELECT state_type FROM flow_runs")}
    conn.close()
    assert set(created[:before]) <= stored  # a hex UUID column: no dashes on SQLite
    assert states <= {s.value for s in StateType}
    assert_one_error_line(invoke(env, "db", "backup", str(copy)), "exists", "--force", code=2)
    assert invoke(env, "db", "backup", str(copy), "--force").exit_code == 0


def _create_runs(
    settings: Settings, deployment_id: UUID, created: list[UUID], stop: threading.Event
) -> None:
    async def create() -> None:
        async with get_client(settings) as client:
            while not stop.is_set():
                run = await client.create_flow_run_from_deployment(deployment_id, {"x": 1})
                created.append(run.id)

    asyncio.run(create())


def test_db_prune_deletes_runs_older_than_a_duration_and_says_what(
    settings: Settings,
    env: Env,  # noqa: F811
) -> None:
    store = SQLStore(settings.resolved_database_url)
    now = utcnow()
    old = seed_ended_runs(store, [now - timedelta(days=8, minutes=i) for i in range(3)])
    (recent,) = seed_ended_runs(store, [now - timedelta(hours=30)])
    store.close()

    counted = invoke(env, "db", "prune", "--older-than", "7d", "--dry-run")
    assert counted.exit_code == 0, counted.output
    assert counted.stdout.startswith("Would delete 3 flow runs that ended before ")
    assert "with 6 log lines and 3 states (dry run: nothing deleted)." in counted.stdout
    assert read_run(settings, old[0]).state.type == StateType.COMPLETED

    pruned = invoke(env, "db", "prune", "--older-than", "7d")
    assert pruned.exit_code == 0, pruned.output
    assert pruned.stdout.startswith("Deleted 3 flow runs that ended before ")
    assert pruned.stdout.rstrip().endswith("with 6 log lines and 3 states.")
    assert_one_error_line(invoke(env, "runs", "inspect", str(old[0])), "No flow run")
    assert read_run(settings, recent).state.type == StateType.COMPLETED
    assert invoke(env, "db", "prune", "--older-than", "1d").stdout.startswith("Deleted 1 ")

    for bad, said in [("7x", "is not a duration"), ("0h", "no time at all"), ("", "7d, 12h")]:
        assert_one_error_line(invoke(env, "db", "prune", "--older-than", bad), said, code=2)
