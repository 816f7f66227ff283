"""Webhook targets on deployments and delivery records, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command

from headrace.deployments import DeploymentSpec
from headrace.exceptions import StoreError
from headrace.flow_runs import NewFlowRun
from headrace.notifications import HIDDEN, Delivery, Notify
from headrace.states import State, StateType, utcnow
from headrace.store import SQLStore
from headrace.store.migrate import _config


def delivery(run_id: object, attempt: int, **fields: object) -> Delivery:
    return Delivery.model_validate(
        {
            "flow_run_id": run_id,
            "url": "http://127.0.0.1:9/hook",
            "event": "flow_run.failed",
            "attempt": attempt,
            "timestamp": utcnow(),
            **fields,
        }
    )


def test_a_deployments_targets_keep_their_secret_in_the_store_only(store: SQLStore) -> None:
    target = Notify(url="https://example.com/hook", states=["COMPLETED"], secret="s3cret")
    stored = store.upsert_deployment(
        DeploymentSpec(name="d", flow_name="etl", notify=[target, Notify(url="http://a.b/")])
    )
    again = store.read_deployment(stored.id)
    assert again.notify == [target, Notify(url="http://a.b/")]
    assert again.notify[0].secret == "s3cret"
    shown = again.model_dump(mode="json")["notify"]
    assert shown[0] == {"url": target.url, "states": ["COMPLETED"], "secret": HIDDEN}
    assert shown[1] == {"url": "http://a.b/", "states": ["FAILED", "CRASHED"], "secret": None}
    cleared = store.upsert_deployment(DeploymentSpec(name="d", flow_name="etl"))
    assert cleared.id == stored.id and cleared.notify == []


def test_deliveries_are_read_in_order_and_go_with_their_run(store: SQLStore) -> None:
    deployment = store.upsert_deployment(DeploymentSpec(name="d", flow_name="etl"))
    (run, _), (other, _) = store.create_flow_runs(
        [NewFlowRun(flow_name="etl", deployment_id=deployment.id)] * 2
    )
    first = store.record_delivery(delivery(run.id, 1, status_code=500, error=None))
    store.record_delivery(delivery(run.id, 2, error="ConnectError: refused"))
    store.record_delivery(delivery(run.id, 3, status_code=200, delivered=True))
    store.record_delivery(delivery(other.id, 1, status_code=204, delivered=True))
    found = store.read_deliveries(run.id)
    assert [(d.attempt, d.status_code, d.error, d.delivered) for d in found] == [
        (1, 500, None, False),
        (2, None, "ConnectError: refused", False),
        (3, 200, None, True),
    ]
    assert found[0] == first and first.id > 0
    store.set_state(run.id, State(type=StateType.CANCELLED))
    store.delete_flow_run(run.id)
    assert store.read_deliveries(run.id) == []
    assert len(store.read_deliveries(other.id)) == 1
    try:
        store.record_delivery(delivery(run.id, 4))
    except StoreError:
        pass  # its run is gone
    else:
        raise AssertionError("a delivery of a deleted run was stored")


def test_the_webhook_migration_goes_down_and_up_again(database_url: str) -> None:
    store = SQLStore(database_url)
    try:
        kept = store.upsert_deployment(DeploymentSpec(name="d", flow_name="etl"))
        with store.engine.begin() as conn:
            command.downgrade(_config(conn), "0007")  # type: ignore[arg-type]
        with store.engine.begin() as conn:
            command.upgrade(_config(conn), "head")  # type: ignore[arg-type]
        assert store.read_deployment(kept.id).notify == []  # rows from before have none
    finally:
        store.close()
