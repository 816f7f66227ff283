"""``headrace run`` and ``headrace runs ls/inspect/logs/cancel/retry/delete``: trigger, watch
and manage runs.

The client, the renderers and the watcher are imported inside the commands, so
``headrace --help`` stays quick.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer

from headrace.cli.consoles import echo_json, stderr, stdout
from headrace.cli.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TIMEOUT,
    UsageProblem,
    reported_errors,
)
from headrace.cli.params import collect_parameters
from headrace.cli.session import command_settings, with_client
from headrace.exceptions import ObjectNotFound

if TYPE_CHECKING:
    from headrace.cli.watch import Follow
    from headrace.client import HeadraceClient
    from headrace.deployments import Deployment
    from headrace.flow_runs import FlowRun
    from headrace.states import State

RUNS_LS_DEFAULT_LIMIT = 20
RUN_EPILOG = (
    "Examples:\n\n"
    "  headrace run hello/daily --param name=world --watch\n\n"
    '  headrace run etl/etl --params \'{"limit": 10, "dry_run": true}\''
)

runs_app = typer.Typer(
    help="List, inspect, follow, cancel, retry and delete flow runs.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

RunIdArgument = Annotated[str, typer.Argument(metavar="ID", help="The flow run's id.")]


# -- run -------------------------------------------------------------------------------------


def run(
    deployment: Annotated[
        str, typer.Argument(metavar="FLOW/DEPLOYMENT", help="The deployment, or its id.")
    ],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", metavar="NAME=VALUE", help="A parameter (JSON or string)."),
    ] = None,
    params: Annotated[
        str | None, typer.Option(metavar="JSON", help="Parameters as a JSON object.")
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Follow state and logs until the run ends.")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(min=0, help="With --watch: stop watching after this many seconds (exit 124)."),
    ] = None,
) -> None:
    """Create a run of a deployment; a runner serving it picks it up.

    Prints the run's id. With --watch the exit code is 0 when the run completes,
    1 when it fails, crashes or is cancelled, and 130 on Ctrl-C (the run goes on).
    """
    from headrace.cli.watch import Follow

    with reported_errors():
        if timeout is not None and not watch:
            raise UsageProblem("--timeout limits --watch: add --watch, or leave --timeout out")
        settings = command_settings()
        parameters = collect_parameters(params, param)
        follow = Follow(timeout_seconds=timeout) if watch else None
        code = _interruptible(
            lambda: with_client(settings, _trigger(deployment, parameters, follow))
        )
    raise typer.Exit(code)


def _trigger(
    ref: str, parameters: dict[str, Any], follow: Follow | None
) -> Callable[[HeadraceClient], Awaitable[int]]:
    async def trigger(client: HeadraceClient) -> int:
        from headrace.cli.output import deployment_label

        deployment = await client.read_deployment_by_ref(ref)
        created = await client.create_flow_run_from_deployment(deployment.id, parameters)
        typer.echo(str(created.id))
        note = f"Created flow run '{created.name}' of {deployment_label(deployment)}."
        if follow is None:
            note += f" Follow it with: headrace runs logs {created.id} --follow"
        stderr().print(note, soft_wrap=True)
        await _warn_unless_served(client, deployment)
        if follow is None:
            return 0
        return await _watch(client, created.id, follow)

    return trigger


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


def _interruptible(fn: Callable[[], int]) -> int:
    """``fn()``, or 130 after Ctrl-C, leaving whatever it watched alone."""
    try:
        return fn()
    except KeyboardInterrupt:
        stderr().print("Stopped watching (Ctrl-C); the flow run carries on.", soft_wrap=True)
        return EXIT_INTERRUPTED


def _run_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise UsageProblem(f"{text!r} is not a flow run id (a UUID)") from None


# -- runs ls ---------------------------------------------------------------------------------


@runs_app.command(
    "ls",
    epilog="Examples:\n\n  headrace runs ls --state failed --state crashed\n\n"
    "  headrace runs ls --deployment hello/daily --limit 50",
)
def runs_ls(
    state: Annotated[
        list[str] | None,
        typer.Option("--state", "-s", help="Only runs in this state (repeatable)."),
    ] = None,
    deployment: Annotated[
        str | None,
        typer.Option(
            "--deployment", "-d", metavar="NAME_OR_ID", help="Only this deployment's runs."
        ),
    ] = None,
    flow: Annotated[str | None, typer.Option(help="Only runs of this flow.")] = None,
    parent: Annotated[
        str | None, typer.Option(metavar="RUN_ID", help="Only the runs this run started.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-l", min=1, max=1000, help="Most runs to show.")
    ] = RUNS_LS_DEFAULT_LIMIT,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List flow runs, newest first."""
    from headrace.cli.output import runs_table

    with reported_errors():
        states = parse_states(state)
        settings = command_settings()
        parent_id = None if parent is None else _run_id(parent)
        read = _runs_and_labels(deployment, flow, states, limit, parent_id)
        runs, names = with_client(settings, read)
    if as_json:
        echo_json([r.model_dump(mode="json") for r in runs])
    elif not runs:
        stderr().print("No flow runs match.")
    else:
        out = stdout()
        out.print(runs_table(runs, names, width=out.width))


def _runs_and_labels(
    deployment: str | None,
    flow: str | None,
    states: list[str] | None,
    limit: int,
    parent_id: UUID | None = None,
) -> Callable[[HeadraceClient], Awaitable[tuple[list[FlowRun], dict[UUID, str]]]]:
    """The matching runs, and every deployment's label by id (for the table's column)."""

    async def read(client: HeadraceClient) -> tuple[list[FlowRun], dict[UUID, str]]:
        from headrace.cli.output import deployment_label

        deployment_id = None
        if deployment is not None:
            deployment_id = (await client.read_deployment_by_ref(deployment)).id
        runs = await client.read_flow_runs(
            deployment_id=deployment_id,
            flow_name=flow,
            states=states,
            limit=limit,
            parent_flow_run_id=parent_id,
        )
        names = {d.id: deployment_label(d) for d in await client.read_deployments()}
        return runs, names

    return read


def parse_states(values: list[str] | None) -> list[str] | None:
    from headrace.states import StateType

    if not values:
        return None
    known = {s.value for s in StateType}
    wrong = [v for v in values if v.upper() not in known]
    if wrong:
        raise UsageProblem(
            f"Unknown state {wrong[0]!r}: expected one of {', '.join(s.lower() for s in known)}"
        )
    return [v.upper() for v in values]


# -- runs inspect / logs / cancel --------------------------------------------------------------


@runs_app.command("inspect", epilog="Example: headrace runs inspect 0b6f3c2e-...")
def runs_inspect(
    flow_run_id: RunIdArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a flow run: state history, parameters, result, parent and child runs."""
    from headrace.cli.output import run_detail
    from headrace.cli.run_family import children_of, family_detail

    with reported_errors():
        run_id = _run_id(flow_run_id)
        settings = command_settings()
        found, history, names = with_client(settings, _run_with_history(run_id))
        children = with_client(settings, children_of(run_id))
    if as_json:
        data = found.model_dump(mode="json")
        data["state_history"] = [s.model_dump(mode="json") for s in history]
        data["child_flow_runs"] = [c.model_dump(mode="json") for c in children]
        echo_json(data)
    else:
        stdout().print(run_detail(found, history, names), family_detail(found, children))


def _run_with_history(
    run_id: UUID,
) -> Callable[[HeadraceClient], Awaitable[tuple[FlowRun, list[State], dict[UUID, str]]]]:
    """The run, its state history, and its deployment's label (when it still exists)."""

    async def read(client: HeadraceClient) -> tuple[FlowRun, list[State], dict[UUID, str]]:
        from headrace.cli.output import deployment_label

        found = await client.read_flow_run(run_id)
        history = await client.read_state_history(run_id)
        names: dict[UUID, str] = {}
        if found.deployment_id is not None:
            with contextlib.suppress(ObjectNotFound):
                d = await client.read_deployment(found.deployment_id)
                names[d.id] = deployment_label(d)
        return found, history, names

    return read


@runs_app.command("logs", epilog="Example: headrace runs logs 0b6f3c2e-... --follow")
def runs_logs(
    flow_run_id: RunIdArgument,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until the run ends.")
    ] = False,
) -> None:
    """Print a flow run's logs."""
    from headrace.cli.watch import Follow, follow_run, print_logs

    async def show(client: HeadraceClient) -> int:
        out = stdout()
        if follow:
            await follow_run(client, run_id, out, Follow(show_states=False, spinner=False))
        elif not await print_logs(client, run_id, out):
            stderr().print("No logs for this flow run (yet).")
        return 0

    with reported_errors():
        run_id = _run_id(flow_run_id)
        settings = command_settings()
        code = _interruptible(lambda: with_client(settings, show))
    raise typer.Exit(code)


@runs_app.command("cancel", epilog="Example: headrace runs cancel 0b6f3c2e-...")
def runs_cancel(flow_run_id: RunIdArgument) -> None:
    """Cancel a flow run: at once if it has not started, else its runner kills it."""
    from headrace.states import StateType

    with reported_errors():
        run_id = _run_id(flow_run_id)
        settings = command_settings()
        cancelled = with_client(settings, lambda client: client.cancel_flow_run(run_id))
    if cancelled.state.type == StateType.CANCELLED:
        stdout().print(f"Cancelled flow run '{cancelled.name}' before it started.")
    else:
        stdout().print(
            f"Cancelling flow run '{cancelled.name}': its runner stops the process and "
            "records CANCELLED."
        )


@runs_app.command("retry", epilog="Example: headrace runs retry 0b6f3c2e-...")
def runs_retry(flow_run_id: RunIdArgument) -> None:
    """Create a new run like an ended one: same deployment (or flow), same parameters.

    Prints the new run's id.
    """
    with reported_errors():
        run_id = _run_id(flow_run_id)
        settings = command_settings()
        created = with_client(settings, lambda client: client.retry_flow_run(run_id))
    typer.echo(str(created.id))
    stderr().print(
        f"Created flow run '{created.name}'. Follow it with: headrace runs logs {created.id} -f",
        soft_wrap=True,
        markup=False,
    )


@runs_app.command("delete", epilog="Example: headrace runs delete 0b6f3c2e-... --yes")
def runs_delete(
    flow_run_id: RunIdArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete an ended flow run with its state history and logs."""
    with reported_errors():
        run_id = _run_id(flow_run_id)
        settings = command_settings()
        found = with_client(settings, lambda client: client.read_flow_run(run_id))
        if not yes:
            typer.confirm(f"Delete flow run '{found.name}' and its logs?", abort=True)
        with_client(settings, lambda client: client.delete_flow_run(run_id))
    stdout().print(f"Deleted flow run '{found.name}'.", soft_wrap=True, markup=False)
