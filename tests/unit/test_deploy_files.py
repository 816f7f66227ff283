"""The service files in ``deploy/`` stop a runner the way Ctrl-C does, after its grace period;
the Dockerfile and the compose file run real commands and probe real routes."""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

import headrace.store as store_module
from headrace.cli import app
from headrace.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CLOSE_MARGIN_SECONDS = 10
"""At least this long past the grace period for the runner to record the runs' ends."""


def grace_in(text: str) -> float:
    settings = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    match = re.search(r"HEADRACE_RUNNER_SHUTDOWN_GRACE_SECONDS\D{0,12}?(\d+)", settings)
    assert match, "the file sets the grace period it is tuned to"
    return float(match[1])


def test_the_systemd_unit_signals_only_the_runner_and_waits_out_its_grace() -> None:
    text = (DEPLOY / "headrace.service").read_text()
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment, method-assign]
    unit.read_string(text)
    service = unit["Service"]
    assert service["KillMode"] == "mixed", "SIGTERM to the runner only, as Ctrl-C"
    assert service["Restart"] == "on-failure"
    grace = grace_in(text)
    assert grace == Settings().runner_shutdown_grace_seconds
    assert float(service["TimeoutStopSec"]) >= grace + CLOSE_MARGIN_SECONDS


def test_kubernetes_and_docker_wait_out_the_grace_period() -> None:
    for name, key in [
        ("kubernetes.yaml", r"terminationGracePeriodSeconds: (\d+)"),
        ("docker-compose.yaml", r"stop_grace_period: (\d+)s"),
    ]:
        text = (DEPLOY / name).read_text()
        match = re.search(key, text)
        assert match, name
        assert float(match[1]) >= grace_in(text) + CLOSE_MARGIN_SECONDS, name


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) for each instruction of deploy/Dockerfile, continuations joined."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    pairs = [line.partition(" ")[::2] for line in lines if line and not line.startswith("#")]
    return [(word.upper(), rest.strip()) for word, rest in pairs]


def compose_services() -> dict[str, dict[str, Any]]:
    services = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())["services"]
    assert isinstance(services, dict)
    return services


def cli_command(argv: list[str]) -> list[str]:
    """The headrace command an argv names (``["db", "upgrade"]``), checked to exist."""
    assert argv[0] == "headrace", argv
    words = [w for w in argv[1:3] if not w.startswith("-") and ":" not in w and "/" not in w]
    if words and words[0] == "ui" and "ui" not in _commands(app):
        pytest.skip("`headrace ui` is not a command of this build")
    group: typer.Typer | None = app
    for word in words:
        assert group is not None, f"{argv}: {word!r} after a command"
        commands = _commands(group)
        assert word in commands, f"{argv}: no command {word!r} (has {sorted(commands)})"
        group = commands[word]
    return words


def _commands(group: typer.Typer) -> dict[str, typer.Typer | None]:
    found: dict[str, typer.Typer | None] = {}
    for command in group.registered_commands:
        assert command.callback is not None
        found[command.name or command.callback.__name__.replace("_", "-")] = None
    for sub in group.registered_groups:
        assert sub.name is not None and sub.typer_instance is not None
        found[sub.name] = sub.typer_instance
    return found


def probed_paths(check: list[str]) -> list[str]:
    return re.findall(r"http://127\.0\.0\.1:8080(/[a-z_/]*)", " ".join(check))


def test_the_dockerfile_installs_headrace_and_serves_the_example_flow() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    installs = [rest for word, rest in instructions if word == "RUN" and "pip install" in rest]
    assert installs == ['pip install ".[fast]"']
    (cmd,) = [json.loads(rest) for word, rest in instructions if word == "CMD"]  # exec form
    assert cli_command(cmd) == ["serve"]
    entrypoint = cmd[2]
    assert (DEPLOY.parent / entrypoint.partition(":")[0]).is_file(), entrypoint
    assert ("STOPSIGNAL", "SIGTERM") in instructions
    (health,) = [rest for word, rest in instructions if word == "HEALTHCHECK"]
    assert probed_paths([health]) == ["/health"]  # a route: see the compose test
    assert "USER" in dict(instructions), "runs do not execute as root"


def test_compose_runs_two_runners_and_the_dashboard_on_postgresql() -> None:
    services = compose_services()
    commands = {name: s["command"] for name, s in services.items() if "command" in s}
    assert commands["migrate"] == ["headrace", "db", "upgrade"]
    runners = [name for name, argv in commands.items() if argv[:2] == ["headrace", "serve"]]
    assert len(runners) == 2
    assert ["headrace", "ui"] in [argv[:2] for argv in commands.values()]
    for name in commands:
        service = services[name]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile", name
        assert service["environment"]["HEADRACE_DATABASE_URL"].startswith("postgresql://")
        assert service["init"] is True, name
    assert services["db"]["image"].startswith("postgres:")


@pytest.mark.parametrize("name", ["migrate", "runner-1", "runner-2", "ui"])
def test_compose_commands_are_real_cli_commands(name: str) -> None:
    assert cli_command(compose_services()[name]["command"])


async def test_compose_healthchecks_probe_real_routes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from headrace.runner import Runner
    from headrace.runner.server import build_server
    from headrace.store import migrate

    # In this process, even after an in-process `headrace serve` test tuned it.
    monkeypatch.setattr(migrate, "_in_child", False)

    settings = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'headrace.db'}")
    try:
        server = await build_server(Runner(settings=settings, handle_signals=False))
    finally:
        opened = store_module._stores.pop(settings.resolved_database_url, None)
        if opened is not None:
            opened.close()
    routes = {getattr(route, "path", "") for route in server.routes}  # `headrace ui`'s too
    probed = {
        name: probed_paths(service["healthcheck"]["test"])
        for name, service in compose_services().items()
        if name != "db" and "healthcheck" in service
    }
    assert probed["runner-1"] == probed["runner-2"] == ["/ready"]
    assert probed["ui"] == ["/health"]
    assert {path for paths in probed.values() for path in paths} <= routes
