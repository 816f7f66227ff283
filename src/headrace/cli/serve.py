"""What ``headrace serve`` does once its options are read: load, register, serve, drain.

The flow is loaded in this process (so a bad entrypoint is reported before
anything starts), registered under an absolute entrypoint (so the runner's
child processes find it from any directory), and served by a ``Runner`` until
SIGTERM or Ctrl-C, which drain it gracefully.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

from headrace.cli.errors import UsageProblem
from headrace.settings import Settings
from headrace.submission import runner_url

if TYPE_CHECKING:
    from headrace.deployments import Deployment, DeploymentOptions, RunnerDeployment
    from headrace.notifications import Notify
    from headrace.runner import Runner
    from headrace.schedules import DeploymentSchedule


def schedules_from_options(
    cron: str | None, interval: float | None, rrule: str | None, timezone: str | None
) -> list[DeploymentSchedule]:
    """The schedule the options describe (at most one), or a usage error naming the problem."""
    from pydantic import ValidationError

    from headrace.deployments import describe_invalid
    from headrace.schedules import construct_schedule

    options = {"--cron": cron, "--interval": interval, "--rrule": rrule}
    given = [flag for flag, value in options.items() if value is not None]
    if len(given) > 1:
        raise UsageProblem(
            f"Give at most one of --cron, --interval, --rrule (got {', '.join(given)})"
        )
    if timezone is not None and not given:
        raise UsageProblem("--timezone needs --cron, --interval or --rrule")
    try:
        schedule = construct_schedule(cron=cron, interval=interval, rrule=rrule, timezone=timezone)
    except ValidationError as exc:
        raise UsageProblem(describe_invalid(exc)) from None
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None
    return [] if schedule is None else [schedule]


def notify_from_options(
    urls: list[str] | None, states: list[str] | None, secret: str | None
) -> list[Notify | str | dict[str, Any]]:
    """The webhooks ``--notify`` (with ``--notify-on``, ``--notify-secret``) describes."""
    from headrace.notifications import notify_targets

    if not urls:
        if states or secret:
            raise UsageProblem("--notify-on and --notify-secret need --notify URL")
        return []
    extra: dict[str, Any] = {"secret": secret} if secret else {}
    if states:
        extra["states"] = states
    try:
        return list(notify_targets([{"url": url, **extra} for url in urls]))
    except ValueError as exc:
        raise UsageProblem(f"--notify: {exc}") from None


@dataclass(frozen=True)
class ToServe:
    """One deployment to serve: the flow's entrypoint, its name, options and run policy."""

    entrypoint: str
    name: str | None
    options: DeploymentOptions
    policy: dict[str, float | None] = field(default_factory=dict)
    """``retries``, ``retry_delay_seconds``, ``timeout_seconds`` replacing the flow's own."""
    origin: str | None = None
    """Where the project file describes it (``headrace.toml: deployment "etl"``); None if given
    on the command line."""


async def serve_entrypoints(
    settings: Settings, served: list[ToServe], *, webserver: bool, console: Console
) -> None:
    """Serve each flow as a deployment, from one runner, until stopped.

    Every flow is loaded and checked before anything is stored, so a bad one
    leaves the store as it was.
    """
    from headrace.runner.console import RunConsole, say_line
    from headrace.runner.serving import runner_for_serving, serve_until_stopped

    deployments = [_deployment(entry) for entry in served]
    runner = runner_for_serving(settings=settings, webserver=webserver)
    ids = [await runner.add_deployment(deployment) for deployment in deployments]
    as_records = settings.log_format == "json"
    runner.observers.append(
        RunConsole(runner.deployments, write=plain(console), as_records=as_records)
    )

    def ready() -> None:  # the port is known once it listens
        for number, deployment_id in enumerate(ids, start=1):
            deployment = runner.deployments[deployment_id]
            last = number == len(ids)
            line = banner(runner, deployment, webserver=runner.webserver, last=last)
            if as_records:
                say_line(line.plain, as_record=True)
            else:
                console.print(line)

    await serve_until_stopped(runner, ready, freeze_heap=True)


def _deployment(entry: ToServe) -> RunnerDeployment:
    """The flow ``entry`` names, loaded here, as a deployment checked now."""
    from headrace.cli.projects import described_at
    from headrace.entrypoints import (
        absolute_entrypoint,
        is_file_entrypoint,
        load_flow_from_entrypoint,
    )

    with described_at(entry.origin):
        if not is_file_entrypoint(entry.entrypoint) and str(Path.cwd()) not in sys.path:
            sys.path.insert(
                0, str(Path.cwd())
            )  # `module:func` from the working directory, as -m does
        flow = load_flow_from_entrypoint(entry.entrypoint)
        policy = {key: value for key, value in entry.policy.items() if value is not None}
        if policy:  # the deployment's own retries and timeout; the flow object stays as it is
            flow = copy.copy(flow)
            vars(flow).update(policy)
        options: DeploymentOptions = {
            **entry.options,
            "entrypoint": absolute_entrypoint(entry.entrypoint),
        }
        return flow.to_deployment(entry.name, **options)


def plain(console: Console) -> Callable[[str], None]:
    """Print a line as it is: run names and error messages are no markup."""

    def write(line: str) -> None:
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    return write


def banner(runner: Runner, deployment: Deployment, *, webserver: bool, last: bool = True) -> Text:
    """One line: what is served, how to trigger it, and (on the ``last`` line) how to stop."""
    from headrace.cli.output import deployment_label, describe_schedules

    label = deployment_label(deployment)
    text = Text.assemble("Serving ", (label, "bold"), f" ({deployment.id})")
    if deployment.schedules:
        text.append(f" · {describe_schedules(deployment)}")
    if webserver:
        url = f"{runner_url(runner.settings)}/deployment/{deployment.id}/run"
        text.append(" · trigger: POST ").append(url, style="cyan")
    else:
        text.append(f" · trigger: headrace run {label}")
    if last:
        text.append(" · Ctrl-C to stop", style="dim")
    return text
