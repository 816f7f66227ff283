"""The orchestration client: read and create deployments and runs, read logs, cancel.

``get_client()`` talks to the store directly (there is no separate API server
to run). The store tells the runners serving its database of the runs it
creates and cancels, so local work never waits for a poll.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from uuid import UUID

from headrace.deployments import Deployment
from headrace.exceptions import ParameterValidationError
from headrace.flow_runs import FlowRun, LogRecord, NewFlowRun
from headrace.jsonvalues import find_unstorable
from headrace.names import default_runner_name
from headrace.settings import Settings, load_settings
from headrace.states import State, StateType
from headrace.store import AsyncStore, SQLStore
from headrace.validation import validate_with_schema

if TYPE_CHECKING:
    from headrace.flows import Flow

_stores: dict[str, AsyncStore] = {}
_stores_lock = threading.Lock()


def store_for(settings: Settings) -> AsyncStore:
    """One store per database URL per process: engines and migrations are paid for once."""
    url = settings.resolved_database_url
    with _stores_lock:
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = AsyncStore(SQLStore(url))
        return store


class HeadraceClient:
    """Reads and writes deployments and flow runs through the store."""

    def __init__(self, store: AsyncStore) -> None:
        self.store = store

    async def read_deployment(self, deployment_id: UUID) -> Deployment:
        return await self.store.read_deployment(deployment_id)

    async def read_deployment_by_name(self, flow_name: str, name: str) -> Deployment:
        return await self.store.read_deployment_by_name(flow_name, name)

    async def read_deployments(self) -> list[Deployment]:
        return await self.store.read_deployments()

    async def create_flow_run_from_deployment(
        self,
        deployment_id: UUID,
        parameters: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> FlowRun:
        """Queue a run of a deployment: parameters merged over its defaults and checked."""
        deployment = await self.store.read_deployment(deployment_id)
        _check_storable(parameters)
        new = new_run_for_deployment(deployment, parameters, idempotency_key=idempotency_key)
        run, _ = await self.store.create_flow_run(new)
        return run

    async def create_flow_run(
        self,
        flow: Flow[Any, Any],
        parameters: dict[str, Any] | None = None,
        parent_task_run_id: UUID | None = None,
        *,
        entrypoint: str | None = None,
        runner_name: str | None = None,
        idempotency_key: str | None = None,
    ) -> FlowRun:
        """Queue an ad-hoc run of ``flow`` (no deployment) for the runner named ``runner_name``.

        By default that is this host's default runner name, which a ``Runner()``
        created without a name has: a local runner picks the run up at once.
        """
        from headrace.deployments import entrypoint_of

        checked = flow.validate_json_parameters(parameters or {})
        _check_storable(checked)
        new = NewFlowRun(
            flow_name=flow.name,
            entrypoint=entrypoint or entrypoint_of(flow),
            parameters=checked,
            parent_task_run_id=parent_task_run_id,
            idempotency_key=idempotency_key,
            max_retries=flow.retries,
            retry_delay_seconds=flow.retry_delay_seconds,
            timeout_seconds=flow.timeout_seconds,
            runner_name=runner_name or default_runner_name(),
        )
        run, _ = await self.store.create_flow_run(new)
        return run

    async def read_flow_run(self, flow_run_id: UUID) -> FlowRun:
        return await self.store.read_flow_run(flow_run_id)

    async def read_flow_runs(
        self,
        *,
        deployment_id: UUID | None = None,
        flow_name: str | None = None,
        states: Collection[StateType | str] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[FlowRun]:
        """Runs matching every given filter, newest first."""
        return await self.store.read_flow_runs(
            deployment_id=deployment_id,
            flow_name=flow_name,
            states=None if states is None else [StateType(s) for s in states],
            limit=limit,
            offset=offset,
        )

    async def read_state_history(self, flow_run_id: UUID) -> list[State]:
        await self.store.read_flow_run(flow_run_id)  # unknown ids raise ObjectNotFound
        return await self.store.read_state_history(flow_run_id)

    async def read_logs(self, flow_run_id: UUID, *, after_id: int = 0) -> list[LogRecord]:
        await self.store.read_flow_run(flow_run_id)  # unknown ids raise ObjectNotFound
        return await self.store.read_logs(flow_run_id, after_id=after_id)

    async def cancel_flow_run(self, flow_run_id: UUID) -> FlowRun:
        """Cancel a run: at once if it has not started, else its runner kills it."""
        return await self.store.request_cancellation(flow_run_id)


def _check_storable(parameters: dict[str, Any] | None) -> None:
    """Refuse text no store can keep (NUL, unpaired surrogates), naming where it is."""
    if parameters and (problem := find_unstorable(parameters)):
        where, what = problem
        raise ParameterValidationError([{"parameter": where or "parameters", "message": what}])


def new_run_for_deployment(
    deployment: Deployment,
    parameters: dict[str, Any] | None,
    *,
    idempotency_key: str | None = None,
    flow: Flow[Any, Any] | None = None,
) -> NewFlowRun:
    """The run a trigger of ``deployment`` creates; raises if the parameters are invalid.

    With the deployment's ``flow`` at hand (a runner serving it), the parameters
    are checked as the run's process will check them; elsewhere against the
    stored JSON schema, which cannot see every rule (a duration's text, say).
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
        max_retries=deployment.retries,
        retry_delay_seconds=deployment.retry_delay_seconds,
        timeout_seconds=deployment.timeout_seconds,
    )


@asynccontextmanager
async def get_client(settings: Settings | None = None) -> AsyncIterator[HeadraceClient]:
    """The orchestration client for the configured database (``HEADRACE_DATABASE_URL``)."""
    yield HeadraceClient(store_for(settings or load_settings()))
