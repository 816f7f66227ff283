"""The run each trigger creates: from a deployment, of a flow, or planned by a schedule.

Every way of starting a run (the client, the runner's HTTP routes, schedules)
builds its ``NewFlowRun`` here, so they agree on what a run copies from what
started it and on how its parameters are checked: by pydantic where the flow
object is loaded, else against the deployment's stored JSON schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypedDict

from headrace.deployments import Deployment
from headrace.exceptions import ParameterValidationError
from headrace.flow_runs import NewFlowRun
from headrace.jsonvalues import find_unstorable
from headrace.parameters import validate_with_schema
from headrace.planning import PlannedRun
from headrace.retries import delay_list

if TYPE_CHECKING:
    from uuid import UUID

    from headrace.flows import Flow


class _HasRunPolicy(Protocol):
    """A ``Deployment`` or a ``Flow``: what a run copies its retries and timeout from."""

    @property
    def retries(self) -> int: ...
    @property
    def retry_delay_seconds(self) -> float: ...
    @property
    def timeout_seconds(self) -> float | None: ...
    @property
    def retry_delays(self) -> list[float] | None: ...
    @property
    def retry_jitter_factor(self) -> float | None: ...


class _RunPolicy(TypedDict):
    max_retries: int
    retry_delay_seconds: float
    timeout_seconds: float | None
    retry_delays: list[float] | None
    retry_jitter_factor: float | None


def for_deployment(
    deployment: Deployment,
    parameters: dict[str, Any] | None,
    *,
    flow: Flow[Any, Any] | None = None,
    idempotency_key: str | None = None,
) -> NewFlowRun:
    """A triggered run of ``deployment``: its parameters merged over the defaults, checked.

    Raises ``ParameterValidationError`` when they are invalid. With the
    deployment's ``flow`` at hand (a runner serving it), they are checked as the
    run's process will check them, by pydantic; elsewhere against the stored
    JSON schema, which cannot see every rule (a duration's text, say).
    """
    merged = {**deployment.parameters, **(parameters or {})}
    if deployment.enforce_parameter_schema:
        if flow is not None:
            merged = flow.validate_json_parameters(merged)
        elif deployment.parameter_schema:
            validate_with_schema(deployment.parameter_schema, merged)
    return NewFlowRun(
        flow_name=deployment.flow_name,
        deployment_id=deployment.id,
        entrypoint=deployment.entrypoint,
        parameters=merged,
        idempotency_key=idempotency_key,
        **_policy(deployment),
    )


def for_flow(
    flow: Flow[Any, Any],
    parameters: dict[str, Any] | None,
    *,
    entrypoint: str,
    runner_id: UUID | None = None,
    runner_name: str | None = None,
    parent_task_run_id: UUID | None = None,
    idempotency_key: str | None = None,
) -> NewFlowRun:
    """An ad-hoc run of ``flow`` (no deployment) for the runner ``runner_id`` (named
    ``runner_name``), the only one that claims it; with none, only
    ``Runner.execute_flow_run`` does.

    The flow is loaded, so pydantic checks the parameters; raises
    ``ParameterValidationError`` when they are invalid.
    """
    return NewFlowRun(
        flow_name=flow.name,
        entrypoint=entrypoint,
        parameters=flow.validate_json_parameters(parameters or {}),
        parent_task_run_id=parent_task_run_id,
        idempotency_key=idempotency_key,
        runner_id=runner_id,
        runner_name=runner_name,
        **_policy(flow),
    )


def for_schedule(deployment: Deployment, planned: PlannedRun) -> NewFlowRun:
    """A run a schedule of ``deployment`` planned: keyed by its time, so it is made once."""
    return NewFlowRun(
        flow_name=deployment.flow_name,
        deployment_id=deployment.id,
        entrypoint=deployment.entrypoint,
        parameters={**deployment.parameters, **planned.parameters},
        idempotency_key=planned.idempotency_key,
        expected_start_time=planned.scheduled_time,
        state_name="Late" if planned.late else "Scheduled",
        **_policy(deployment),
    )


def check_storable(parameters: dict[str, Any] | None) -> None:
    """Refuse text no store can keep (NUL, unpaired surrogates), naming where it is."""
    if parameters and (problem := find_unstorable(parameters)):
        where, what = problem
        raise ParameterValidationError([{"parameter": where or "parameters", "message": what}])


def _policy(source: _HasRunPolicy) -> _RunPolicy:
    """The retries, retry delay and timeout a run takes from what started it."""
    return {
        "max_retries": source.retries,
        "retry_delay_seconds": source.retry_delay_seconds,
        "timeout_seconds": source.timeout_seconds,
        "retry_delays": delay_list(source.retry_delays or []),
        "retry_jitter_factor": source.retry_jitter_factor,
    }
