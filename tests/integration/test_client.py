"""``get_client()`` as SPEC.md lists it, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, timedelta
from uuid import UUID, uuid4

import pytest

from headrace.client import get_client
from headrace.exceptions import IdempotencyKeyReused, ObjectNotFound, ParameterValidationError
from headrace.flow_runs import NewFlowRun
from headrace.runner import Runner
from headrace.settings import Settings
from headrace.states import State, StateType, utcnow
from headrace.store import RunnerRecord
from tests.flows import basic, extra, nested

pytestmark = pytest.mark.timeout(60)


async def deploy(settings: Settings) -> tuple[UUID, UUID]:
    runner = Runner(settings=settings, handle_signals=False)
    adder = await runner.add_flow(basic.add, "adder", parameters={"y": 10}, tags=["t"])
    shapes = await runner.add_flow(nested.complex_flow, "shapes")
    return adder, shapes


async def test_unknown_ids_raise_object_not_found(settings: Settings) -> None:
    await deploy(settings)
    missing = uuid4()
    async with get_client(settings) as client:
        for method in (
            client.read_deployment,
            client.read_flow_run,
            client.read_logs,
            client.read_state_history,
            client.cancel_flow_run,
            client.create_flow_run_from_deployment,
        ):
            with pytest.raises(ObjectNotFound):
                await method(missing)


async def test_text_no_store_can_keep_is_refused_naming_where(settings: Settings) -> None:
    adder, _ = await deploy(settings)
    async with get_client(settings) as client:
        with pytest.raises(ParameterValidationError) as raised:
            await client.create_flow_run_from_deployment(adder, {"x": 1, "y": ["a\ud800"]})
        assert raised.value.errors == [
            {
                "parameter": "y[0]",
                "message": "strings cannot contain unpaired surrogates (\\ud800-\\udfff)",
            }
        ]
        with pytest.raises(ParameterValidationError, match="NUL"):
            await client.create_flow_run(extra.echo, {"value": "a\x00b"})
        assert await client.read_flow_runs() == []


async def test_deployments_are_read_back(settings: Settings) -> None:
    adder, shapes = await deploy(settings)
    async with get_client(settings) as client:
        deployment = await client.read_deployment(adder)
        listed = await client.read_deployments()
    assert deployment.id == adder
    assert (deployment.flow_name, deployment.name) == ("add", "adder")
    assert deployment.parameters == {"y": 10} and deployment.tags == ["t"]
    assert deployment.entrypoint == "tests.flows.basic:add"
    assert deployment.parameter_schema == basic.add.parameters.model_dump()
    assert {d.id for d in listed} == {adder, shapes}


async def test_runs_from_deployments_merge_defaults_validate_and_are_idempotent(
    settings: Settings,
) -> None:
    adder, shapes = await deploy(settings)
    async with get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(adder, {"x": 1})
        assert run.parameters == {"x": 1, "y": 10}
        assert run.deployment_id == adder and run.flow_name == "add"
        assert run.state.type == StateType.SCHEDULED and run.state.name == "Scheduled"
        overridden = await client.create_flow_run_from_deployment(adder, {"x": 1, "y": 2})
        assert overridden.parameters == {"x": 1, "y": 2}

        with pytest.raises(ParameterValidationError) as bad:
            await client.create_flow_run_from_deployment(adder, {"x": "one", "z": 3})
        assert sorted(bad.value.parameter_names) == ["x", "z"]
        with pytest.raises(ParameterValidationError) as missing:
            await client.create_flow_run_from_deployment(adder)
        assert missing.value.parameter_names == ["x"]
        with pytest.raises(ParameterValidationError) as nested_bad:
            await client.create_flow_run_from_deployment(
                shapes, {"shape": {"name": "s", "points": [{"x": "a", "y": 1}]}}
            )
        assert nested_bad.value.parameter_names == ["shape.points.0.x"]

        first = await client.create_flow_run_from_deployment(adder, {"x": 5}, "key-1")
        again = await client.create_flow_run_from_deployment(adder, {"x": 5, "y": 10}, "key-1")
        assert again.id == first.id and again.parameters == {"x": 5, "y": 10}
        with pytest.raises(IdempotencyKeyReused, match="'key-1'"):
            await client.create_flow_run_from_deployment(adder, {"x": 6}, "key-1")
        other = await client.create_flow_run_from_deployment(adder, {"x": 5}, "key-2")
        assert other.id != first.id

        runs = await client.read_flow_runs(deployment_id=adder)
    assert len(runs) == 4, "invalid triggers create nothing; a repeated key creates nothing"


async def test_ad_hoc_runs_are_validated_and_keep_their_parent(settings: Settings) -> None:
    parent = uuid4()
    async with get_client(settings) as client:
        run = await client.create_flow_run(basic.add, {"x": "3"}, parent_task_run_id=parent)
        assert run.deployment_id is None
        assert run.parameters == {"x": 3}, "coerced, and stored as JSON"
        assert run.parent_task_run_id == parent
        assert run.flow_name == "add"
        with pytest.raises(ParameterValidationError):
            await client.create_flow_run(basic.add, {"x": "three"})
        read = await client.read_flow_run(run.id)
        assert read == run


async def test_a_run_has_every_field_spec_lists(settings: Settings) -> None:
    adder, _ = await deploy(settings)
    async with get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(adder, {"x": 1})
        cancelled = await client.cancel_flow_run(run.id)
        logs = await client.read_logs(run.id)
    data = cancelled.model_dump(mode="json")
    for field in (
        "id",
        "name",
        "flow_name",
        "deployment_id",
        "parameters",
        "parent_task_run_id",
        "created",
        "start_time",
        "end_time",
        "run_count",
    ):
        assert field in data, field
    assert set(data["state"]) >= {"type", "name", "message", "timestamp"}
    assert data["state"]["type"] == "CANCELLED" and data["state"]["name"] == "Cancelled"
    assert cancelled.state.timestamp.tzinfo is not None
    assert cancelled.created.utcoffset() == UTC.utcoffset(None)
    assert len(run.name.split("-")) == 2, "a human-friendly adjective-animal name"
    assert logs == []


@pytest.mark.parametrize("dead", [True, False])
async def test_cancelling_a_run_whose_runner_died_cancels_it_at_once(
    settings: Settings, dead: bool
) -> None:
    """Nobody else may serve its deployment to recover it: the cancel must not hang on."""
    deployment_id, _ = await deploy(settings)
    long_ago = utcnow() - timedelta(
        seconds=settings.runner_heartbeat_timeout_seconds + settings.runner_lease_margin_seconds + 1
    )
    runner = RunnerRecord(name="far-away", host="another-machine", pid=1)
    if dead:
        runner = runner.model_copy(update={"heartbeat": long_ago})
    async with get_client(settings) as client:
        store = client.store.sync
        store.register_runner(runner)
        new = NewFlowRun(flow_name="add", deployment_id=deployment_id)
        run, _ = store.create_flow_run(new)
        store.claim_flow_run(run.id, runner)
        store.set_state(run.id, State(type=StateType.RUNNING), pid=1)
        cancelled = await client.cancel_flow_run(run.id)
    if dead:
        assert cancelled.state.type == StateType.CANCELLED
        assert cancelled.state.message == "Cancelled: its runner far-away had stopped or died"
    else:
        assert cancelled.state.type == StateType.CANCELLING, "its live runner stops it"
