"""``headrace run`` and ``headrace runs ls/inspect/logs/cancel/retry/delete``: trigger, watch
and manage runs.

The client, the renderers and the watcher are imported inside the commands, so
``headrace --help`` stays quick.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer

from headrace.cli.completion import complete_deployments, complete_runs
from headrace.cli.consoles import echo_json, stderr, stdout
from headrace.cli.errors import (
    EXIT_INTERRUPTED,
    UsageProblem,
    reported_errors,
)
from headrace.cli.session import command_settings, with_client
from headrace.exceptions import ObjectNotFound

if TYPE_CHECKING:
    from headrace.client import HeadraceClient
    from headrace.flow_runs import FlowRun
    from headrace.states import State, StateType

RUNS_LS_DEFAULT_LIMIT = 20
runs_app = typer.Typer(
    help="List, inspect, follow, cancel, retry and delete flow runs.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

RunIdArgument = Annotated[
    str, typer.Argument(metavar="ID", help="The flow run's id.", autocompletion=complete_runs)
]


def interruptible(fn: Callable[[], int]) -> int:
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
    "  headrace runs ls --deployment hello/daily --limit 50\n\n"
    "  headrace runs ls --since 2h --until 2026-12-07T09:00",
)
def runs_ls(
    state: Annotated[
        list[str] | None,
        typer.Option("--state", "-s", help="Only runs in this state (repeatable)."),
    ] = None,
    deployment: Annotated[
        str | None,
        typer.Option(
            "--deployment",
            "-d",
            metavar="NAME_OR_ID",
            help="Only this deployment's runs.",
            autocompletion=complete_deployments,
        ),
    ] = None,
    flow: Annotated[str | None, typer.Option(help="Only runs of this flow.")] = None,
    since: Annotated[str | None, typer.Option(metavar="TIME", help=SINCE_HELP)] = None,
    until: Annotated[str | None, typer.Option(metavar="TIME", help=UNTIL_HELP)] = None,
    parent: Annotated[str | None, typer.Option(metavar="RUN_ID", help=PARENT_HELP)] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-l", min=1, max=1000, help="Most runs to show.")
    ] = RUNS_LS_DEFAULT_LIMIT,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List flow runs, newest first, and how many match in all, by state."""
    from headrace.cli.output import runs_table
    from headrace.cli.times import parse_time_or_ago
    from headrace.states import utcnow

    with reported_errors():
        now = utcnow()
        query = RunQuery(
            deployment,
            flow,
            parse_states(state),
            None if since is None else parse_time_or_ago(since, "--since", now),
            None if until is None else parse_time_or_ago(until, "--until", now),
            limit,
            None if parent is None else _run_id(parent),
        )
        settings = command_settings()
        runs, names, totals = with_client(settings, query.read)
    if as_json:
        echo_json([r.model_dump(mode="json") for r in runs])
    elif not runs:
        stderr().print("No flow runs match.")
    else:
        out = stdout()
        out.print(runs_table(runs, names, width=out.width))
        out.print(totals_line(totals, shown=len(runs)), soft_wrap=True)


SINCE_HELP = "Only runs created since then: 2026-12-07T08:00, or 2h (ago)."
UNTIL_HELP = "Only runs created before then: a time, or a duration ago."
PARENT_HELP = "Only the runs this run started (its subflows, its run_deployment runs)."


@dataclass(frozen=True)
class RunQuery:
    """The runs ``runs ls`` lists: filters, and how many to show."""

    deployment: str | None
    flow: str | None
    states: list[str] | None
    since: datetime | None
    until: datetime | None
    limit: int
    parent: UUID | None = None

    async def read(
        self, client: HeadraceClient
    ) -> tuple[list[FlowRun], dict[UUID, str], dict[StateType, int]]:
        """The matching runs, every deployment's label by id (for the table's column), and
        how many runs match in all, by state."""
        from headrace.cli.output import deployment_label

        deployment_id = None
        if self.deployment is not None:
            deployment_id = (await client.read_deployment_by_ref(self.deployment)).id
        filters: dict[str, Any] = {
            "deployment_id": deployment_id,
            "flow_name": self.flow,
            "states": self.states,
            "since": self.since,
            "until": self.until,
            "parent_flow_run_id": self.parent,
        }
        runs = await client.read_flow_runs(**filters, limit=self.limit)
        totals = await client.count_flow_runs(**filters) if runs else {}
        names = {d.id: deployment_label(d) for d in await client.read_deployments()}
        return runs, names, totals


def totals_line(totals: Mapping[StateType, int], *, shown: int) -> str:
    """``42 runs: 40 completed, 2 failed``, and how many of them the page shows."""
    from headrace.states import StateType

    total = sum(totals.values())
    counts = ", ".join(
        f"{totals[state]} {state.value.lower()}" for state in StateType if totals.get(state)
    )
    line = f"{total} run{'s' * (total != 1)}: {counts}"
    if shown < total:
        line += f" (the newest {shown} shown; --limit shows more)"
    return line


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
    """Show a flow run: state history, parameters, result, parent and child runs, task runs."""
    from headrace.cli.output import run_detail
    from headrace.cli.run_family import children_of, family_detail
    from headrace.cli.task_runs import task_runs_of, task_runs_table

    with reported_errors():
        run_id = _run_id(flow_run_id)
        settings = command_settings()
        found, history, names = with_client(settings, _run_with_history(run_id))
        children = with_client(settings, children_of(run_id))
        task_runs = with_client(settings, task_runs_of(run_id))
    if as_json:
        data = found.model_dump(mode="json")
        data["state_history"] = [s.model_dump(mode="json") for s in history]
        data["child_flow_runs"] = [c.model_dump(mode="json") for c in children]
        data["task_runs"] = [t.model_dump(mode="json") for t in task_runs]
        echo_json(data)
    else:
        stdout().print(run_detail(found, history, names), family_detail(found, children))
        if task_runs:
            stdout().print()
            stdout().print(task_runs_table(task_runs))


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
        code = interruptible(lambda: with_client(settings, show))
    raise typer.Exit(code)


@runs_app.command("cancel", epilog="Example: headrace runs cancel 0b6f3c2e-...")
def runs_cancel(flow_run_id: RunIdArgument) -> None:
    """Cancel a flow run: at once if it has not started, else its runner kills it."""
    from headrace.states import StateType

    with reported_errors():
        run_id = _run_id(flow_run_id)
        settings = command_settings()
        cancelled = with_client(settings, lambda client: client.cancel_flow_run(run_id))
    name = cancelled.name
    subflow = cancelled.parent_flow_run_id is not None and cancelled.deployment_id is None
    message = cancelled.state.message or ""
    if cancelled.state.type == StateType.CANCELLED and message.startswith("Cancelled: its runner"):
        stdout().print(f"Cancelled flow run '{name}' at once: {message[len('Cancelled: ') :]}.")
    elif cancelled.state.type == StateType.CANCELLED and cancelled.run_count:
        stdout().print(f"Cancelled flow run '{name}' while it waited to run again.")
    elif cancelled.state.type == StateType.CANCELLED:
        stdout().print(f"Cancelled flow run '{name}' before it started.")
    elif subflow:
        stdout().print(
            f"Cancelling flow run '{name}': its caller's process stops it, and the call "
            "raises FlowRunCancelled."
        )
    else:
        stdout().print(
            f"Cancelling flow run '{name}': its runner stops the process and records CANCELLED."
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
