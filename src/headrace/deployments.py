"""Deployments: a flow made triggerable under a name, with defaults, schedules and limits.

``Deployment`` is the stored record. ``DeploymentSpec`` is what gets stored
(created or updated, keyed by flow name and deployment name, so ids stay stable
across restarts). ``RunnerDeployment`` is what ``Flow.to_deployment`` returns: a
flow object plus its options, checked when it is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from headrace.entrypoints import entrypoint_of
from headrace.exceptions import InvalidDeployment, ParameterValidationError
from headrace.schedules import DeploymentSchedule, next_times

if TYPE_CHECKING:
    from headrace.flows import Flow

OnShutdown = Literal["finish", "requeue", "cancel"]


def describe_invalid(exc: ValidationError) -> str:
    """A pydantic error as one line a user can act on: each field and what is wrong with it."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: "
        + str(error["msg"]).removeprefix("Value error, ")
        for error in exc.errors(include_url=False)
    )


class DeploymentSpec(BaseModel):
    """Everything a deployment is, except its identity and timestamps."""

    name: str = Field(min_length=1)
    flow_name: str = Field(min_length=1)
    entrypoint: str | None = None
    parameter_schema: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, Any] = Field(default_factory=dict)
    enforce_parameter_schema: bool = True
    schedules: list[DeploymentSchedule] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    description: str | None = None
    version: str | None = None
    paused: bool = False
    catchup: bool = False
    concurrency_limit: int | None = Field(default=None, ge=1)
    on_shutdown: OnShutdown = "finish"
    retries: int = Field(default=0, ge=0)
    retry_delay_seconds: float = Field(default=0, ge=0)
    timeout_seconds: float | None = Field(default=None, gt=0)


class Deployment(DeploymentSpec):
    """A stored deployment."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    created: datetime
    updated: datetime
    planning_since: datetime | None = None
    """When a schedule was last added or resumed: catch-up never goes back past it."""


@dataclass
class RunnerDeployment:
    """A flow with the options it is served under (``Flow.to_deployment``)."""

    flow: Flow[Any, Any]
    name: str
    entrypoint: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    schedules: list[DeploymentSchedule] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    description: str | None = None
    version: str | None = None
    enforce_parameter_schema: bool = True
    paused: bool = False
    catchup: bool = False
    concurrency_limit: int | None = None
    on_shutdown: OnShutdown = "finish"

    def __post_init__(self) -> None:
        if self.entrypoint is None:
            self.entrypoint = entrypoint_of(self.flow)
        self._check_defaults()
        try:
            self.to_spec()  # its options (limits, policies) are checked now, not when served
        except ValidationError as exc:
            raise InvalidDeployment(f"Deployment {self.name!r}: {describe_invalid(exc)}") from None

    def _check_defaults(self) -> None:
        """Bad default parameters, and schedules that never fire again, are errors now."""
        try:
            self.flow.check_default_parameters(self.parameters)
        except ParameterValidationError as exc:
            raise InvalidDeployment(
                f"Deployment {self.name!r} has invalid default parameters: {exc}"
            ) from exc
        now = datetime.now(UTC)
        for number, schedule in enumerate(self.schedules, start=1):
            try:
                self.flow.check_default_parameters({**self.parameters, **schedule.parameters})
            except ParameterValidationError as exc:
                raise InvalidDeployment(
                    f"Deployment {self.name!r}: schedule {number} has invalid parameters: {exc}"
                ) from exc
            try:
                fires = not schedule.active or bool(next_times(schedule, after=now, count=1))
            except OverflowError:  # checked here, not by the model: stored records still load
                raise InvalidDeployment(
                    f"Deployment {self.name!r}: schedule {number} cannot be planned: "
                    "its times leave the calendar (after the year 9999)"
                ) from None
            if not fires:
                raise InvalidDeployment(
                    f"Deployment {self.name!r}: schedule {number} never fires after now"
                )

    def to_spec(self) -> DeploymentSpec:
        return DeploymentSpec(
            name=self.name,
            flow_name=self.flow.name,
            entrypoint=self.entrypoint,
            parameter_schema=self.flow.parameters.model_dump(),
            parameters=self.parameters,
            enforce_parameter_schema=self.enforce_parameter_schema,
            schedules=self.schedules,
            tags=self.tags,
            description=self.description or self.flow.description,
            version=self.version or self.flow.version,
            paused=self.paused,
            catchup=self.catchup,
            concurrency_limit=self.concurrency_limit,
            on_shutdown=self.on_shutdown,
            retries=self.flow.retries,
            retry_delay_seconds=self.flow.retry_delay_seconds,
            timeout_seconds=self.flow.timeout_seconds,
        )
