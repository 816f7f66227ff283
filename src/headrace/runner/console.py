"""The console of a serving process: what it serves, and a line as each run starts and ends.

A person watching ``headrace serve`` (or ``serve()``) sees each run start and
how it ended (completed with its duration, failed or crashed with the last
line of the error, cancelled) without opening the dashboard or the database.
With ``HEADRACE_LOG_FORMAT=json`` the same lines are log records of
``headrace.console`` instead, carrying the run's fields, so that a collector
reading JSON lines never meets a line of plain text.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from uuid import UUID

from headrace.deployments import Deployment
from headrace.flow_runs import FlowRun
from headrace.settings import Settings
from headrace.states import StateType

logger = logging.getLogger("headrace.console")

BIND_ALL = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
"""A webserver listening on every address is reached, and named, on loopback."""


def write_line(line: str) -> None:
    """Print one console line now: a pipe (a service manager's journal) sees it at once."""
    print(line, file=sys.stdout, flush=True)


def say_line(line: str, *, as_record: bool = False) -> None:
    """A console line, or (JSON logs) a ``headrace.console`` record of it."""
    if as_record:
        logger.info("%s", line)
    else:
        write_line(line)


class RunConsole:
    """Prints a line when a run's process starts and when the run ends, however it ends."""

    def __init__(
        self,
        deployments: Mapping[UUID, Deployment],
        write: Callable[[str], None] = write_line,
        *,
        as_records: bool = False,
    ) -> None:
        self._deployments = deployments
        self._write = write
        self._as_records = as_records

    def _deployment(self, run: FlowRun) -> str | None:
        deployment = None if run.deployment_id is None else self._deployments.get(run.deployment_id)
        return None if deployment is None else f"{run.flow_name}/{deployment.name}"

    def _label(self, run: FlowRun) -> str:
        return f"Run {run.name!r} of {self._deployment(run) or run.flow_name}"

    def _say(self, run: FlowRun, line: str, **fields: object) -> None:
        if not self._as_records:
            self._write(line)
            return
        extra = {
            "flow_run_id": str(run.id),
            "flow_run_name": run.name,
            "deployment": self._deployment(run),
            "attempt": run.run_count,
            **fields,
        }
        logger.info("%s", line, extra=extra)

    def run_started(self, run: FlowRun) -> None:
        self._say(run, f"{self._label(run)} started ({run.id})")

    def start_failed(self, run: FlowRun) -> None:
        """Told as the crash that follows it."""

    def run_finished(self, run: FlowRun, final: FlowRun | None, seconds: float | None) -> None:
        after = "" if seconds is None else f" after {seconds:.2f}s"
        label = self._label(run)
        if final is None:
            self._say(run, f"{label} ended{after}; its outcome is not recorded yet")
            return
        why = last_line(final.state.message)
        fields = {"state": final.state.type.value, "duration_seconds": seconds}
        match final.state.type:
            case StateType.COMPLETED:
                took = "" if seconds is None else f" in {seconds:.2f}s"
                self._say(run, f"{label} completed{took}", **fields)
            case StateType.FAILED:
                self._say(run, f"{label} failed{after}: {why}", **fields)
            case StateType.CRASHED:
                self._say(run, f"{label} crashed{after}: {why}", **fields)
            case StateType.CANCELLED:
                self._say(run, f"{label} was cancelled{after}", **fields)
            case _:
                self._say(run, f"{label} ended{after} and will run again: {why}", **fields)


def last_line(text: str | None) -> str:
    """The last non-blank line of an error message (a traceback's is the exception)."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


def webserver_url(settings: Settings) -> str:
    """The base URL the runner's webserver is reached at."""
    host = settings.runner_server_host.strip("[]")
    host = BIND_ALL.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.runner_server_port}"


def banner(deployments: Iterable[Deployment], settings: Settings, *, webserver: bool) -> list[str]:
    """One line per served deployment: its name and id, and how to trigger it."""
    lines = []
    for deployment in deployments:
        label = f"{deployment.flow_name}/{deployment.name}"
        if webserver:
            trigger = f"POST {webserver_url(settings)}/deployment/{deployment.id}/run"
        else:
            trigger = f"headrace run {label}"
        lines.append(f"Serving {label} ({deployment.id}) · trigger: {trigger}")
    lines.append("Ctrl-C to stop")
    return lines
