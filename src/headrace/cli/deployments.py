"""``headrace deployments ls/inspect``: what the runners serve, by flow and name.

The client and the renderers are imported inside the commands, so
``headrace --help`` stays quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from headrace.cli.consoles import echo_json, stderr, stdout
from headrace.cli.errors import reported_errors
from headrace.cli.session import command_settings, with_client

if TYPE_CHECKING:
    from headrace.client import HeadraceClient
    from headrace.deployments import Deployment
    from headrace.flow_runs import FlowRun

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

    with reported_errors():
        settings = command_settings()
        deployments = with_client(settings, lambda client: client.read_deployments())
    if as_json:
        echo_json([d.model_dump(mode="json") for d in deployments])
    elif not deployments:
        stderr().print("No deployments yet: start one with `headrace serve PATH:FUNC`.")
    else:
        out = stdout()
        out.print(deployments_table(deployments, width=out.width))


@deployments_app.command("inspect", epilog="Example: headrace deployments inspect hello/daily")
def deployments_inspect(
    deployment: Annotated[str, typer.Argument(metavar="NAME_OR_ID", help="flow/deployment or id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a deployment: schedules, parameters and recent runs."""
    from headrace.cli.output import deployment_detail

    async def read(client: HeadraceClient) -> tuple[Deployment, list[FlowRun]]:
        found = await client.read_deployment_by_ref(deployment)
        return found, await client.read_flow_runs(deployment_id=found.id, limit=RECENT_RUNS)

    with reported_errors():
        settings = command_settings()
        found, runs = with_client(settings, read)
    if as_json:
        echo_json(found.model_dump(mode="json"))
    else:
        out = stdout()
        out.print(deployment_detail(found, runs, width=out.width))
