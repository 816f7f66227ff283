"""``headrace deployments ls/inspect/pause/resume/delete``: what the runners serve, by flow
and name, and changing it from the outside.

The client and the renderers are imported inside the commands, so
``headrace --help`` stays quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from headrace.cli.completion import complete_deployments
from headrace.cli.consoles import echo_json, stderr, stdout
from headrace.cli.errors import reported_errors
from headrace.cli.session import command_settings, with_client

if TYPE_CHECKING:
    from uuid import UUID

    from headrace.client import HeadraceClient, ServingRunner
    from headrace.deployments import Deployment
    from headrace.flow_runs import FlowRun

Serving = dict["UUID", list["ServingRunner"]]
"""The runners serving each deployment, by its id."""

RECENT_RUNS = 5
"""How many of a deployment's newest runs ``deployments inspect`` shows."""

deployments_app = typer.Typer(
    help="List, inspect, pause, resume and delete deployments.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

DeploymentArgument = Annotated[
    str,
    typer.Argument(
        metavar="NAME_OR_ID", help="flow/deployment or id.", autocompletion=complete_deployments
    ),
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


@deployments_app.command("ls", epilog="Example: headrace deployments ls")
def deployments_ls(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List deployments, by flow and name."""
    from headrace.cli.output import deployments_table

    async def read(client: HeadraceClient) -> tuple[list[Deployment], Serving]:
        return await client.read_deployments(), await client.read_serving_runners()

    with reported_errors():
        settings = command_settings()
        deployments, runners = with_client(settings, read)
    if as_json:
        echo_json([_with_runners(d, runners.get(d.id, [])) for d in deployments])
    elif not deployments:
        stderr().print("No deployments yet: start one with `headrace serve PATH:FUNC`.")
    else:
        out = stdout()
        out.print(deployments_table(deployments, runners, width=out.width))


@deployments_app.command("inspect", epilog="Example: headrace deployments inspect hello/daily")
def deployments_inspect(
    deployment: DeploymentArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a deployment: schedules, parameters, the runners serving it and recent runs."""
    from headrace.cli.output import deployment_detail

    async def read(
        client: HeadraceClient,
    ) -> tuple[Deployment, list[FlowRun], list[ServingRunner]]:
        found = await client.read_deployment_by_ref(deployment)
        runs = await client.read_flow_runs(deployment_id=found.id, limit=RECENT_RUNS)
        runners = await client.read_serving_runners([found.id])
        return found, runs, runners.get(found.id, [])

    with reported_errors():
        settings = command_settings()
        found, runs, runners = with_client(settings, read)
    if as_json:
        echo_json(_with_runners(found, runners))
    else:
        out = stdout()
        out.print(deployment_detail(found, runs, runners, width=out.width))


@deployments_app.command("pause", epilog="Example: headrace deployments pause hello/daily")
def deployments_pause(deployment: DeploymentArgument) -> None:
    """Pause a deployment's schedules: its planned runs are dropped, none start until resumed.

    Runs triggered by hand still run. Its runners follow at their next poll.
    """
    _set_paused(deployment, True)


@deployments_app.command("resume", epilog="Example: headrace deployments resume hello/daily")
def deployments_resume(deployment: DeploymentArgument) -> None:
    """Resume a paused deployment's schedules, from now on (missed times are not caught up)."""
    _set_paused(deployment, False)


def _set_paused(ref: str, paused: bool) -> None:
    from headrace.cli.output import deployment_label

    async def change(client: HeadraceClient) -> Deployment:
        found = await client.read_deployment_by_ref(ref)
        return await client.set_deployment_paused(found.id, paused)

    with reported_errors():
        settings = command_settings()
        changed = with_client(settings, change)
    verb = "Paused" if paused else "Resumed"
    stdout().print(f"{verb} {deployment_label(changed)}.", soft_wrap=True, markup=False)


@deployments_app.command("delete", epilog="Example: headrace deployments delete hello/daily --yes")
def deployments_delete(deployment: DeploymentArgument, yes: YesOption = False) -> None:
    """Delete a deployment and its queued runs; its ended runs stay readable.

    Refused while a live runner serves it or one of its runs is being executed:
    stop the runner (or remove the deployment from it) first.
    """
    from headrace.cli.output import deployment_label

    async def find(client: HeadraceClient) -> Deployment:
        return await client.read_deployment_by_ref(deployment)

    with reported_errors():
        settings = command_settings()
        found = with_client(settings, find)
        label = deployment_label(found)
        if not yes:
            typer.confirm(f"Delete deployment {label}?", abort=True)
        removed = with_client(settings, lambda client: client.delete_deployment(found.id))
    stdout().print(
        f"Deleted deployment {label} and {removed} queued run(s).", soft_wrap=True, markup=False
    )


def _with_runners(deployment: Deployment, runners: list[ServingRunner]) -> dict[str, Any]:
    """The deployment as JSON, with the runners serving it."""
    data = deployment.model_dump(mode="json")
    data["runners"] = [runner.model_dump(mode="json") for runner in runners]
    return data
