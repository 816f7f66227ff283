"""``headrace run``: create a run of a deployment, now or for later, and optionally watch it.

The client and the watcher are imported inside the command, so ``headrace --help``
stays quick.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer

from headrace.cli.completion import complete_deployments
from headrace.cli.consoles import stderr, stdout
from headrace.cli.errors import EXIT_FAILED, EXIT_TIMEOUT, UsageProblem, reported_errors
from headrace.cli.params import collect_parameters
from headrace.cli.runs import interruptible
from headrace.cli.session import command_settings, with_client

if TYPE_CHECKING:
    from headrace.cli.watch import Follow
    from headrace.client import HeadraceClient
    from headrace.deployments import Deployment
    from headrace.flow_runs import FlowRun

RUN_EPILOG = (
    "Examples:\n\n"
    "  headrace run hello/daily --param name=world --watch\n\n"
    '  headrace run etl/etl --params \'{"limit": 10, "dry_run": true}\'\n\n'
    "  headrace run etl/etl --in 2h --idempotency-key etl-2026-12-07"
)


@dataclass(frozen=True)
class Wanted:
    """The run to create: its parameters, name, start time and idempotency key."""

    parameters: dict[str, Any]
    name: str | None = None
    at: datetime | None = None
    idempotency_key: str | None = None


DeploymentArgument = Annotated[
    str,
    typer.Argument(
        metavar="FLOW/DEPLOYMENT",
        help="The deployment, or its id.",
        autocompletion=complete_deployments,
    ),
]
ParamOption = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", metavar="NAME=VALUE", help="A parameter (JSON or string)."),
]
ParamsOption = Annotated[
    str | None, typer.Option(metavar="JSON", help="Parameters as a JSON object.")
]
AtOption = Annotated[
    str | None,
    typer.Option(
        "--at", metavar="TIME", help="Start it then: 2026-12-08T02:00 (local unless zoned)."
    ),
]
InOption = Annotated[
    str | None,
    typer.Option("--in", metavar="DURATION", help="Start it this long from now: 10m, 2h, 1d."),
]
RunNameOption = Annotated[
    str | None, typer.Option("--name", help="The run's name \\[default: a generated one].")
]
IdempotencyKeyOption = Annotated[
    str | None,
    typer.Option(metavar="KEY", help="Create it once: the same key gives back the run it created."),
]
WatchOption = Annotated[
    bool, typer.Option("--watch", "-w", help="Follow state and logs until the run ends.")
]
TimeoutOption = Annotated[
    float | None,
    typer.Option(min=0, help="With --watch: stop watching after this many seconds (exit 124)."),
]


def run(
    deployment: DeploymentArgument,
    param: ParamOption = None,
    params: ParamsOption = None,
    at: AtOption = None,
    in_: InOption = None,
    name: RunNameOption = None,
    idempotency_key: IdempotencyKeyOption = None,
    watch: WatchOption = False,
    timeout: TimeoutOption = None,
) -> None:
    """Create a run of a deployment; a runner serving it picks it up (at --at/--in, if given).

    Prints the run's id. With --watch the exit code is 0 when the run completes,
    1 when it fails, crashes or is cancelled, and 130 on Ctrl-C (the run goes on).
    """
    from headrace.cli.watch import Follow

    with reported_errors():
        if timeout is not None and not watch:
            raise UsageProblem("--timeout limits --watch: add --watch, or leave --timeout out")
        wanted = Wanted(
            collect_parameters(params, param), name, start_time(at, in_), idempotency_key
        )
        settings = command_settings()
        follow = Follow(timeout_seconds=timeout) if watch else None
        code = interruptible(lambda: with_client(settings, _trigger(deployment, wanted, follow)))
    raise typer.Exit(code)


def start_time(at: str | None, in_: str | None) -> datetime | None:
    """When the run should start: ``--at`` a time or ``--in`` a duration from now (None: now)."""
    from headrace.cli.times import parse_time, shifted
    from headrace.states import utcnow

    if at is not None and in_ is not None:
        raise UsageProblem("Give --at or --in, not both")
    now = utcnow()
    if in_ is not None:
        return shifted(now, in_, "--in", 1)
    if at is None:
        return None
    when = parse_time(at, "--at", now)
    if when < now:
        raise UsageProblem(f"--at {at!r} is in the past ({when.isoformat(timespec='seconds')})")
    return when


def _trigger(
    ref: str, wanted: Wanted, follow: Follow | None
) -> Callable[[HeadraceClient], Awaitable[int]]:
    async def trigger(client: HeadraceClient) -> int:
        from headrace.states import utcnow

        asked = utcnow()
        deployment = await client.read_deployment_by_ref(ref)
        created = await client.create_flow_run_from_deployment(
            deployment.id,
            wanted.parameters,
            wanted.idempotency_key,
            name=wanted.name,
            expected_start_time=wanted.at,
        )
        typer.echo(str(created.id))
        note = _note(created, deployment, wanted, asked, follow)
        stderr().print(note, soft_wrap=True, markup=False)
        await _warn_unless_served(client, deployment)
        if follow is None:
            return 0
        return await _watch(client, created.id, follow)

    return trigger


def _note(
    run: FlowRun, deployment: Deployment, wanted: Wanted, asked: datetime, follow: Follow | None
) -> str:
    """What was created (or found by its key), when it starts, and how to follow it."""
    from headrace.cli.output import deployment_label

    found = wanted.idempotency_key is not None and run.created < asked
    verb = "Found (by its idempotency key)" if found else "Created"
    note = f"{verb} flow run '{run.name}' of {deployment_label(deployment)}"
    if wanted.at is not None and run.expected_start_time is not None:
        starts = run.expected_start_time.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
        note += f", to start at {starts}"
    note += "."
    if follow is None:
        note += f" Follow it with: headrace runs logs {run.id} --follow"
    return note


async def _warn_unless_served(client: HeadraceClient, deployment: Deployment) -> None:
    """Say so when no live runner serves the deployment: else the run just sits there."""
    from headrace.cli.output import deployment_label

    runners = (await client.read_serving_runners([deployment.id])).get(deployment.id, [])
    if any(runner.alive for runner in runners):
        return
    serve = f"headrace serve {deployment.entrypoint or 'PATH:FUNC'} --name {deployment.name}"
    stderr().print(
        f"No runner serving {deployment_label(deployment)} is alive: the run waits until "
        f"one starts ({serve}, or the program that serves it).",
        style="yellow",
        soft_wrap=True,
        markup=False,
    )


async def _watch(client: HeadraceClient, flow_run_id: UUID, follow: Follow) -> int:
    from headrace.cli.output import final_line
    from headrace.cli.watch import follow_run
    from headrace.states import StateType

    out = stdout()
    ended = await follow_run(client, flow_run_id, out, follow)
    if ended is None:
        stderr().print(
            f"Stopped watching after {follow.timeout_seconds:g}s; the flow run carries on.",
            soft_wrap=True,
        )
        return EXIT_TIMEOUT
    out.print(final_line(ended), soft_wrap=True)
    return 0 if ended.state.type == StateType.COMPLETED else EXIT_FAILED
