"""How the command line shows things: rich tables and panels, states in colour, log lines.

Every function returns a renderable (or a string) and prints nothing, so the
commands decide where output goes and tests can render it to plain text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from headrace.cli.run_family import result_text
from headrace.client import ServingRunner
from headrace.deployments import Deployment
from headrace.flow_runs import FlowRun, LogRecord
from headrace.schedules import CronSchedule, DeploymentSchedule, IntervalSchedule
from headrace.states import LATE, State, StateType, utcnow

STATE_STYLES: dict[StateType, str] = {
    StateType.SCHEDULED: "dim",
    StateType.PENDING: "cyan",
    StateType.RUNNING: "bold blue",
    StateType.COMPLETED: "bold green",
    StateType.FAILED: "bold red",
    StateType.CRASHED: "bold magenta",
    StateType.CANCELLING: "yellow",
    StateType.CANCELLED: "yellow",
}

LEVEL_STYLES: dict[str, str] = {
    "DEBUG": "dim",
    "INFO": "",
    "WARNING": "yellow",
    "ERROR": "red",
    "CRITICAL": "bold red",
}

COMPACT_BELOW_WIDTH = 120
"""Narrower consoles get a runs table without run names and with short dates (fits 80)."""

RESULT_PREVIEW_CHARS = 200
"""A result longer than this is cut in one-line summaries (``runs inspect`` shows it all)."""


# -- small pieces -----------------------------------------------------------


def state_text(state: State | StateType) -> Text:
    """The state's type in its colour; an overdue SCHEDULED run shows as LATE."""
    kind = state.type if isinstance(state, State) else state
    if isinstance(state, State) and kind == StateType.SCHEDULED and state.name == LATE:
        return Text(LATE.upper(), style="bold yellow")
    return Text(kind.value, style=STATE_STYLES.get(kind, ""))


def format_time(value: datetime | None, *, short: bool = False) -> str:
    """Local wall-clock time to the second (``short``: month, day, minute), or an em dash."""
    if value is None:
        return "—"
    return value.astimezone().strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S")


def format_age(since: datetime, now: datetime | None = None) -> str:
    """``12s ago``, ``3m 04s ago``: how long ago, to the second."""
    seconds = max(0, int(((now or utcnow()) - since).total_seconds()))
    return f"{format_duration(seconds) if seconds >= 60 else f'{seconds}s'} ago"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def run_seconds(run: FlowRun, now: datetime | None = None) -> float | None:
    """How long the run ran (or has been running), if it started.

    A run waiting again (a retry, a requeue) keeps its last start time, but is not running.
    """
    waiting = run.end_time is None and run.state.type in (StateType.SCHEDULED, StateType.PENDING)
    if run.start_time is None or waiting:
        return None
    end = run.end_time or (now or utcnow())
    return max(0.0, (end - run.start_time).total_seconds())


def attempts_text(run: FlowRun) -> str:
    """``2 of 3``; a run requeued at a runner's shutdown may have more than its retries allow."""
    allowed = run.max_retries + 1
    if run.run_count <= allowed:
        return f"{run.run_count} of {allowed}"
    return f"{run.run_count} ({allowed} allowed, more after a runner's shutdown requeued it)"


def to_json(value: Any, *, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, default=str, ensure_ascii=False)


def preview(value: Any, limit: int = RESULT_PREVIEW_CHARS) -> str:
    text = to_json(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def first_line(text: str | None) -> str:
    if not text:
        return ""
    lines = text.strip().splitlines()
    return lines[0] + (" …" if len(lines) > 1 else "") if lines else ""


def deployment_label(deployment: Deployment) -> str:
    return f"{deployment.flow_name}/{deployment.name}"


def run_label(run: FlowRun, deployment_names: Mapping[UUID, str]) -> str:
    """``flow/deployment`` for a deployment's run; ``— (flow add)`` for a run of no
    deployment (a subflow's, an ad-hoc one's): its flow's name is no deployment's."""
    if run.deployment_id is None:
        return f"— (flow {run.flow_name})"
    return deployment_names.get(run.deployment_id, f"{run.flow_name}/?")


def describe_schedule(item: DeploymentSchedule) -> str:
    schedule = item.schedule
    if isinstance(schedule, CronSchedule):
        text = f"cron '{schedule.cron}'"
    elif isinstance(schedule, IntervalSchedule):
        text = f"every {format_duration(schedule.interval.total_seconds())}"
        if schedule.anchor_date is not None:
            text += f" from {schedule.anchor_date.isoformat()}"
    else:
        text = f"rrule '{schedule.rrule}'"
    if schedule.timezone != "UTC":
        text += f" ({schedule.timezone})"
    if item.parameters:
        text += f" with {to_json(item.parameters)}"
    if not item.active:
        text += " [inactive]"
    return text


def describe_schedules(deployment: Deployment) -> str:
    if not deployment.schedules:
        return "—"
    text = "; ".join(describe_schedule(s) for s in deployment.schedules)
    return f"{text} (paused)" if deployment.paused else text


def log_line(record: LogRecord) -> Text:
    """``12:00:01.234 INFO     message``: the time is local, the message kept verbatim."""
    level = record.level_name
    stamp = record.timestamp.astimezone().strftime("%H:%M:%S.%f")[:-3]
    return Text.assemble(
        (stamp, "dim"),
        " ",
        (f"{level:<8}", LEVEL_STYLES.get(level, "")),
        " ",
        record.message,
    )


def state_change_line(state: State) -> Text:
    """``12:00:01.234 state    RUNNING``, with the message's first line unless it is final."""
    stamp = state.timestamp.astimezone().strftime("%H:%M:%S.%f")[:-3]
    text = Text.assemble((stamp, "dim"), " ", (f"{'state':<8}", "dim"), " ", state_text(state))
    if state.message and not state.is_terminal:
        text.append(f"  {first_line(state.message)}", style="dim")
    return text


def final_line(run: FlowRun) -> Text:
    """The one line a watched run ends with: state, duration and result or reason."""
    text = Text.assemble(
        "Flow run ", (run.name, "bold"), " ", state_text(run.state), " after ",
        format_duration(run_seconds(run)),
    )  # fmt: skip
    kept = run.result is not None or not run.state.message  # else the message says why not
    if run.state.type == StateType.COMPLETED and kept:
        text.append(f"; result: {preview(run.result)}")
    elif run.state.message and run.state.message.strip():
        text.append(f": {run.state.message.strip().splitlines()[0]}")
    return text


# -- tables and panels ----------------------------------------------------------


def _table(title: str) -> Table:
    return Table(
        title=title,
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )


def _grid() -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    return grid


def runners_summary(runners: Iterable[ServingRunner]) -> Text:
    """``2 alive``, or ``none alive`` in red: then the deployment's runs wait."""
    alive = sum(1 for runner in runners if runner.alive)
    return Text(f"{alive} alive") if alive else Text("none alive", style="bold red")


def deployments_table(
    deployments: Iterable[Deployment],
    runners: Mapping[UUID, list[ServingRunner]] | None = None,
    *,
    width: int = COMPACT_BELOW_WIDTH,
) -> Table:
    compact = width < COMPACT_BELOW_WIDTH
    table = _table("Deployments")
    table.add_column("Deployment", style="bold", overflow="fold", min_width=10)
    table.add_column("ID", no_wrap=True, min_width=36)
    table.add_column("Schedule", overflow="fold", min_width=10)
    table.add_column("Limit", justify="right")
    table.add_column("Runners", no_wrap=True)
    table.add_column("Updated", no_wrap=True)
    for deployment in deployments:
        table.add_row(
            deployment_label(deployment),
            str(deployment.id),
            describe_schedules(deployment),
            str(deployment.concurrency_limit) if deployment.concurrency_limit else "—",
            runners_summary((runners or {}).get(deployment.id, [])),
            format_time(deployment.updated, short=compact),
        )
    return table


def serving_runners_table(runners: Iterable[ServingRunner]) -> Table:
    """Each runner serving a deployment: where it runs and whether it still beats."""
    now = utcnow()
    table = _table("Runners")
    for column in ("Name", "Host", "PID", "Last heartbeat", "Status"):
        table.add_column(column, overflow="fold", justify="right" if column == "PID" else "left")
    for runner in runners:
        status = Text("alive", style="green") if runner.alive else Text("presumed dead", "red")
        row = (runner.name, runner.host, str(runner.pid), format_age(runner.heartbeat, now))
        table.add_row(*row, status)
    return table


def parameters_table(deployment: Deployment) -> Table:
    """The deployment's parameters: type, whether required, and the default it runs with."""
    schema = deployment.parameter_schema
    required = set(schema.get("required", []))
    table = _table("Parameters")
    for column in ("Name", "Type", "Required", "Default"):
        table.add_column(column, overflow="fold")
    properties: dict[str, Any] = schema.get("properties", {})
    for name, prop in sorted(properties.items(), key=lambda kv: kv[1].get("position", 0)):
        if name in deployment.parameters:
            default = to_json(deployment.parameters[name]) + " (deployment)"
        elif "default" in prop:
            default = to_json(prop["default"])
        else:
            default = "—"
        table.add_row(name, _type_of(prop), "yes" if name in required else "", default)
    return table


def _type_of(prop: Mapping[str, Any]) -> str:
    if "type" in prop:
        return str(prop["type"])
    if "$ref" in prop:
        return str(prop["$ref"]).rsplit("/", 1)[-1]
    options = prop.get("anyOf") or prop.get("oneOf") or prop.get("allOf")
    if isinstance(options, list):
        return " | ".join(_type_of(option) for option in options)
    return "any"


def deployment_detail(
    deployment: Deployment,
    recent_runs: list[FlowRun],
    runners: list[ServingRunner] | None = None,
    *,
    width: int = COMPACT_BELOW_WIDTH,
) -> RenderableType:
    grid = _grid()
    grid.add_row("Deployment", deployment_label(deployment))
    grid.add_row("ID", str(deployment.id))
    grid.add_row("Entrypoint", deployment.entrypoint or "—")
    grid.add_row("Description", first_line(deployment.description) or "—")
    grid.add_row("Version", deployment.version or "—")
    grid.add_row("Tags", ", ".join(deployment.tags) or "—")
    grid.add_row("Schedules", describe_schedules(deployment))
    grid.add_row("Catch up", "yes" if deployment.catchup else "no")
    grid.add_row("Concurrency limit", str(deployment.concurrency_limit or "—"))
    grid.add_row("On shutdown", deployment.on_shutdown)
    delays = deployment.retry_delays or [deployment.retry_delay_seconds]
    grid.add_row("Retries", f"{deployment.retries} (delay {', '.join(f'{d:g}s' for d in delays)})")
    grid.add_row("Timeout", format_duration(deployment.timeout_seconds))
    grid.add_row("Schema enforced", "yes" if deployment.enforce_parameter_schema else "no")
    grid.add_row("Updated", format_time(deployment.updated))
    summary = runners_summary(runners or [])
    if not any(runner.alive for runner in runners or []):
        summary.append(": its runs wait until a runner serving it starts")
    grid.add_row("Runners", summary)
    parts: list[RenderableType] = [grid, Text(), parameters_table(deployment)]
    if runners:
        parts += [Text(), serving_runners_table(runners)]
    if recent_runs:
        names = {deployment.id: deployment_label(deployment)}
        parts += [Text(), runs_table(recent_runs, names, title="Recent runs", width=width)]
    return Group(*parts)


def runs_table(
    runs: Iterable[FlowRun],
    deployment_names: Mapping[UUID, str],
    *,
    title: str = "Flow runs",
    width: int = COMPACT_BELOW_WIDTH,
) -> Table:
    """Runs, one a row; below ``COMPACT_BELOW_WIDTH`` columns the run names and dates go."""
    compact = width < COMPACT_BELOW_WIDTH
    now = utcnow()
    table = _table(title)
    table.add_column("ID", no_wrap=True, min_width=36)
    if not compact:
        table.add_column("Name", style="bold", overflow="fold")
    table.add_column("Deployment", overflow="fold")
    table.add_column("State", no_wrap=True)
    table.add_column("Start", no_wrap=True)
    table.add_column("Took" if compact else "Duration", justify="right", no_wrap=True)
    for run in runs:
        start = run.start_time or run.expected_start_time
        cells: list[RenderableType] = [str(run.id)]
        if not compact:
            cells.append(run.name)
        cells += [
            run_label(run, deployment_names),
            state_text(run.state),
            format_time(start, short=compact),
            format_duration(run_seconds(run, now)),
        ]
        table.add_row(*cells)
    return table


def run_detail(
    run: FlowRun, history: list[State], deployment_names: Mapping[UUID, str]
) -> RenderableType:
    grid = _grid()
    grid.add_row("Flow run", f"{run.name} ({run.id})")
    grid.add_row("Deployment", run_label(run, deployment_names))
    if run.parent_flow_run_id is not None:
        grid.add_row("Parent run", str(run.parent_flow_run_id))
    grid.add_row("State", Text.assemble(state_text(run.state), f"  {run.state.name}"))
    grid.add_row("Created", format_time(run.created))
    grid.add_row("Expected start", format_time(run.expected_start_time))
    grid.add_row("Started", format_time(run.start_time))
    grid.add_row("Ended", format_time(run.end_time))
    grid.add_row("Duration", format_duration(run_seconds(run)))
    grid.add_row("Attempts", attempts_text(run))
    grid.add_row("Runner", f"{run.runner_name or '—'}" + (f" (pid {run.pid})" if run.pid else ""))
    grid.add_row("Entrypoint", run.entrypoint or "—")
    grid.add_row("Parameters", Text(to_json(run.parameters, indent=2)))
    if run.result_truncated:
        grid.add_row("Result", Text("not stored: too large to keep (result_truncated)"))
    elif run.state.type == StateType.COMPLETED:
        grid.add_row("Result", Text(result_text(run) or to_json(run.result, indent=2)))
    parts: list[RenderableType] = [grid, Text(), history_table(history)]
    if run.state.message and "\n" in run.state.message.strip():
        parts += [Text(), Text("Message", style="bold"), Text(run.state.message.rstrip())]
    return Group(*parts)


def history_table(history: Iterable[State]) -> Table:
    table = _table("State history")
    table.add_column("Time", no_wrap=True)
    table.add_column("State", no_wrap=True)
    table.add_column("Message", overflow="fold")
    for state in history:
        table.add_row(format_time(state.timestamp), state_text(state), first_line(state.message))
    return table
