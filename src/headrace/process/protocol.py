"""What the runner and a run's process say to each other, and how the fork server is asked.

Both sides import this module, and only this one, to agree: the parent never
imports the child's code. A run's events are ``NamedTuple``s: cheap to pickle
on the hot path (RUNNING, every log line, the end), and typed for ``match``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

# -- the job ----------------------------------------------------------------


@dataclass(frozen=True)
class ChildJob:
    """What a child needs to run one attempt of a flow run."""

    flow_run_id: str
    flow_run_name: str
    entrypoint: str
    parameters: dict[str, Any] = field(default_factory=dict)
    journal_path: str | None = None
    """Where the child records its final event before it reports it (see ``journal.py``)."""
    journal_key: str = ""
    run_count: int = 1
    """This attempt of the run, from 1 (the run context's ``run_count``)."""
    deployment_id: str | None = None
    scheduled_start_time: datetime | None = None
    """When the run was due (its expected start time)."""
    parent_flow_run_id: str | None = None
    last_attempt: bool = True
    """No retry follows a failure of this attempt: its on_failure hooks run."""
    title: str = ""
    """What ``ps`` shows for the run's process (``headrace run flow/deployment run-name``)."""
    traceparent: str | None = None
    """The W3C trace context the run continues: its ``TRACEPARENT`` environment variable."""
    task_cache: dict[str, Any] = field(default_factory=dict)
    """Live task cache entries of the run's deployment (key -> JSON result), see ``TaskCached``."""
    environment: dict[str, str] = field(default_factory=dict)
    """Settings of the runner the run's process takes as its own (its database, where large
    results go), so what it does through ``get_client()`` reaches the runner's database."""


# -- events, child -> runner, over the events pipe -----------------------------


class Running(NamedTuple):
    """The flow's body is about to start (its parameters are valid)."""

    started: float
    """The child's clock (``time.time()``) when the body started."""
    pid: int


class Log(NamedTuple):
    """A ``logging`` record of the run, formatted, with its level."""

    level: int
    message: str
    timestamp: float
    task_run_name: str | None = None
    """The task run that wrote it, if a task did."""
    flow_run_id: str | None = None
    """The subflow run it was logged in (None: the process's own run)."""


class Completed(NamedTuple):
    """The body returned: its result as a JSON value, or null and a message saying why not."""

    result: Any
    message: str | None = None
    result_truncated: bool = False
    """The result was too large to keep."""
    result_ref: str | None = None
    """Where the whole result was written, when it is larger than a run's row keeps."""


class Failed(NamedTuple):
    """The body raised: a retry may help."""

    message: str
    retry: bool = True
    """The flow's ``retry_condition_fn`` allows a retry (True when it has none)."""


class Invalid(NamedTuple):
    """The parameters did not validate: no retry helps."""

    message: str


class Crashed(NamedTuple):
    """The flow could not be loaded from its entrypoint."""

    message: str


# -- child flow runs: a flow called inside the run, executed in its process ------


class ChildRunStarted(NamedTuple):
    """A flow called inside the run started as a child run, under the id its process chose."""

    id: str
    parent_id: str
    name: str
    flow_name: str
    parameters: dict[str, Any]
    started: float
    pid: int
    max_retries: int = 0
    retry_delay_seconds: float = 0
    timeout_seconds: float | None = None


class ChildRunRetrying(NamedTuple):
    """An attempt of a child run failed and another follows after its retry delay."""

    id: str
    message: str
    timestamp: float
    retry_at: float


class ChildRunRestarted(NamedTuple):
    """A child run's next attempt (``run_count``) started."""

    id: str
    run_count: int
    started: float


class ChildRunEnded(NamedTuple):
    """A child run ended: COMPLETED with its result, or FAILED or CRASHED with a message."""

    id: str
    state_type: str
    message: str | None
    timestamp: float
    result: Any = None
    result_truncated: bool = False
    result_ref: str | None = None


ChildRunEvent = ChildRunStarted | ChildRunRetrying | ChildRunRestarted | ChildRunEnded


FinalEvent = Completed | Failed | Invalid | Crashed
"""How a run's process says its attempt ended: the last event it sends."""


# -- task runs ------------------------------------------------------------------


class TaskRunUpdate(NamedTuple):
    """A task run started, retries, or ended: its latest state (the runner keeps the last)."""

    id: str
    name: str
    task_name: str
    state_type: str
    state_name: str
    run_count: int
    start_time: float | None
    end_time: float | None
    message: str | None = None
    cache_key: str | None = None
    flow_run_id: str | None = None
    """The flow run whose body called the task: a subflow's run, or (None) the process's own."""


class TaskCached(NamedTuple):
    """A task's result to keep under its cache key for the run's deployment.

    The run's process never opens the database, so it cannot look a key up
    there: the runner hands each job the deployment's live entries
    (``ChildJob.task_cache``), and the process sends new ones back here.
    """

    key: str
    result: Any
    """The result as a JSON value."""
    expires: float | None
    """When it stops being reused (``time.time()``), or never (None)."""


class TaskRunEvents(NamedTuple):
    """Task run updates and cache entries, batched: one pipe write for many task calls.

    Only the latest update of each task run in a batch is sent (started and ended
    within one batch, a task run costs one update).
    """

    updates: list[TaskRunUpdate]
    cached: list[TaskCached]


ChildEvent = Running | Log | FinalEvent | ChildRunEvent | TaskRunEvents


# -- runner -> run: what the runner writes on the run's events socket ------------

STOP_REQUEST = b"\0"
"""The runner means to stop the run: it writes this before it signals the run's group."""
CANCEL_CHILD = b"c"
"""Followed by a child run's 16-byte UUID: stop that subflow run, and only it."""
CANCEL_CHILD_SIZE = 17


# -- the fork server's wire format, over its Unix socket ------------------------

REQUEST = struct.Struct("!QI")
"""runner -> server: (request id, length of the pickled ``ChildJob`` that follows)."""
FDS_PER_RUN = 3
"""A request carries the run's events socket, and the pipes that become its stdout and stderr."""
REPLY = struct.Struct("!QBq")
"""server -> runner: (request id, STARTED or EXITED, the pid or the exit status)."""
STARTED = 1
EXITED = 2
"""The exit status is negative for a signal, as in subprocess."""
READY = b"R"
"""The server's first byte: everything is preloaded, it takes requests."""

PRELOAD_VARIABLE = "HEADRACE_PRELOAD_ENTRYPOINTS"
"""The entrypoints (JSON) the fork server imports before it forks any run."""
SYS_PATH_VARIABLE = "HEADRACE_FORKSERVER_SYS_PATH"
"""The runner's ``sys.path`` (JSON): runs import what their runner could."""
RUN_CPUS_VARIABLE = "HEADRACE_RUN_CPUS"
"""The CPUs runs may use (JSON), set by a serving process that holds itself to one CPU."""
