"""``headrace deployments ls/inspect``: what the runners serve, by flow and name.

The client and the renderers are imported inside the commands, so
``headrace --help`` stays quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

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
    help="List and inspect deployments.", no_args_is_help=True, rich_markup_mode="rich"
)


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
    deployment: Annotated[str, typer.Argument(metavar="NAME_OR_ID", help="flow/deployment or id.")],
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


def _with_runners(deployment: Deployment, runners: list[ServingRunner]) -> dict[str, Any]:
    """The deployment as JSON, with the runners serving it."""
    data = deployment.model_dump(mode="json")
    data["runners"] = [runner.model_dump(mode="json") for runner in runners]
    return data
