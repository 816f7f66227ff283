"""The ``headrace`` command line: serve a flow, trigger and watch runs, inspect and cancel them.

Settings are read once per command, at this edge, and passed down. User errors
print one red line on stderr and exit 1; malformed options exit 2 (see
``headrace.cli.errors``). The runner, the client and the renderers are imported
inside the commands, so ``headrace --help`` stays quick.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from headrace.cli.consoles import stdout
from headrace.cli.db import db_app
from headrace.cli.deployments import deployments_app
from headrace.cli.errors import UsageProblem, reported_errors
from headrace.cli.params import collect_parameters
from headrace.cli.projects import refuse_per_deployment
from headrace.cli.runs import runs_app
from headrace.cli.session import command_settings
from headrace.cli.trigger import RUN_EPILOG, run
from headrace.settings import Settings

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from headrace.cli.serve import ToServe
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

EntrypointArguments = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[PATH:FUNC]...",
        help="path/to/file.py:function (absolute or relative) or package.module:function; "
        "none: the deployments of the project file.",
        show_default=False,
    ),
]
ProjectFileOption = Annotated[
    Path | None,
    typer.Option(
        "--file",
        "-f",
        metavar="PATH",
        help="The project file to serve \\[default: ./headrace.toml, else [tool.headrace] "
        "in ./pyproject.toml].",
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
NotifyOption = Annotated[
    list[str] | None,
    typer.Option(
        metavar="URL", help="POST each run that ends FAILED or CRASHED here (repeatable)."
    ),
]
NotifyOnOption = Annotated[
    list[str] | None,
    typer.Option(
        metavar="STATE",
        help="The final states that --notify posts (repeatable). \\[default: FAILED, CRASHED]",
    ),
]
NotifySecretOption = Annotated[
    str | None,
    typer.Option(
        envvar="HEADRACE_NOTIFY_SECRET",
        show_envvar=False,
        help="Sign each --notify POST with this secret (HMAC-SHA256).",
    ),
]
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


SERVE_HELP = """Serve flows as deployments, from one runner with its webserver, until stopped.

One PATH:FUNC: the options describe its deployment. Several: --name, --cron, --interval,
--rrule, --timezone, --param(s) and --description are refused, the rest apply to each.
None: the deployments of the project file.
"""


@app.command(
    epilog=(
        "Examples:\n\n"
        "  headrace serve flows.py:hello --name daily --cron '0 9 * * *' --timezone Asia/Tokyo\n\n"
        "  headrace serve my_pkg.flows:etl --interval 600 --param limit=100 --port 8081\n\n"
        "  headrace serve etl.py:etl report.py:report   (several flows, one runner)\n\n"
        "  headrace serve   (the deployments listed in headrace.toml)"
    ),
    help=SERVE_HELP,
)
def serve(
    entrypoints: EntrypointArguments = None,
    file: ProjectFileOption = None,
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
    notify: NotifyOption = None,
    notify_on: NotifyOnOption = None,
    notify_secret: NotifySecretOption = None,
    host: HostOption = None,
    port: PortOption = None,
    webserver: WebserverOption = True,
    log_level: LogLevelOption = LogLevel.info,
) -> None:
    """Serve flows as deployments, from one runner with its webserver, until Ctrl-C or SIGTERM."""
    from headrace.cli.serve import ToServe, notify_from_options, schedules_from_options

    with reported_errors():
        single = _flags_given(name, cron, interval, rrule, timezone, param, params, description)
        runner_options = {"host": host, "port": port, "limit": limit}
        if not entrypoints:
            single |= {"--notify": bool(notify), "--notify-on": bool(notify_on)}
            served, runner_options = _project_entries(file, single, runner_options)
        else:
            _check_entrypoints(entrypoints, file, single)
            options = _options(
                schedules=schedules_from_options(cron, interval, rrule, timezone),
                parameters=collect_parameters(params, param),
                tags=tag,
                description=description,
                paused=paused,
                catchup=catchup,
                concurrency_limit=concurrency_limit,
                on_shutdown=on_shutdown.value,
                notify=notify_from_options(notify, notify_on, notify_secret),
            )
            served = [ToServe(entrypoint, name, options) for entrypoint in entrypoints]
        settings = _runner_settings(runner_options)
        _serve(settings, served, webserver=webserver, log_level=log_level)


RUNNER_SETTINGS = {"host": "server_host", "port": "server_port", "limit": "process_limit"}
"""The runner's options (given, or in the project file) and the settings they set."""


def _check_entrypoints(entrypoints: list[str], file: Path | None, single: dict[str, bool]) -> None:
    if file is not None:
        raise UsageProblem("Give PATH:FUNC or --file, not both")
    if len(entrypoints) > 1:
        refuse_per_deployment(single, "with several PATH:FUNC")
    repeated = sorted({e for e in entrypoints if entrypoints.count(e) > 1})
    if repeated:
        raise UsageProblem(f"{repeated[0]} is given twice: serve each flow once")


def _options(**options: Unpack[DeploymentOptions]) -> DeploymentOptions:
    return options


def _runner_settings(runner_options: dict[str, Any]) -> Settings:
    """The settings, with the runner's options (given, or from the project file) laid over."""
    return command_settings(
        **{f"runner_{RUNNER_SETTINGS[key]}": value for key, value in runner_options.items()}
    )


def _flags_given(*values: object) -> dict[str, bool]:
    """Which of the options that describe one deployment were given (in this order)."""
    flags = ["--name", "--cron", "--interval", "--rrule", "--timezone", "--param", "--params"]
    flags.append("--description")
    return {flag: value not in (None, []) for flag, value in zip(flags, values, strict=True)}


def _project_entries(
    file: Path | None, single: dict[str, bool], runner_options: dict[str, Any]
) -> tuple[list[ToServe], dict[str, Any]]:
    """The project file's deployments, and its runner options under the ones given."""
    from headrace.cli.projects import find_project_file, load_project, project_entries

    path = find_project_file(file, Path.cwd())
    refuse_per_deployment(single, f"with a project file ({path.name})")
    project = load_project(path)
    from_file = project.runner.model_dump()
    merged = {
        key: value if value is not None else from_file[key] for key, value in runner_options.items()
    }
    return project_entries(project, path.resolve().parent, path.name), merged


def _serve(
    settings: Settings, served: list[ToServe], *, webserver: bool, log_level: LogLevel
) -> None:
    """Load the flows, serve them and block until stopped (the runner is imported only here)."""
    from headrace.cli.serve import serve_entrypoints
    from headrace.logconfig import configure_logging
    from headrace.runner.serving import run_serving

    configure_logging(log_level.value, settings.log_format)
    run_serving(
        serve_entrypoints(settings, served, webserver=webserver, console=stdout()),
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
