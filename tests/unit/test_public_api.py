"""The public names and signatures SPEC.md fixes, and checks made before anything is stored."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

import headrace
from headrace import exceptions
from headrace.deployments import DeploymentOptions, RunnerDeployment
from headrace.exceptions import InvalidDeployment
from headrace.flows import Flow
from headrace.schedules import construct_schedule
from headrace.settings import load_settings
from tests.flows import basic

EMPTY = inspect.Parameter.empty
POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD
KEYWORD = inspect.Parameter.KEYWORD_ONLY


def parameters(fn: Any) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(fn).parameters)


def assert_has(fn: Any, expected: dict[str, tuple[Any, Any]]) -> None:
    """Each named parameter exists with the given (kind, default)."""
    found = parameters(fn)
    for name, (kind, default) in expected.items():
        assert name in found, f"{fn.__qualname__} has no parameter {name!r}"
        assert found[name].kind == kind, (name, found[name].kind)
        assert found[name].default == default, (name, found[name].default)


SPEC_DEPLOYMENT_KEYWORDS: dict[str, Any] = {
    "cron": "0 9 * * *",
    "interval": None,
    "rrule": None,
    "parameters": {"x": 1},
    "tags": ["t"],
    "description": "d",
    "version": "v1",
    "enforce_parameter_schema": False,
    "paused": True,
}


def test_flow_serve_takes_the_spec_keywords() -> None:
    assert_has(
        Flow.serve,
        {"name": (POSITIONAL, None), "limit": (KEYWORD, None), "webserver": (KEYWORD, False)},
    )
    assert parameters(Flow.serve)["options"].kind == inspect.Parameter.VAR_KEYWORD
    assert set(SPEC_DEPLOYMENT_KEYWORDS) <= set(DeploymentOptions.__annotations__)
    with pytest.raises(TypeError, match="'crn'"):
        basic.add.serve("adder", crn="* * * * *")  # type: ignore[call-arg]  # refused before serving


def test_to_deployment_takes_the_spec_keywords_with_their_defaults() -> None:
    given = basic.add.to_deployment("adder", **SPEC_DEPLOYMENT_KEYWORDS)
    assert (given.name, given.parameters, given.tags) == ("adder", {"x": 1}, ["t"])
    assert (given.enforce_parameter_schema, given.paused) == (False, True)
    defaults = basic.add.to_deployment()
    assert (defaults.name, defaults.schedules, defaults.parameters) == ("add", [], {})
    assert (defaults.enforce_parameter_schema, defaults.paused, defaults.catchup) == (
        True,
        False,
        False,
    )
    assert (defaults.concurrency_limit, defaults.on_shutdown) == (None, "finish")
    with pytest.raises(TypeError, match="'tagz'"):
        basic.add.to_deployment("adder", tagz=["t"])  # type: ignore[call-arg]


async def test_add_flow_takes_the_spec_keywords(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from headrace.runner import Runner

    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    runner = Runner()
    added: list[RunnerDeployment] = []

    async def add_deployment(deployment: RunnerDeployment) -> UUID:
        added.append(deployment)
        return UUID(int=len(added))

    monkeypatch.setattr(runner, "add_deployment", add_deployment)
    assert await runner.add_flow(basic.add, "adder", **SPEC_DEPLOYMENT_KEYWORDS) == UUID(int=1)
    assert await runner.add_flow(basic.add) == UUID(int=2)
    assert [(d.name, d.paused) for d in added] == [("adder", True), ("add", False)]
    assert [len(d.schedules) for d in added] == [1, 0]
    with pytest.raises(TypeError, match="'crn'"):
        await runner.add_flow(basic.add, crn="* * * * *")  # type: ignore[call-arg]


def test_runner_and_serve_signatures() -> None:
    from headrace.runner import Runner, serve

    first_four = list(parameters(Runner))[:4]
    assert first_four == ["name", "query_seconds", "limit", "webserver"]
    assert_has(
        Runner,
        {
            "name": (POSITIONAL, None),
            "query_seconds": (POSITIONAL, None),
            "webserver": (POSITIONAL, False),
        },
    )
    assert_has(Runner.start, {"run_once": (POSITIONAL, False), "webserver": (POSITIONAL, None)})
    assert_has(Runner.execute_flow_run, {"entrypoint": (POSITIONAL, None)})
    assert list(parameters(Runner.execute_flow_run))[:2] == ["self", "flow_run_id"]
    for coroutine in (Runner.add_flow, Runner.add_deployment, Runner.start, Runner.stop):
        assert inspect.iscoroutinefunction(coroutine), coroutine
    assert not inspect.iscoroutinefunction(Runner.execute_in_background)
    assert_has(serve, {"limit": (KEYWORD, None), "webserver": (KEYWORD, False)})
    assert parameters(serve)["deployments"].kind == inspect.Parameter.VAR_POSITIONAL
    assert headrace.serve is serve and headrace.Runner is Runner


def test_runner_limit_defaults_to_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from headrace.runner import Runner

    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    monkeypatch.setenv("HEADRACE_RUNNER_PROCESS_LIMIT", "7")
    runner = Runner()
    assert runner.limit == 7
    assert runner.deployment_ids == set()
    assert runner.last_polled is None
    assert runner.has_slots_available() is True
    assert Runner(limit=2).limit == 2


def test_client_methods() -> None:
    from headrace.client import HeadraceClient

    assert_has(
        HeadraceClient.create_flow_run_from_deployment,
        {"parameters": (POSITIONAL, None), "idempotency_key": (POSITIONAL, None)},
    )
    assert_has(
        HeadraceClient.create_flow_run,
        {"parameters": (POSITIONAL, None), "parent_task_run_id": (POSITIONAL, None)},
    )
    assert list(parameters(HeadraceClient.create_flow_run))[:2] == ["self", "flow"]
    for name in (
        "read_deployment",
        "read_deployments",
        "create_flow_run_from_deployment",
        "create_flow_run",
        "read_flow_run",
        "read_flow_runs",
        "read_logs",
        "cancel_flow_run",
    ):
        assert inspect.iscoroutinefunction(getattr(HeadraceClient, name)), name


def test_submission_and_server_signatures() -> None:
    from headrace.runner import server

    assert list(parameters(headrace.submit_to_runner))[:2] == ["flow", "parameters"]
    assert callable(headrace.wait_for_submitted_runs)
    assert inspect.iscoroutinefunction(server.build_server)
    assert inspect.iscoroutinefunction(server.get_subflow_schemas)
    assert not inspect.iscoroutinefunction(server.start_webserver)
    assert_has(server.start_webserver, {"log_level": (POSITIONAL, None)})


def test_entrypoint_errors_are_distinct_and_share_one_root() -> None:
    named = [
        exceptions.EntrypointFileNotFound,
        exceptions.EntrypointAttributeNotFound,
        exceptions.NotAFlow,
        exceptions.EntrypointScriptError,
        exceptions.EntrypointModuleNotFound,
        exceptions.InvalidEntrypoint,
    ]
    assert len(set(named)) == len(named)
    for error in named:
        assert issubclass(error, exceptions.EntrypointError)
        assert issubclass(error, exceptions.HeadraceError)
        assert error().message, "each class has a default message"
    for error in named:
        others = [other for other in named if other is not error]
        assert not any(issubclass(error, other) for other in others), error
    assert issubclass(exceptions.ObjectNotFound, exceptions.HeadraceError)


# -- deployments are checked when they are built -------------------------------------------


def test_bad_default_parameters_fail_when_the_deployment_is_built() -> None:
    with pytest.raises(InvalidDeployment, match="x") as bad_type:
        basic.add.to_deployment("adder", parameters={"x": "abc"})
    assert "invalid default parameters" in str(bad_type.value)
    with pytest.raises(InvalidDeployment, match="zzz"):
        basic.add.to_deployment("adder", parameters={"zzz": 1})
    # Missing required parameters are fine: a trigger may give them.
    deployment = basic.add.to_deployment("adder", parameters={"y": 2})
    assert deployment.parameters == {"y": 2}
    assert deployment.to_spec().parameter_schema["required"] == ["x"]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"on_shutdown": "later"}, "on_shutdown: Input should be 'finish', 'requeue' or 'cancel'"),
        ({"concurrency_limit": 0}, "concurrency_limit: Input should be greater than or equal to 1"),
        ({"cron": "nope"}, "Invalid schedule: cron: invalid cron expression 'nope'"),
        ({"rrule": "garbage"}, "e.g. 'FREQ=WEEKLY;BYDAY=MO;BYHOUR=9'"),
        ({"interval": -5}, "Invalid schedule: interval: interval must be positive"),
        ({"cron": "* * * * *", "timezone": "Mars/Base"}, "unknown timezone 'Mars/Base'"),
        ({"rrule": "FREQ=DAILY;COUNT=3"}, "schedule 1 never fires after now"),  # 2020
        ({"cron": "0 0 * * * 0 2021"}, "schedule 1 never fires after now"),
        ({"cron": "* * * * *", "timezone": ""}, "unknown timezone ''"),  # not quietly UTC
        ({"rrule": "FREQ=DAILY;UNTIL=20270101T000000"}, "give UNTIL in UTC with a final Z"),
    ],
)
def test_bad_deployment_options_are_one_clear_error_when_built(
    options: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidDeployment) as raised:
        basic.add.to_deployment("adder", **options)
    assert named in str(raised.value)
    assert "pydantic" not in str(raised.value) and "\n" not in str(raised.value)


def test_bad_per_schedule_parameters_fail_when_the_deployment_is_built() -> None:
    schedule = construct_schedule(interval=60)
    assert schedule is not None
    bad = schedule.model_copy(update={"parameters": {"x": "not a number"}})
    with pytest.raises(InvalidDeployment, match="x"):
        basic.add.to_deployment("adder", schedules=[bad])


def test_to_deployment_keeps_what_it_was_given() -> None:
    deployment = basic.add.to_deployment(
        "adder",
        cron="0 9 * * *",
        timezone="Europe/Berlin",
        parameters={"x": 1},
        tags=["a"],
        description="d",
        version="v1",
        enforce_parameter_schema=False,
        paused=True,
        catchup=True,
        concurrency_limit=2,
        on_shutdown="requeue",
    )
    spec = deployment.to_spec()
    assert spec.flow_name == "add" and spec.name == "adder"
    assert spec.entrypoint == "tests.flows.basic:add"
    timings = [s.schedule for s in spec.schedules]
    assert [(t.kind, getattr(t, "cron", None), t.timezone) for t in timings] == [
        ("cron", "0 9 * * *", "Europe/Berlin")
    ]
    assert (spec.tags, spec.description, spec.version) == (["a"], "d", "v1")
    assert (spec.enforce_parameter_schema, spec.paused, spec.catchup) == (False, True, True)
    assert (spec.concurrency_limit, spec.on_shutdown) == (2, "requeue")
    assert basic.add.to_deployment().name == "add", "the name defaults to the flow's"


# -- every SPEC setting is read from its variable -------------------------------------------


def test_every_spec_variable_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    values = {
        "HEADRACE_HOME": str(tmp_path / "elsewhere"),
        "HEADRACE_DATABASE_URL": "postgresql://u@h:5432/db",
        "HEADRACE_RUNNER_SERVER_ENABLE": "true",
        "HEADRACE_RUNNER_SERVER_HOST": "0.0.0.0",
        "HEADRACE_RUNNER_SERVER_PORT": "9191",
        "HEADRACE_RUNNER_SERVER_LOG_LEVEL": "debug",
        "HEADRACE_RUNNER_SERVER_MISSED_POLLS_TOLERANCE": "4",
        "HEADRACE_RUNNER_POLL_FREQUENCY": "2.5",
        "HEADRACE_RUNNER_PROCESS_LIMIT": "9",
        "HEADRACE_RUNNER_BACKLOG_LIMIT": "12",
        "HEADRACE_RUNNER_SHUTDOWN_GRACE_SECONDS": "3",
        "HEADRACE_RUNNER_SERVER_ALLOW_UNMANAGED_FLOWS": "true",
        "HEADRACE_API_KEY": "k3y",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.home == tmp_path / "elsewhere"
    assert settings.resolved_database_url == "postgresql://u@h:5432/db"
    assert settings.runner_server_enable is True
    assert settings.runner_server_host == "0.0.0.0"
    assert settings.runner_server_port == 9191
    assert settings.runner_server_log_level == "debug"
    assert settings.runner_server_missed_polls_tolerance == 4
    assert settings.runner_poll_frequency == 2.5
    assert settings.runner_process_limit == 9
    assert settings.runner_backlog_limit == 12
    assert settings.runner_shutdown_grace_seconds == 3
    assert settings.runner_server_allow_unmanaged_flows is True
    assert settings.api_key == "k3y"


def test_sqlite_default_lives_under_headrace_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("HEADRACE_DATABASE_URL", raising=False)
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path / "h"))
    assert load_settings().resolved_database_url == f"sqlite:///{tmp_path / 'h' / 'headrace.db'}"
