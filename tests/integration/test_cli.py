"""The command line through typer's runner, against real SQLite and PostgreSQL databases.

Each command reads its settings from the environment it is invoked with
(``HEADRACE_HOME``, ``HEADRACE_DATABASE_URL``), as a user's shell would give them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from typer.testing import CliRunner, Result

from headrace import store as store_module
from headrace.cli import app
from headrace.client import get_client
from headrace.flow_runs import FlowRun, LogRecord
from headrace.flows import Flow
from headrace.runner import Runner
from headrace.settings import Settings
from headrace.states import StateType
from tests.flows import basic
from tests.helpers import make_runner

pytestmark = pytest.mark.timeout(120)

UNREACHABLE_POSTGRES = "postgresql://nobody@127.0.0.1:1/nothing"


@pytest.fixture
def env(settings: Settings) -> Iterator[dict[str, str | None]]:
    """The environment a user's shell would give the CLI for this test's database."""
    yield {
        "HEADRACE_HOME": str(settings.home),
        "HEADRACE_DATABASE_URL": settings.resolved_database_url,
        "COLUMNS": None,
    }
    store = store_module._stores.pop(settings.resolved_database_url, None)
    if store is not None:
        store.close()


def invoke(env: dict[str, str | None], *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def assert_one_error_line(result: Result, *fragments: str, code: int = 1) -> None:
    """A user error: exit code, one line on stderr naming the problem, no traceback."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def add_deployment(settings: Settings, flow: Flow[Any, Any], name: str, **options: Any) -> UUID:
    async def add() -> UUID:
        return await Runner(settings=settings).add_flow(flow, name, **options)

    return asyncio.run(add())


def read_run(settings: Settings, run_id: str | UUID) -> FlowRun:
    async def read() -> FlowRun:
        async with get_client(settings) as client:
            return await client.read_flow_run(UUID(str(run_id)))

    return asyncio.run(read())


def read_runs(settings: Settings) -> list[FlowRun]:
    async def read() -> list[FlowRun]:
        async with get_client(settings) as client:
            return await client.read_flow_runs()

    return asyncio.run(read())


@contextlib.contextmanager
def runner_in_thread(settings: Settings, *flows: tuple[Flow[Any, Any], str]) -> Iterator[Runner]:
    """A real runner (child processes and all) on its own loop in a thread, for the CLI to watch."""
    runner = make_runner(settings)
    loop = asyncio.new_event_loop()
    for flow, name in flows:
        loop.run_until_complete(runner.add_flow(flow, name))
    thread = threading.Thread(target=loop.run_until_complete, args=(runner.start(),))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while runner.last_polled is None:
            assert thread.is_alive(), "the runner stopped before it polled"
            assert time.monotonic() < deadline, "the runner did not poll within 30s"
            thread.join(0.02)
        yield runner
    finally:
        if thread.is_alive():
            asyncio.run_coroutine_threadsafe(runner.stop(), loop).result(timeout=30)
        thread.join(60)
        loop.close()


# -- no database needed ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["run"],
        ["version"],
        ["deployments"],
        ["deployments", "ls"],
        ["deployments", "inspect"],
        ["runs"],
        ["runs", "ls"],
        ["runs", "inspect"],
        ["runs", "logs"],
        ["runs", "cancel"],
        ["db"],
        ["db", "upgrade"],
    ],
)
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Usage: headrace" in result.stdout or "Usage: " in result.stdout
    assert "Example" in result.stdout


def test_version() -> None:
    from headrace import __version__

    for args in (["version"], ["--version"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0
        assert result.stdout.strip() == f"headrace {__version__}"


def test_bad_settings_and_an_unreachable_database_are_one_line(tmp_path: Any) -> None:
    base = {"HEADRACE_HOME": str(tmp_path), "HEADRACE_DATABASE_URL": None}
    bad_setting = {**base, "HEADRACE_RUNNER_POLL_FREQUENCY": "often"}
    assert_one_error_line(
        invoke(bad_setting, "runs", "ls"), "HEADRACE_RUNNER_POLL_FREQUENCY", "valid number"
    )
    unreachable = {**base, "HEADRACE_DATABASE_URL": UNREACHABLE_POSTGRES}
    assert_one_error_line(invoke(unreachable, "deployments", "ls"), "cannot be reached")
    assert_one_error_line(invoke(unreachable, "db", "upgrade"), "cannot be reached")
    not_a_url = {**base, "HEADRACE_DATABASE_URL": "mysql://x/y"}
    assert_one_error_line(invoke(not_a_url, "runs", "ls"), "HEADRACE_DATABASE_URL")


@pytest.mark.parametrize(
    ("args", "fragments", "code"),
    [
        (["tests/flows/missing.py:add"], ["File not found", "missing.py"], 1),
        (["tests/flows/basic.py:nope"], ["has no attribute 'nope'"], 1),
        (["tests/flows/basic.py:not_a_flow"], ["not a flow"], 1),
        (["no_such_module_xyz:flow"], ["Module not found"], 1),
        (["tests/flows/basic.py"], ["Invalid entrypoint"], 1),
        (["tests/flows/basic.py:add", "--param", "x=abc"], ["invalid default", "x"], 1),
        (["tests/flows/basic.py:add", "--param", "x"], ["NAME=VALUE"], 2),
        (["tests/flows/basic.py:add", "--cron", "bad"], ["invalid cron expression"], 2),
        (
            ["tests/flows/basic.py:add", "--cron", "* * * * *", "--interval", "5"],
            ["at most one"],
            2,
        ),
        (["tests/flows/basic.py:add", "--rrule", "FREQ=NEVER"], ["invalid rrule"], 2),
        (["tests/flows/basic.py:add", "--timezone", "UTC"], ["--timezone needs"], 2),
        (["tests/flows/basic.py:add", "--interval", "0"], ["interval must be positive"], 2),
    ],
)
def test_serve_explains_what_is_wrong_before_serving(
    tmp_path: Any, args: list[str], fragments: list[str], code: int
) -> None:
    env = {"HEADRACE_HOME": str(tmp_path), "HEADRACE_DATABASE_URL": None}
    assert_one_error_line(invoke(env, "serve", *args, "--no-webserver"), *fragments, code=code)


# -- against SQLite and PostgreSQL -------------------------------------------------------------


def test_db_upgrade_prints_the_revision(env: dict[str, str | None]) -> None:
    from headrace.store.migrate import head_revision

    result = invoke(env, "db", "upgrade")
    assert result.exit_code == 0, result.output
    assert f"revision {head_revision()}" in result.stdout


def test_deployments_ls_and_inspect(settings: Settings, env: dict[str, str | None]) -> None:
    empty = invoke(env, "deployments", "ls")
    assert empty.exit_code == 0 and "No deployments yet" in empty.stderr
    deployment_id = add_deployment(
        settings,
        basic.add,
        "adder",
        cron="0 9 * * *",
        timezone="Europe/Berlin",
        parameters={"y": 5},
    )

    listed = invoke(env, "deployments", "ls")
    assert listed.exit_code == 0, listed.output
    assert "add/adder" in listed.stdout and str(deployment_id) in listed.stdout
    assert "cron '0 9 * * *' (Europe/Berlin)" in listed.stdout
    as_json = json.loads(invoke(env, "deployments", "ls", "--json").stdout)
    assert [(d["flow_name"], d["name"], d["id"]) for d in as_json] == [
        ("add", "adder", str(deployment_id))
    ]

    for ref in ("add/adder", str(deployment_id), "adder"):
        shown = invoke(env, "deployments", "inspect", ref)
        assert shown.exit_code == 0, shown.output
        assert str(deployment_id) in shown.stdout
        assert "basic.py:add" in shown.stdout or "tests.flows.basic:add" in shown.stdout
        assert "5 (deployment)" in shown.stdout  # y's default on this deployment
    detail = json.loads(invoke(env, "deployments", "inspect", "add/adder", "--json").stdout)
    assert detail["parameters"] == {"y": 5}

    assert_one_error_line(invoke(env, "deployments", "inspect", "add/nope"), "'add/nope'")
    assert_one_error_line(
        invoke(env, "deployments", "inspect", "00000000-0000-0000-0000-000000000000"),
        "No deployment",
    )


def test_a_port_out_of_range_names_the_option(env: dict[str, str | None]) -> None:
    result = invoke(env, "serve", "tests/flows/basic.py:add", "--port", "99999")
    assert result.exit_code == 2, result.output
    assert "'--port'" in result.stderr and "Traceback" not in result.output


def test_an_unusable_home_is_named_not_a_traceback(tmp_path: Path) -> None:
    taken = tmp_path / "a-file"
    taken.write_text("not a folder")
    home = {"HEADRACE_HOME": str(taken), "HEADRACE_DATABASE_URL": None, "COLUMNS": None}
    for command in (("runs", "ls"), ("deployments", "ls")):
        assert_one_error_line(invoke(home, *command), str(taken), "HEADRACE_HOME")


def test_a_name_two_deployments_share_is_ambiguous(
    settings: Settings, env: dict[str, str | None]
) -> None:
    add_deployment(settings, basic.add, "same")
    add_deployment(settings, basic.fail, "same")
    for command in (("run", "same"), ("deployments", "inspect", "same")):
        assert_one_error_line(
            invoke(env, *command),
            "'same' names more than one deployment: give one of add/same, fail/same",
        )


def test_a_number_for_a_text_parameter_says_how_to_quote_it(
    settings: Settings, env: dict[str, str | None]
) -> None:
    add_deployment(settings, basic.fail, "failer")  # message: str
    result = invoke(env, "run", "fail/failer", "-p", "message=123")
    assert_one_error_line(result, "message", "quote text, as in -p 'name=\"123\"'")
    assert read_runs(settings) == []


def test_run_timeout_without_watch_is_a_usage_error(
    settings: Settings, env: dict[str, str | None]
) -> None:
    add_deployment(settings, basic.add, "adder")
    result = invoke(env, "run", "add/adder", "-p", "x=1", "--timeout", "5")
    assert_one_error_line(result, "--timeout limits --watch", code=2)
    assert read_runs(settings) == []


def test_run_queues_a_run_with_parsed_parameters(
    settings: Settings, env: dict[str, str | None]
) -> None:
    add_deployment(settings, basic.add, "adder")
    result = invoke(env, "run", "add/adder", "--param", "x=3")
    assert result.exit_code == 0, result.output
    run = read_run(settings, result.stdout.strip())
    assert run.state.type == StateType.SCHEDULED
    assert run.parameters == {"x": 3}
    assert f"headrace runs logs {run.id} --follow" in result.stderr

    merged = invoke(env, "run", "add/adder", "--params", '{"x": 1, "y": 2}', "-p", "y=7")
    assert merged.exit_code == 0, merged.output
    assert read_run(settings, merged.stdout.strip()).parameters == {"x": 1, "y": 7}

    assert_one_error_line(invoke(env, "run", "add/adder", "-p", "x=abc"), "Invalid parameters", "x")
    assert_one_error_line(invoke(env, "run", "add/adder"), "x")  # x is required
    assert_one_error_line(invoke(env, "run", "add/adder", "-p", "x"), "NAME=VALUE", code=2)
    assert_one_error_line(invoke(env, "run", "add/adder", "--params", "[1]"), "object", code=2)
    assert_one_error_line(invoke(env, "run", "nope/adder", "-p", "x=1"), "'nope/adder'")


def test_run_watch_follows_the_run_and_exits_with_its_outcome(
    settings: Settings, env: dict[str, str | None]
) -> None:
    with runner_in_thread(settings, (basic.add, "adder"), (basic.fail, "failer")):
        done = invoke(env, "run", "add/adder", "--param", "x=2", "--watch")
        failed = invoke(env, "run", "fail/failer", "-p", "message=kaput", "-w")

    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    run = read_run(settings, lines[0])
    assert run.state.type == StateType.COMPLETED
    order = [
        next(i for i, line in enumerate(lines) if marker in line)
        for marker in ("SCHEDULED", "RUNNING", "adding 2 and 1", "state    COMPLETED")
    ]
    assert order == sorted(order), done.stdout
    assert lines[-1].startswith(f"Flow run {run.name} COMPLETED after ")
    assert lines[-1].endswith("result: 3")

    assert failed.exit_code == 1, failed.output
    assert "ValueError: kaput" in failed.stdout
    assert "FAILED" in failed.stdout.splitlines()[-1]


def test_watch_timeout_and_ctrl_c_leave_the_run_alone(
    settings: Settings, env: dict[str, str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    add_deployment(settings, basic.add, "adder")  # nothing serves it: its runs stay SCHEDULED
    timed_out = invoke(env, "run", "add/adder", "-p", "x=1", "--watch", "--timeout", "0.3")
    assert timed_out.exit_code == 124, timed_out.output
    assert "carries on" in timed_out.stderr
    assert read_run(settings, timed_out.stdout.splitlines()[0]).state.type == StateType.SCHEDULED

    async def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("headrace.cli.watch.follow_run", interrupted)
    stopped = invoke(env, "run", "add/adder", "-p", "x=1", "--watch")
    assert stopped.exit_code == 130, stopped.output
    assert "Ctrl-C" in stopped.stderr
    assert read_run(settings, stopped.stdout.splitlines()[0]).state.type == StateType.SCHEDULED


def test_runs_ls_inspect_logs_and_cancel(settings: Settings, env: dict[str, str | None]) -> None:
    adder = add_deployment(settings, basic.add, "adder")
    add_deployment(settings, basic.fail, "failer")
    ids = [invoke(env, "run", "add/adder", "-p", f"x={i}").stdout.strip() for i in range(3)]
    other = invoke(env, "run", "fail/failer").stdout.strip()

    listed = invoke(env, "runs", "ls")
    assert listed.exit_code == 0, listed.output
    rows = [line for line in listed.stdout.splitlines() if line[:36] in {*ids, other}]
    assert [row[:36] for row in rows] == [other, *reversed(ids)]  # newest first
    assert "add/adder" in rows[1] and "SCHEDULED" in rows[1]

    def listed_ids(*args: str) -> list[str]:
        result = invoke(env, "runs", "ls", "--json", *args)
        assert result.exit_code == 0, result.output
        return [run["id"] for run in json.loads(result.stdout)]

    assert listed_ids("--deployment", "add/adder") == list(reversed(ids))
    assert listed_ids("--deployment", str(adder), "--limit", "1") == [ids[-1]]
    assert listed_ids("--flow", "fail") == [other]

    cancelled = invoke(env, "runs", "cancel", ids[0])
    assert cancelled.exit_code == 0, cancelled.output
    assert "Cancelled flow run" in cancelled.stdout
    assert listed_ids("--state", "cancelled") == [ids[0]]
    assert listed_ids("-s", "SCHEDULED", "-s", "cancelled") == [other, *reversed(ids)]
    assert_one_error_line(invoke(env, "runs", "cancel", ids[0]), "already ended")
    assert_one_error_line(invoke(env, "runs", "ls", "--state", "done"), "Unknown state", code=2)

    inspected = invoke(env, "runs", "inspect", ids[0])
    assert inspected.exit_code == 0, inspected.output
    assert ids[0] in inspected.stdout and '"x": 0' in inspected.stdout
    assert "Cancelled before it started" in inspected.stdout
    history = json.loads(invoke(env, "runs", "inspect", ids[0], "--json").stdout)["state_history"]
    assert [s["type"] for s in history] == ["SCHEDULED", "CANCELLED"]

    write_logs(settings, UUID(ids[1]), ["first line", "second [bold]line[/bold]"])
    for args in ([], ["--follow"]):  # --follow returns once the (cancelled) run has ended
        if args:
            invoke(env, "runs", "cancel", ids[1])
        logs = invoke(env, "runs", "logs", ids[1], *args)
        assert logs.exit_code == 0, logs.output
        assert [line.split(maxsplit=2)[-1] for line in logs.stdout.splitlines()] == [
            "first line",
            "second [bold]line[/bold]",
        ]
    assert "No logs" in invoke(env, "runs", "logs", ids[2]).stderr

    missing = "00000000-0000-0000-0000-000000000000"
    for command in ("inspect", "logs", "cancel"):
        assert_one_error_line(invoke(env, "runs", command, missing), "No flow run")
        assert_one_error_line(
            invoke(env, "runs", command, "not-an-id"), "not a flow run id", code=2
        )


def write_logs(settings: Settings, flow_run_id: UUID, messages: list[str]) -> None:
    async def write() -> None:
        async with get_client(settings) as client:
            await client.store.write_logs(
                [
                    LogRecord(
                        flow_run_id=flow_run_id,
                        level=20,
                        message=message,
                        timestamp=datetime.now(UTC),
                    )
                    for message in messages
                ]
            )

    asyncio.run(write())
