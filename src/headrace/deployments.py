"""Deployments: a flow made triggerable under a name, with defaults, schedules and limits.

``Deployment`` is the stored record. ``DeploymentSpec`` is what gets stored
(created or updated, keyed by flow name and deployment name, so ids stay stable
across restarts). ``RunnerDeployment`` is what ``Flow.to_deployment`` returns: a
flow object plus its options, checked when it is built. ``DeploymentOptions``
lists those options once, for every entry point that takes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from typing_extensions import TypedDict, Unpack

from headrace.entrypoints import entrypoint_of
from headrace.exceptions import InvalidDeployment, ParameterValidationError
from headrace.notifications import Notify, notify_targets
from headrace.retries import delay_list
from headrace.schedules import DeploymentSchedule, construct_schedule, next_times

if TYPE_CHECKING:
    from headrace.flows import Flow

OnShutdown = Literal["finish", "requeue", "cancel"]


class DeploymentOptions(TypedDict, total=False):
    """The keywords a deployment is made with.

    ``Flow.to_deployment``, ``Flow.serve``, ``Runner.add_flow`` and
    ``RunnerDeployment`` take them as ``**options``, and ``headrace serve``
    builds them, so each option is written (and type-checked) in one place.
    Left out, an option has the default noted beside it.
    """

    cron: str | None  # None; cron, interval and rrule each add one schedule
    interval: float | timedelta | None  # None; seconds or a timedelta
    rrule: str | None  # None
    timezone: str | None  # None, read as UTC; needs cron, interval or rrule
    schedules: list[DeploymentSchedule] | None  # None; more schedules, as built
    parameters: dict[str, Any] | None  # None; default parameters of every run
    tags: list[str] | None  # None
    description: str | None  # None: the flow's description
    version: str | None  # None: the flow's version
    enforce_parameter_schema: bool  # True
    paused: bool  # False
    catchup: bool  # False: only the most recent missed run is made
    concurrency_limit: int | None  # None: no limit
    on_shutdown: OnShutdown  # "finish"
    entrypoint: str | None  # None: where the flow's function is defined
    notify: list[Notify | str | dict[str, Any]] | None  # None; webhooks of final states


OPTION_NAMES = frozenset(DeploymentOptions.__annotations__)


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
    notify: list[Notify] = Field(default_factory=list)
    """Webhooks: where to POST a run that ends in a chosen final state (``notifications.py``)."""
    retry_delays: list[Annotated[float, Field(ge=0)]] | None = None
    """One delay per retry, the last one repeated (None: ``retry_delay_seconds`` each time)."""
    retry_jitter_factor: float | None = Field(default=None, ge=0)


class Deployment(DeploymentSpec):
    """A stored deployment."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    created: datetime
    updated: datetime
    planning_since: datetime | None = None
    """When a schedule was last added or resumed: catch-up never goes back past it."""


@dataclass(init=False)
class RunnerDeployment:
    """A flow with the options it is served under (``Flow.to_deployment``), checked now."""

    flow: Flow[Any, Any]
    name: str
    entrypoint: str
    parameters: dict[str, Any]
    schedules: list[DeploymentSchedule]
    tags: list[str]
    description: str | None
    version: str | None
    enforce_parameter_schema: bool
    paused: bool
    catchup: bool
    concurrency_limit: int | None
    on_shutdown: OnShutdown
    notify: list[Notify]

    def __init__(
        self, flow: Flow[Any, Any], name: str | None = None, **options: Unpack[DeploymentOptions]
    ) -> None:
        _check_option_names(options)
        self.flow = flow
        self.name = name or flow.name
        self.schedules = [*(options.get("schedules") or []), *_keyword_schedules(options)]
        self.parameters = dict(options.get("parameters") or {})
        self.tags = list(options.get("tags") or [])
        self.description = options.get("description")
        self.version = options.get("version")
        self.enforce_parameter_schema = options.get("enforce_parameter_schema", True)
        self.paused = options.get("paused", False)
        self.catchup = options.get("catchup", False)
        self.concurrency_limit = options.get("concurrency_limit")
        self.on_shutdown = options.get("on_shutdown", "finish")
        self.entrypoint = options.get("entrypoint") or entrypoint_of(flow)
        try:
            self.notify = notify_targets(options.get("notify"))
        except ValueError as exc:
            raise InvalidDeployment(f"Deployment {self.name!r}: {exc}") from None
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
            notify=self.notify,
            retry_delays=delay_list(self.flow.retry_delays),
            retry_jitter_factor=self.flow.retry_jitter_factor,
        )


def _check_option_names(options: Mapping[str, object]) -> None:
    """A misspelt keyword is a TypeError at run time too, as with a written-out signature."""
    unknown = sorted(set(options) - OPTION_NAMES)
    if unknown:
        raise TypeError(
            f"unexpected keyword argument {unknown[0]!r} for a deployment; "
            f"the options are {', '.join(sorted(OPTION_NAMES))}"
        )


def _keyword_schedules(options: DeploymentOptions) -> list[DeploymentSchedule]:
    """The schedule that ``cron``, ``interval`` or ``rrule`` (and ``timezone``) describe."""
    try:
        schedule = construct_schedule(
            cron=options.get("cron"),
            interval=options.get("interval"),
            rrule=options.get("rrule"),
            timezone=options.get("timezone"),
        )
    except ValidationError as exc:
        raise InvalidDeployment(f"Invalid schedule: {describe_invalid(exc)}") from None
    except ValueError as exc:
        raise InvalidDeployment(f"Invalid schedule: {exc}") from None
    return [] if schedule is None else [schedule]
