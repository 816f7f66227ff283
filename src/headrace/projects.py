"""A project: the deployments one ``headrace serve`` serves, as a file describes them.

``headrace.toml`` (or ``[tool.headrace]`` in ``pyproject.toml``) is read at
the edge; this module turns its data into checked models, so a typo or a bad
schedule is reported naming the deployment and the key before anything is
served. Every table refuses keys it does not know.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from headrace.deployments import DeploymentOptions, OnShutdown, describe_invalid
from headrace.exceptions import InvalidProjectFile
from headrace.notifications import notify_targets
from headrace.schedules import DeploymentSchedule, construct_schedule


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProjectSchedule(_Strict):
    """One schedule: exactly one of ``cron``, ``interval`` (seconds), ``rrule``."""

    cron: str | None = None
    interval: float | None = Field(default=None, gt=0)
    rrule: str | None = None
    timezone: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    active: bool = True

    @model_validator(mode="after")
    def _one_kind(self) -> ProjectSchedule:
        if self.cron is None and self.interval is None and self.rrule is None:
            raise ValueError("a schedule needs one of cron, interval, rrule")
        self.build()
        return self

    def build(self) -> DeploymentSchedule:
        found = _schedule(self.cron, self.interval, self.rrule, self.timezone)
        assert found is not None  # checked above
        return found.model_copy(update={"parameters": self.parameters, "active": self.active})


def _schedule(
    cron: str | None, interval: float | None, rrule: str | None, timezone: str | None
) -> DeploymentSchedule | None:
    """The schedule the keys describe, with its problem as a plain ``ValueError``."""
    try:
        return construct_schedule(cron=cron, interval=interval, rrule=rrule, timezone=timezone)
    except ValidationError as exc:
        raise ValueError(describe_invalid(exc)) from None


class ProjectDeployment(_Strict):
    """A deployment: a flow's entrypoint and the options it is served with.

    ``cron``/``interval``/``rrule`` (with ``timezone``) is one schedule;
    ``schedules`` holds more. ``notify`` lists webhooks (URLs, or tables with
    ``url``, ``states``, ``secret``). ``retries``, ``retry_delay_seconds`` and
    ``timeout_seconds`` replace the flow's own.
    """

    entrypoint: str = Field(min_length=1)
    name: str | None = Field(default=None, min_length=1)
    description: str | None = None
    version: str | None = None
    tags: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    enforce_parameter_schema: bool = True
    cron: str | None = None
    interval: float | None = Field(default=None, gt=0)
    rrule: str | None = None
    timezone: str | None = None
    schedules: list[ProjectSchedule] = Field(default_factory=list)
    paused: bool = False
    catchup: bool = False
    concurrency_limit: int | None = Field(default=None, ge=1)
    on_shutdown: OnShutdown = "finish"
    notify: list[str | dict[str, Any]] = Field(default_factory=list)
    retries: int | None = Field(default=None, ge=0)
    retry_delay_seconds: float | None = Field(default=None, ge=0)
    timeout_seconds: float | None = Field(default=None, gt=0)

    @field_validator("notify")
    @classmethod
    def _notify_targets(cls, value: list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
        notify_targets(value)  # checked now; the deployment checks them again when built
        return value

    @model_validator(mode="after")
    def _schedule_is_valid(self) -> ProjectDeployment:
        _schedule(self.cron, self.interval, self.rrule, self.timezone)
        return self

    def options(self) -> DeploymentOptions:
        """The keywords ``Flow.to_deployment`` takes for this deployment."""
        keyed = _schedule(self.cron, self.interval, self.rrule, self.timezone)
        schedules = ([keyed] if keyed else []) + [s.build() for s in self.schedules]
        return {
            "schedules": schedules,
            "parameters": self.parameters,
            "tags": self.tags,
            "description": self.description,
            "version": self.version,
            "enforce_parameter_schema": self.enforce_parameter_schema,
            "paused": self.paused,
            "catchup": self.catchup,
            "concurrency_limit": self.concurrency_limit,
            "on_shutdown": self.on_shutdown,
            "notify": list(self.notify),
        }


class ProjectRunner(_Strict):
    """Options of the runner that serves the project (the CLI's options win)."""

    limit: int | None = Field(default=None, ge=1)
    host: str | None = Field(default=None, min_length=1)
    port: int | None = Field(default=None, ge=0, le=65535)


class Project(_Strict):
    runner: ProjectRunner = Field(default_factory=ProjectRunner)
    deployments: list[ProjectDeployment]


def parse_project(data: Mapping[str, Any], source: str) -> Project:
    """The project ``data`` (read from ``source``) describes; ``InvalidProjectFile``, naming
    the deployment and the key, when it is wrong."""
    if not isinstance(data.get("deployments"), list) or not data["deployments"]:
        raise InvalidProjectFile(
            f"{source}: no deployments: add at least one [[deployments]] table "
            'with an entrypoint (entrypoint = "flows.py:etl")'
        )
    deployments = [
        _deployment(entry, number, source)
        for number, entry in enumerate(data["deployments"], start=1)
    ]
    try:
        project = Project.model_validate({**data, "deployments": []})
    except ValidationError as exc:
        raise InvalidProjectFile(f"{source}: {_describe(exc)}") from None
    _check_unique(deployments, source)
    return project.model_copy(update={"deployments": deployments})


def _deployment(entry: object, number: int, source: str) -> ProjectDeployment:
    label = f"deployment {number}"
    if isinstance(entry, Mapping):
        named = entry.get("name") or entry.get("entrypoint")
        label = f'deployment "{named}"' if isinstance(named, str) else label
    try:
        return ProjectDeployment.model_validate(entry)
    except ValidationError as exc:
        raise InvalidProjectFile(f"{source}: {label}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    """Each error as ``key: problem`` (a whole-table problem names its keys itself)."""
    return "; ".join(
        ".".join(str(part) for part in error["loc"])
        + ": " * bool(error["loc"])
        + str(error["msg"]).removeprefix("Value error, ")
        for error in exc.errors(include_url=False)
    )


def _check_unique(deployments: list[ProjectDeployment], source: str) -> None:
    seen: set[tuple[str, str | None]] = set()
    for deployment in deployments:
        key = (deployment.entrypoint, deployment.name)
        if key in seen:
            raise InvalidProjectFile(
                f'{source}: deployment "{deployment.name or deployment.entrypoint}" '
                "is listed twice: give each deployment of a flow its own name"
            )
        seen.add(key)
