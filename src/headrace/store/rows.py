"""Rows and value objects: how stored rows become frozen objects, and new runs become rows."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa

from headrace.exceptions import IdempotencyKeyReused
from headrace.flow_runs import FlowRun, NewFlowRun
from headrace.names import generate_run_name
from headrace.states import State, StateType
from headrace.store.records import RunnerRecord
from headrace.store.tables import UTCDateTime, flow_runs

NOT_A_SUBFLOW = flow_runs.c.parent_flow_run_id.is_(None)
"""An ad-hoc run that is not a subflow's: a subflow run is executed inside its parent's
process, never claimed on its own (it has no entrypoint to load)."""

Owner = tuple[Collection[UUID], UUID | None]
"""Whose runs: these deployments' runs, and the ad-hoc runs of the runner of this id."""


def owned_by(deployment_ids: Collection[UUID], runner_id: UUID | None) -> sa.ColumnElement[bool]:
    """Runs of these deployments, or ad-hoc runs (no deployment) addressed to this runner."""
    clauses: list[sa.ColumnElement[bool]] = []
    if deployment_ids:
        clauses.append(flow_runs.c.deployment_id.in_(list(deployment_ids)))
    if runner_id is not None:
        clauses.append(
            flow_runs.c.deployment_id.is_(None)
            & (flow_runs.c.runner_id == runner_id)
            & NOT_A_SUBFLOW
        )
    return sa.or_(sa.false(), *clauses)


def as_utc(value: Any, dialect: sa.Dialect) -> datetime:
    """Aggregates (min, max) may bypass the column type on SQLite: normalise to aware UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    result = UTCDateTime().process_result_value(value, dialect)
    assert result is not None
    return result


def lock_key(deployment_id: UUID) -> int:
    return int.from_bytes(deployment_id.bytes[:8], "big", signed=True)


def idempotency_scope(new: NewFlowRun) -> str:
    """Idempotency keys are unique per deployment (per flow for runs without one)."""
    return str(new.deployment_id) if new.deployment_id else f"flow:{new.flow_name}"


def known_run(conn: sa.Connection, new: NewFlowRun) -> FlowRun | None:
    """The run of ``new``'s idempotency key, if any, checked to have its parameters."""
    key = new.idempotency_key
    if key is None:
        return None
    scope = idempotency_scope(new)
    row = conn.execute(
        flow_runs.select().where(
            (flow_runs.c.idempotency_scope == scope) & (flow_runs.c.idempotency_key == key)
        )
    ).first()
    return None if row is None else same_request(flow_run_from_row(row._asdict()), new)


def same_request(existing: FlowRun, new: NewFlowRun) -> FlowRun:
    """``existing``, the run stored under ``new``'s idempotency key, if ``new`` asks for the
    same parameters; else ``IdempotencyKeyReused``, naming the key.

    Parameters are compared as runs store them: after the deployment's defaults are
    merged and the flow's validation has coerced them, key order aside.
    """
    if _canonical(existing.parameters) != _canonical(new.parameters):
        raise IdempotencyKeyReused(
            f"Idempotency key {new.idempotency_key!r} was already used with different "
            f"parameters (flow run {existing.id}); use a new key to start another run"
        )
    return existing


def checked_creation(
    result: tuple[FlowRun, bool], new: NewFlowRun
) -> tuple[FlowRun, bool] | IdempotencyKeyReused:
    """A batch's ``(run, created)`` for ``new``; the error when its key's run differs."""
    run, created = result
    if created or new.idempotency_key is None:
        return result
    try:
        return same_request(run, new), False
    except IdempotencyKeyReused as error:
        return error


def _canonical(parameters: Mapping[str, Any]) -> str:
    return json.dumps(parameters, sort_keys=True, default=str)


def new_run_values(new: NewFlowRun, scope: str, now: datetime) -> dict[str, Any]:
    return {
        "id": uuid4(),
        "name": new.name or generate_run_name(),
        "flow_name": new.flow_name,
        "deployment_id": new.deployment_id,
        "entrypoint": new.entrypoint,
        "parameters": new.parameters,
        "parent_task_run_id": new.parent_task_run_id,
        "idempotency_scope": scope,
        "idempotency_key": new.idempotency_key,
        "state_type": StateType.SCHEDULED.value,
        "state_name": new.state_name,
        "state_message": new.state_message,
        "state_timestamp": now,
        "expected_start_time": new.expected_start_time or now,
        "run_count": 0,
        "max_retries": new.max_retries,
        "retry_delay_seconds": new.retry_delay_seconds,
        "timeout_seconds": new.timeout_seconds,
        "runner_id": new.runner_id,
        "runner_name": new.runner_name,
        "created": now,
        "updated": now,
        # Only when there is one: inserts stay valid on a schema a test migrated down.
        **({"traceparent": new.traceparent} if new.traceparent else {}),
        **_retry_policy(new),
        # Only when set: a store migrated back below 0008 still takes other runs.
        **({"parent_flow_run_id": new.parent_flow_run_id} if new.parent_flow_run_id else {}),
    }


def _retry_policy(new: NewFlowRun) -> dict[str, Any]:
    """The retry delay list and jitter, when the run has them (most have neither)."""
    policy = {"retry_delays": new.retry_delays, "retry_jitter_factor": new.retry_jitter_factor}
    return {name: value for name, value in policy.items() if value is not None}


def state_values(state: State) -> dict[str, Any]:
    return {
        "state_type": state.type.value,
        "state_name": state.name,
        "state_message": state.message,
        "state_timestamp": state.timestamp,
    }


def state_names(states: Collection[StateType]) -> str:
    return " or ".join(sorted(s.value for s in states))


def flow_run_from_row(values: Mapping[str, Any]) -> FlowRun:
    data = {
        k: v for k, v in values.items() if not k.startswith("state_") and k != "idempotency_scope"
    }
    data["state"] = State(
        type=values["state_type"],
        name=values["state_name"],
        message=values["state_message"],
        timestamp=values["state_timestamp"],
    )
    return FlowRun.model_validate(data)


def run_with_runner_from_row(values: Mapping[str, Any]) -> tuple[FlowRun, RunnerRecord | None]:
    runner = {k.removeprefix("runner__"): v for k, v in values.items() if k.startswith("runner__")}
    run = flow_run_from_row({k: v for k, v in values.items() if not k.startswith("runner__")})
    return run, (RunnerRecord.model_validate(runner) if runner.get("id") else None)
