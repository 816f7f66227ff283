"""The ``headrace`` command line: serve a flow, trigger and watch runs, inspect and cancel them.

Settings are read once per command, at this edge, and passed down. User errors
print one red line on stderr and exit 1; malformed options exit 2 (see
``headrace.cli.errors``). The runner, the client and the renderers are imported
inside the commands, so ``headrace --help`` stays quick.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from headrace.cli.consoles import stdout
from headrace.cli.db import db_app
from headrace.cli.deployments import deployments_app
from headrace.cli.errors import reported_errors
from headrace.cli.params import collect_parameters
from headrace.cli.runs import RUN_EPILOG, run, runs_app
from headrace.cli.session import command_settings
from headrace.settings import Settings

if TYPE_CHECKING:
    from headrace.deployments import DeploymentOptions

app = typer.Typer(
    name="headrace",
    help="Serve Python functions as flows; trigger, schedule, watch and cancel their runs.",
    epilog="Example: [bold]headrace serve flows.py:hello --name daily --cron '0 9 * * *'[/]",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
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


# -- serve ---------------------------------------------------------------------------------

EntrypointArgument = Annotated[
    str,
    typer.Argument(
        metavar="PATH:FUNC",
        help="path/to/file.py:function (absolute or relative) or package.module:function.",
    ),
]
NameOption = Annotated[
    str | None, typer.Option("--name", "-n", help="Deployment name \\[default: the flow's name].")
]
CronOption = Annotated[str | None, typer.Option(help="Run on a cron schedule, e.g. '0 9 * * *'.")]
IntervalOption = Annotated[float | None, typer.Option(help="Run every this many seconds.")]
RruleOption = Annotated[str | None, typer.Option(help="Run on an RFC 5545 recurrence rule.")]
TimezoneOption = Annotated[
    str | None, typer.Option(help="IANA time zone of the schedule \\[default: UTC].")
]
DefaultParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param", "-p", metavar="NAME=VALUE", help="A default parameter (JSON or string)."
    ),
]
DefaultParamsOption = Annotated[
    str | None, typer.Option(metavar="JSON", help="Default parameters as a JSON object.")
]
TagOption = Annotated[list[str] | None, typer.Option(help="A tag for the deployment.")]
DescriptionOption = Annotated[str | None, typer.Option(help="\\[default: the flow's docstring]")]
PausedOption = Annotated[bool, typer.Option("--paused", help="Register the schedule paused.")]
CatchupOption = Annotated[
    bool, typer.Option("--catchup", help="Create every missed scheduled run.")
]
LimitOption = Annotated[
    int | None,
    typer.Option(envvar="HEADRACE_RUNNER_PROCESS_LIMIT", min=1, help="Most runs at once."),
]
ConcurrencyLimitOption = Annotated[
    int | None, typer.Option(min=1, help="Most runs of this deployment at once.")
]
OnShutdownOption = Annotated[
    ShutdownPolicy, typer.Option(help="What happens to running runs on shutdown.")
]
HostOption = Annotated[
    str | None,
    typer.Option(
        envvar="HEADRACE_RUNNER_SERVER_HOST", help="Webserver host \\[default: localhost]."
    ),
]
PortOption = Annotated[
    int | None,
    typer.Option(
        envvar="HEADRACE_RUNNER_SERVER_PORT",
        min=0,
        max=65535,
        help="Webserver port (0: any free one) \\[default: 8080].",
    ),
]
WebserverOption = Annotated[bool, typer.Option(hidden=True)]
LogLevelOption = Annotated[LogLevel, typer.Option(help="Console log level.")]


@app.command(
    epilog=(
        "Examples:\n\n"
        "  headrace serve flows.py:hello --name daily --cron '0 9 * * *' --timezone Asia/Tokyo\n\n"
        "  headrace serve my_pkg.flows:etl --interval 600 --param limit=100 --port 8081"
    )
)
def serve(
    entrypoint: EntrypointArgument,
    name: NameOption = None,
    cron: CronOption = None,
    interval: IntervalOption = None,
    rrule: RruleOption = None,
    timezone: TimezoneOption = None,
    param: DefaultParamOption = None,
    params: DefaultParamsOption = None,
    tag: TagOption = None,
    description: DescriptionOption = None,
    paused: PausedOption = False,
    catchup: CatchupOption = False,
    limit: LimitOption = None,
    concurrency_limit: ConcurrencyLimitOption = None,
    on_shutdown: OnShutdownOption = ShutdownPolicy.finish,
    host: HostOption = None,
    port: PortOption = None,
    webserver: WebserverOption = True,
    log_level: LogLevelOption = LogLevel.info,
) -> None:
    """Serve a flow as a deployment, with its webserver, until Ctrl-C or SIGTERM."""
    from headrace.cli.serve import schedules_from_options

    with reported_errors():
        settings = command_settings(
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
        _serve(settings, entrypoint, name, options, webserver=webserver, log_level=log_level)


def _serve(
    settings: Settings,
    entrypoint: str,
    name: str | None,
    options: DeploymentOptions,
    *,
    webserver: bool,
    log_level: LogLevel,
) -> None:
    """Load the flow, serve it and block until stopped (the runner is imported only here)."""
    from headrace.cli.serve import serve_entrypoint
    from headrace.logconfig import configure_logging
    from headrace.runner.serving import run_serving

    configure_logging(log_level.value)
    run_serving(
        serve_entrypoint(
            settings, entrypoint, name, options, webserver=webserver, console=stdout()
        ),
        pin_cpu=settings.runner_pin_cpu,
    )


app.command(epilog=RUN_EPILOG)(run)


@app.command(epilog="Examples:\n\n  headrace ui\n\n  headrace ui --host 0.0.0.0 --port 8090")
def ui(host: HostOption = None, port: PortOption = None) -> None:
    """Serve the dashboard and the HTTP API over the database, executing no runs (the
    runners serving their deployments run them)."""
    from headrace.cli.ui import serve_ui

    with reported_errors():
        settings = command_settings(runner_server_host=host, runner_server_port=port)
        serve_ui(settings, stdout())


# -- version ---------------------------------------------------------------------------------


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
