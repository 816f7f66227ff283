"""The console of a serving process: what it serves, and a line as each run starts and ends.

A person watching ``headrace serve`` (or ``serve()``) sees each run start and
how it ended (completed with its duration, failed or crashed with the last
line of the error, cancelled) without opening the dashboard or the database.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from uuid import UUID

from headrace.deployments import Deployment
from headrace.flow_runs import FlowRun
from headrace.settings import Settings
from headrace.states import StateType

BIND_ALL = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
"""A webserver listening on every address is reached, and named, on loopback."""


def write_line(line: str) -> None:
    """Print one console line now: a pipe (a service manager's journal) sees it at once."""
    print(line, file=sys.stdout, flush=True)


class RunConsole:
    """Prints a line when a run's process starts and when the run ends, however it ends."""

    def __init__(
        self, deployments: Mapping[UUID, Deployment], write: Callable[[str], None] = write_line
    ) -> None:
        self._deployments = deployments
        self._write = write

    def _label(self, run: FlowRun) -> str:
        deployment = None if run.deployment_id is None else self._deployments.get(run.deployment_id)
        flow = run.flow_name if deployment is None else f"{run.flow_name}/{deployment.name}"
        return f"Run {run.name!r} of {flow}"

    def run_started(self, run: FlowRun) -> None:
        self._write(f"{self._label(run)} started ({run.id})")

    def start_failed(self, run: FlowRun) -> None:
        """Told as the crash that follows it."""

    def run_finished(self, run: FlowRun, final: FlowRun | None, seconds: float | None) -> None:
        after = "" if seconds is None else f" after {seconds:.2f}s"
        label = self._label(run)
        if final is None:
            self._write(f"{label} ended{after}; its outcome is not recorded yet")
            return
        why = last_line(final.state.message)
        match final.state.type:
            case StateType.COMPLETED:
                took = "" if seconds is None else f" in {seconds:.2f}s"
                self._write(f"{label} completed{took}")
            case StateType.FAILED:
                self._write(f"{label} failed{after}: {why}")
            case StateType.CRASHED:
                self._write(f"{label} crashed{after}: {why}")
            case StateType.CANCELLED:
                self._write(f"{label} was cancelled{after}")
            case _:
                self._write(f"{label} ended{after} and will run again: {why}")


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
