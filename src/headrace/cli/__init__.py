"""The ``headrace`` command line: serve a flow, trigger and watch runs, inspect and cancel them.

Settings are read once per command, at this edge, and passed down. User errors
(an unknown deployment, a bad parameter or setting, an unreachable database:
any ``HeadraceError``) print one red line on stderr and exit 1; malformed
options exit 2. The runner, the client and the renderers are imported inside
the commands, so ``headrace --help`` stays quick.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import Awaitable, Callable, Iterator
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar
from uuid import UUID

import typer
from rich.console import Console
from rich.text import Text

from headrace.cli.params import UsageProblem, collect_parameters
from headrace.exceptions import HeadraceError, ObjectNotFound, ParameterValidationError
from headrace.settings import Settings, load_settings

if TYPE_CHECKING:
    from headrace.cli.watch import Follow
    from headrace.client import HeadraceClient
    from headrace.deployments import Deployment, DeploymentOptions

T = TypeVar("T")

EXIT_FAILED = 1
"""A user error, or a watched run that did not complete."""
EXIT_USAGE = 2
EXIT_TIMEOUT = 124
"""``run --watch --timeout`` ran out (as GNU ``timeout`` does); the run carries on."""
EXIT_INTERRUPTED = 130
"""Ctrl-C while watching; the run carries on."""

RUNS_LS_DEFAULT_LIMIT = 20
PIPE_WIDTH = 1000

app = typer.Typer(
    name="headrace",
    help="Serve Python functions as flows; trigger, schedule, watch and cancel their runs.",
    epilog="Example: [bold]headrace serve flows.py:hello --name daily --cron '0 9 * * *'[/]",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
deployments_app = typer.Typer(
    help="List and inspect deployments.", no_args_is_help=True, rich_markup_mode="rich"
)
runs_app = typer.Typer(
    help="List, inspect, follow and cancel flow runs.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
db_app = typer.Typer(help="Manage the database.", no_args_is_help=True, rich_markup_mode="rich")
app.add_typer(
    deployments_app, name="deployments", epilog="Example: headrace deployments inspect hello/daily"
)
app.add_typer(runs_app, name="runs", epilog="Example: headrace runs ls --state failed")
app.add_typer(db_app, name="db", epilog="Example: headrace db upgrade")


class ShutdownPolicy(StrEnum):
    finish = "finish"
    requeue = "requeue"
    cancel = "cancel"


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


# -- the edge: consoles, errors, settings, the event loop ------------------------------------


def _stdout() -> Console:
    """The console for results; piped output keeps whole table rows instead of 80 columns."""
    console = Console(highlight=False, markup=False, emoji=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


def _stderr() -> Console:
    return Console(stderr=True, highlight=False, markup=False, emoji=False)


def fail(message: object, code: int = EXIT_FAILED) -> NoReturn:
    """Print one red line on stderr and exit with ``code``."""
    line = " ".join(str(message).split()) or "failed"
    _stderr().print(Text.assemble(("Error: ", "bold red"), (line, "red")), soft_wrap=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn user errors into one line and an exit code instead of a traceback."""
    try:
        yield
    except UsageProblem as exc:
        fail(exc, EXIT_USAGE)
    except ParameterValidationError as exc:
        wanted_text = any("of type 'string'" in str(e.get("message")) for e in exc.errors)
        hint = " (--param values are read as JSON: quote text, as in -p 'name=\"123\"')"
        fail(f"{exc}{hint if wanted_text else ''}", EXIT_FAILED)
    except HeadraceError as exc:
        fail(exc, EXIT_FAILED)


def _settings(**overrides: object) -> Settings:
    given = {key: value for key, value in overrides.items() if value is not None}
    return load_settings(**given)


def _with_client(settings: Settings, fn: Callable[[HeadraceClient], Awaitable[T]]) -> T:
    """Run ``fn(client)`` on a fresh event loop."""
    from headrace.client import get_client

    async def main() -> T:
        async with get_client(settings) as client:
            return await fn(client)

    return asyncio.run(main())


def _echo_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def _run_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise UsageProblem(f"{text!r} is not a flow run id (a UUID)") from None


async def resolve_deployment(client: HeadraceClient, ref: str) -> Deployment:
    """A deployment by id, by ``flow/deployment``, or by a name only one deployment has."""
    try:
        deployment_id = UUID(ref)
    except ValueError:
        pass
    else:
        return await client.read_deployment(deployment_id)
    for index, char in enumerate(ref):
        if char == "/":
            with contextlib.suppress(ObjectNotFound):
                return await client.read_deployment_by_name(ref[:index], ref[index + 1 :])
    if "/" not in ref:
        matches = [d for d in await client.read_deployments() if ref in (d.name, d.flow_name)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            candidates = ", ".join(sorted(f"{d.flow_name}/{d.name}" for d in matches))
            raise ObjectNotFound(  # not one deployment: a user error, as an unknown name is
                f"{ref!r} names more than one deployment: give one of {candidates}"
            )
    raise ObjectNotFound(
        f"No deployment {ref!r}: give FLOW/DEPLOYMENT or an id "
        "(`headrace deployments ls` lists them)"
    )


# -- serve ---------------------------------------------------------------------------------


@app.command(
    epilog=(
        "Examples:\n\n"
        "  headrace serve flows.py:hello --name daily --cron '0 9 * * *' --timezone Asia/Tokyo\n\n"
        "  headrace serve my_pkg.flows:etl --interval 600 --param limit=100 --port 8081"
    )
)
def serve(
    entrypoint: Annotated[
        str,
        typer.Argument(
            metavar="PATH:FUNC",
            help="path/to/file.py:function (absolute or relative) or package.module:function.",
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option("--name", "-n", help="Deployment name \\[default: the flow's name]."),
    ] = None,
    cron: Annotated[
        str | None, typer.Option(help="Run on a cron schedule, e.g. '0 9 * * *'.")
    ] = None,
    interval: Annotated[float | None, typer.Option(help="Run every this many seconds.")] = None,
    rrule: Annotated[str | None, typer.Option(help="Run on an RFC 5545 recurrence rule.")] = None,
    timezone: Annotated[
        str | None, typer.Option(help="IANA time zone of the schedule \\[default: UTC].")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", metavar="NAME=VALUE", help="A default parameter (JSON or string)."
        ),
    ] = None,
    params: Annotated[
        str | None, typer.Option(metavar="JSON", help="Default parameters as a JSON object.")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option(help="A tag for the deployment.")] = None,
    description: Annotated[
        str | None, typer.Option(help="\\[default: the flow's docstring]")
    ] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Register the schedule paused.")] = False,
    catchup: Annotated[
        bool, typer.Option("--catchup", help="Create every missed scheduled run.")
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option(envvar="HEADRACE_RUNNER_PROCESS_LIMIT", min=1, help="Most runs at once."),
    ] = None,
    concurrency_limit: Annotated[
        int | None, typer.Option(min=1, help="Most runs of this deployment at once.")
    ] = None,
    on_shutdown: Annotated[
        ShutdownPolicy, typer.Option(help="What happens to running runs on shutdown.")
    ] = ShutdownPolicy.finish,
    host: Annotated[
        str | None,
        typer.Option(
            envvar="HEADRACE_RUNNER_SERVER_HOST", help="Webserver host \\[default: localhost]."
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            envvar="HEADRACE_RUNNER_SERVER_PORT",
            min=0,
            max=65535,
            help="Webserver port (0: any free one) \\[default: 8080].",
        ),
    ] = None,
    webserver: Annotated[bool, typer.Option(hidden=True)] = True,
    log_level: Annotated[LogLevel, typer.Option(help="Console log level.")] = LogLevel.info,
) -> None:
    """Serve a flow as a deployment, with its webserver, until Ctrl-C or SIGTERM."""
    from headrace.cli.serve import schedules_from_options, serve_entrypoint
    from headrace.logconfig import configure_logging
    from headrace.runner.serving import run_serving

    with reported_errors():
        settings = _settings(
            runner_server_host=host, runner_server_port=port, runner_process_limit=limit
        )
        options: DeploymentOptions = {
            "schedules": schedules_from_options(cron, interval, rrule, timezone),
            "parameters": collect_parameters(params, param),
            "tags": tag,
            "description": description,
            "paused": paused,
            "catchup": catchup,
            "concurrency_limit": concurrency_limit,
            "on_shutdown": on_shutdown.value,
        }
        configure_logging(log_level.value)
        run_serving(
            serve_entrypoint(
                settings, entrypoint, name, options, webserver=webserver, console=_stdout()
            ),
            pin_cpu=settings.runner_pin_cpu,
        )


# -- deployments ---------------------------------------------------------------------------


@deployments_app.command("ls", epilog="Example: headrace deployments ls")
def deployments_ls(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List deployments, by flow and name."""
    from headrace.cli.output import deployments_table

    with reported_errors():
        settings = _settings()
        deployments = _with_client(settings, lambda client: client.read_deployments())
    if as_json:
        _echo_json([d.model_dump(mode="json") for d in deployments])
    elif not deployments:
        _stderr().print("No deployments yet: start one with `headrace serve PATH:FUNC`.")
    else:
        out = _stdout()
        out.print(deployments_table(deployments, width=out.width))


@deployments_app.command("inspect", epilog="Example: headrace deployments inspect hello/daily")
def deployments_inspect(
    deployment: Annotated[str, typer.Argument(metavar="NAME_OR_ID", help="flow/deployment or id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a deployment: schedules, parameters and recent runs."""
    from headrace.cli.output import deployment_detail

    async def read(client: HeadraceClient) -> tuple[Deployment, list[Any]]:
        found = await resolve_deployment(client, deployment)
        return found, await client.read_flow_runs(deployment_id=found.id, limit=5)

    with reported_errors():
        settings = _settings()
        found, runs = _with_client(settings, read)
    if as_json:
        _echo_json(found.model_dump(mode="json"))
    else:
        out = _stdout()
        out.print(deployment_detail(found, runs, width=out.width))


# -- run -------------------------------------------------------------------------------------


@app.command(
    epilog=(
        "Examples:\n\n"
        "  headrace run hello/daily --param name=world --watch\n\n"
        '  headrace run etl/etl --params \'{"limit": 10, "dry_run": true}\''
    )
)
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
        settings = _settings()
        parameters = collect_parameters(params, param)
        follow = Follow(timeout_seconds=timeout) if watch else None
        code = _interruptible(
            lambda: _with_client(settings, _trigger(deployment, parameters, follow))
        )
    raise typer.Exit(code)


def _trigger(
    ref: str, parameters: dict[str, Any], follow: Follow | None
) -> Callable[[HeadraceClient], Awaitable[int]]:
    async def trigger(client: HeadraceClient) -> int:
        from headrace.cli.output import deployment_label

        deployment = await resolve_deployment(client, ref)
        created = await client.create_flow_run_from_deployment(deployment.id, parameters)
        typer.echo(str(created.id))
        note = f"Created flow run '{created.name}' of {deployment_label(deployment)}."
        if follow is None:
            note += f" Follow it with: headrace runs logs {created.id} --follow"
        _stderr().print(note, soft_wrap=True)
        if follow is None:
            return 0
        return await _watch(client, created.id, follow)

    return trigger


async def _watch(client: HeadraceClient, flow_run_id: UUID, follow: Follow) -> int:
    from headrace.cli.output import final_line
    from headrace.cli.watch import follow_run
    from headrace.states import StateType

    out = _stdout()
    ended = await follow_run(client, flow_run_id, out, follow)
    if ended is None:
        _stderr().print(
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
        _stderr().print("Stopped watching (Ctrl-C); the flow run carries on.", soft_wrap=True)
        return EXIT_INTERRUPTED


# -- runs --------------------------------------------------------------------------------------


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
    limit: Annotated[
        int, typer.Option("--limit", "-l", min=1, max=1000, help="Most runs to show.")
    ] = RUNS_LS_DEFAULT_LIMIT,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List flow runs, newest first."""
    from headrace.cli.output import deployment_label, runs_table

    async def read(client: HeadraceClient) -> tuple[list[Any], dict[UUID, str]]:
        deployment_id = None
        if deployment is not None:
            deployment_id = (await resolve_deployment(client, deployment)).id
        runs = await client.read_flow_runs(
            deployment_id=deployment_id, flow_name=flow, states=states, limit=limit
        )
        names = {d.id: deployment_label(d) for d in await client.read_deployments()}
        return runs, names

    with reported_errors():
        states = parse_states(state)
        settings = _settings()
        runs, names = _with_client(settings, read)
    if as_json:
        _echo_json([r.model_dump(mode="json") for r in runs])
    elif not runs:
        _stderr().print("No flow runs match.")
    else:
        out = _stdout()
        out.print(runs_table(runs, names, width=out.width))


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


@runs_app.command("inspect", epilog="Example: headrace runs inspect 0b6f3c2e-...")
def runs_inspect(
    flow_run_id: Annotated[str, typer.Argument(metavar="ID", help="The flow run's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a flow run: state history, parameters and result."""
    from headrace.cli.output import deployment_label, run_detail

    async def read(client: HeadraceClient) -> tuple[Any, list[Any], dict[UUID, str]]:
        found = await client.read_flow_run(run_id)
        history = await client.read_state_history(run_id)
        names: dict[UUID, str] = {}
        if found.deployment_id is not None:
            with contextlib.suppress(ObjectNotFound):
                d = await client.read_deployment(found.deployment_id)
                names[d.id] = deployment_label(d)
        return found, history, names

    with reported_errors():
        run_id = _run_id(flow_run_id)
        settings = _settings()
        found, history, names = _with_client(settings, read)
    if as_json:
        data = found.model_dump(mode="json")
        data["state_history"] = [s.model_dump(mode="json") for s in history]
        _echo_json(data)
    else:
        _stdout().print(run_detail(found, history, names))


@runs_app.command("logs", epilog="Example: headrace runs logs 0b6f3c2e-... --follow")
def runs_logs(
    flow_run_id: Annotated[str, typer.Argument(metavar="ID", help="The flow run's id.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until the run ends.")
    ] = False,
) -> None:
    """Print a flow run's logs."""
    from headrace.cli.watch import Follow, follow_run, print_logs

    async def show(client: HeadraceClient) -> int:
        out = _stdout()
        if follow:
            await follow_run(client, run_id, out, Follow(show_states=False, spinner=False))
        elif not await print_logs(client, run_id, out):
            _stderr().print("No logs for this flow run (yet).")
        return 0

    with reported_errors():
        run_id = _run_id(flow_run_id)
        settings = _settings()
        code = _interruptible(lambda: _with_client(settings, show))
    raise typer.Exit(code)


@runs_app.command("cancel", epilog="Example: headrace runs cancel 0b6f3c2e-...")
def runs_cancel(
    flow_run_id: Annotated[str, typer.Argument(metavar="ID", help="The flow run's id.")],
) -> None:
    """Cancel a flow run: at once if it has not started, else its runner kills it."""
    from headrace.states import StateType

    with reported_errors():
        run_id = _run_id(flow_run_id)
        settings = _settings()
        cancelled = _with_client(settings, lambda client: client.cancel_flow_run(run_id))
    if cancelled.state.type == StateType.CANCELLED:
        _stdout().print(f"Cancelled flow run '{cancelled.name}' before it started.")
    else:
        _stdout().print(
            f"Cancelling flow run '{cancelled.name}': its runner stops the process and "
            "records CANCELLED."
        )


# -- db and version ----------------------------------------------------------------------------


@db_app.command(
    "upgrade", epilog="Example: HEADRACE_DATABASE_URL=postgresql://... headrace db upgrade"
)
def db_upgrade() -> None:
    """Bring the database (HEADRACE_DATABASE_URL) to the newest schema."""
    from headrace.store import SQLStore
    from headrace.store.migrate import head_revision

    with reported_errors():
        settings = _settings()
        url = settings.resolved_database_url
        SQLStore(url).close()  # opening a store migrates it
    _stdout().print(f"Database {masked_url(url)} is at revision {head_revision()} (newest).")


def masked_url(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    return re.sub(r"(://[^:/@]+:)[^/]*@", r"\1***@", url)


def _version_text() -> str:
    from headrace._version import __version__

    return f"headrace {__version__}"


@app.command(epilog="Example: headrace version")
def version() -> None:
    """Print headrace's version."""
    typer.echo(_version_text())


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(_version_text())
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Serve Python functions as flows; trigger, schedule, watch and cancel their runs."""


def main() -> None:
    """The console script ``headrace`` (and ``python -m headrace``)."""
    app(prog_name="headrace")
