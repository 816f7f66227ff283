"""The orchestration client over a runner's HTTP API, for machines that cannot reach its database.

``get_client()`` gives a ``RemoteClient`` when ``HEADRACE_API_URL`` is set: the
same methods as the store-backed ``HeadraceClient``, each one a request to the
runner's webserver (``Authorization: Bearer HEADRACE_API_KEY``). HTTP errors
become the exceptions the store-backed client raises (404 ``ObjectNotFound``,
409 ``InvalidStateTransition``...). What the API has no route for raises
``NotOverHttp``.

The runner's ``GET /deployments`` lists what it serves, so deployments are
those of that runner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn
from uuid import UUID

import httpx

from headrace.client import HeadraceClient, ServingRunner
from headrace.deployments import Deployment
from headrace.exceptions import (
    HeadraceError,
    IdempotencyKeyReused,
    InvalidStateTransition,
    NotOverHttp,
    ObjectNotFound,
    ParameterValidationError,
    RunnerUnreachable,
)
from headrace.flow_runs import FlowRun, LogRecord
from headrace.notifications import Delivery
from headrace.parameters import jsonable_parameters
from headrace.settings import Settings
from headrace.states import State, StateType
from headrace.task_runs import TaskRun

if TYPE_CHECKING:
    from headrace.flows import Flow

REQUEST_TIMEOUT_SECONDS = 30.0
ERRORS: dict[int, type[HeadraceError]] = {
    404: ObjectNotFound,
    409: InvalidStateTransition,
}


class RemoteClient(HeadraceClient):
    """``HeadraceClient``'s methods as requests to the runner at ``settings.api_url``."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        assert settings.api_url is not None
        self.settings = settings
        self.url = settings.api_url
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self.http = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=REQUEST_TIMEOUT_SECONDS,
            transport=transport,
            trust_env=False,
        )

    async def __aenter__(self) -> RemoteClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The response's JSON, or the error the response means."""
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise RunnerUnreachable(
                f"Cannot reach the headrace API at {self.url} ({_reason(exc)}): "
                "is the runner serving there? (HEADRACE_API_URL)"
            ) from None
        if not response.is_success:
            _raise_for(response, self.url)
        return response.json()

    # -- deployments ----------------------------------------------------------------------

    async def read_deployment(self, deployment_id: UUID) -> Deployment:
        return Deployment.model_validate(
            await self._request("GET", f"/deployments/{deployment_id}")
        )

    async def read_deployments(self) -> list[Deployment]:
        served = await self._request("GET", "/deployments")
        found = await asyncio.gather(*(self.read_deployment(UUID(d["id"])) for d in served))
        return sorted(found, key=lambda d: (d.flow_name, d.name))

    async def read_deployment_by_name(self, flow_name: str, name: str) -> Deployment:
        for deployment in await self.read_deployments():
            if (deployment.flow_name, deployment.name) == (flow_name, name):
                return deployment
        raise ObjectNotFound(f"No deployment {flow_name}/{name}")

    async def read_serving_runners(
        self, deployment_ids: Collection[UUID] | None = None
    ) -> dict[UUID, list[ServingRunner]]:
        if deployment_ids is None:
            deployment_ids = [UUID(d["id"]) for d in await self._request("GET", "/deployments")]
        found: dict[UUID, list[ServingRunner]] = {}
        for deployment_id in deployment_ids:
            data = await self._request("GET", f"/deployments/{deployment_id}")
            runners = [ServingRunner.model_validate(r) for r in data.get("runners", [])]
            if runners:
                found[deployment_id] = runners
        return found

    async def set_deployment_paused(self, deployment_id: UUID, paused: bool) -> Deployment:
        action = "pause" if paused else "resume"
        data = await self._request("POST", f"/deployments/{deployment_id}/{action}")
        return Deployment.model_validate(data)

    async def delete_deployment(self, deployment_id: UUID) -> int:
        data = await self._request("DELETE", f"/deployments/{deployment_id}")
        return int(data["deleted_queued_runs"])

    # -- runs -----------------------------------------------------------------------------

    async def create_flow_run_from_deployment(
        self,
        deployment_id: UUID,
        parameters: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        parent_flow_run_id: UUID | None = None,
        *,
        name: str | None = None,
        expected_start_time: datetime | None = None,
    ) -> FlowRun:
        if parent_flow_run_id is not None:
            _not_over_http("linking a run to the run that started it")
        query: dict[str, str] = {}
        if name is not None:
            query["name"] = name
        if expected_start_time is not None:
            query["start_at"] = expected_start_time.isoformat()
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        created = await self._request(
            "POST",
            f"/deployment/{deployment_id}/run",
            json=jsonable_parameters(parameters),
            params=query,
            headers=headers,
        )
        return await self.read_flow_run(UUID(created["flow_run_id"]))

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
        """A run of ``flow`` by the runner at the URL (``POST /flow/run``); ``runner_name``
        cannot choose another."""
        from headrace.entrypoints import entrypoint_of

        if runner_name is not None:
            _not_over_http("choosing the runner of an ad-hoc run")
        body = {
            "entrypoint": entrypoint or entrypoint_of(flow),
            "parameters": jsonable_parameters(parameters),
            "parent_task_run_id": str(parent_task_run_id) if parent_task_run_id else None,
        }
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        data = await self._request("POST", "/flow/run", json=body, headers=headers)
        return FlowRun.model_validate(data)

    async def read_flow_run(self, flow_run_id: UUID) -> FlowRun:
        return FlowRun.model_validate(await self._request("GET", f"/flow_runs/{flow_run_id}"))

    async def read_flow_run_result(self, flow_run_id: UUID) -> Any:
        """The whole result, as the runner reads it (``GET /flow_runs/{id}/result``)."""
        return await self._request("GET", f"/flow_runs/{flow_run_id}/result")

    async def read_flow_runs(
        self,
        *,
        deployment_id: UUID | None = None,
        flow_name: str | None = None,
        states: Collection[StateType | str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
        parent_flow_run_id: UUID | None = None,
    ) -> list[FlowRun]:
        query = _filters(deployment_id, flow_name, states, since, until, parent_flow_run_id)
        query += [("limit", str(limit)), ("offset", str(offset))]
        found = await self._request("GET", "/flow_runs", params=query)
        return [FlowRun.model_validate(run) for run in found]

    async def count_flow_runs(
        self,
        *,
        deployment_id: UUID | None = None,
        flow_name: str | None = None,
        states: Collection[StateType | str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        parent_flow_run_id: UUID | None = None,
    ) -> dict[StateType, int]:
        query = _filters(deployment_id, flow_name, states, since, until, parent_flow_run_id)
        totals = await self._request("GET", "/flow_runs/totals", params=query)
        return {StateType(state): count for state, count in totals["by_state"].items()}

    async def read_state_history(self, flow_run_id: UUID) -> list[State]:
        data = await self._request("GET", f"/flow_runs/{flow_run_id}")
        return [State.model_validate(state) for state in data["state_history"]]

    async def read_logs(self, flow_run_id: UUID, *, after_id: int = 0) -> list[LogRecord]:
        path = f"/flow_runs/{flow_run_id}/logs"
        lines = await self._request("GET", path, params={"after_id": after_id})
        return [LogRecord.model_validate(line) for line in lines]

    async def read_notification_deliveries(self, flow_run_id: UUID) -> list[Delivery]:
        found = await self._request("GET", f"/flow_runs/{flow_run_id}/notifications")
        return [Delivery.model_validate(delivery) for delivery in found]

    async def read_task_runs(self, flow_run_id: UUID) -> list[TaskRun]:
        found = await self._request("GET", f"/flow_runs/{flow_run_id}/task_runs")
        return [TaskRun.model_validate(task_run) for task_run in found]

    async def cancel_flow_run(self, flow_run_id: UUID) -> FlowRun:
        data = await self._request("POST", f"/flow_runs/{flow_run_id}/cancel")
        return FlowRun.model_validate(data)

    async def retry_flow_run(self, flow_run_id: UUID) -> FlowRun:
        data = await self._request("POST", f"/flow_runs/{flow_run_id}/retry")
        return FlowRun.model_validate(data)

    async def delete_flow_run(self, flow_run_id: UUID) -> None:
        await self._request("DELETE", f"/flow_runs/{flow_run_id}")


def _filters(
    deployment_id: UUID | None,
    flow_name: str | None,
    states: Collection[StateType | str] | None,
    since: datetime | None,
    until: datetime | None,
    parent_flow_run_id: UUID | None = None,
) -> list[tuple[str, str]]:
    """The query ``GET /flow_runs`` and ``GET /flow_runs/totals`` take (``state`` repeats)."""
    query = [("state", StateType(state).value) for state in states or []]
    for key, value in [
        ("deployment_id", deployment_id),
        ("flow_name", flow_name),
        ("since", since.isoformat() if since else None),
        ("until", until.isoformat() if until else None),
        ("parent_flow_run_id", parent_flow_run_id),
    ]:
        if value is not None:
            query.append((key, str(value)))
    return query


def _raise_for(response: httpx.Response, url: str) -> NoReturn:
    """The exception the store-backed client raises for what this response says."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    text = str(body.get("message") or body.get("detail") or response.reason_phrase)
    status = response.status_code
    if status == 401:
        raise HeadraceError(f"API key rejected by {url}: set HEADRACE_API_KEY to its key")
    if status == 400 and isinstance(body.get("errors"), list):
        raise ParameterValidationError(body["errors"], text)
    if status == 422 and "Idempotency-Key" in text:
        raise IdempotencyKeyReused(text)
    raise ERRORS.get(status, HeadraceError)(
        text if status in ERRORS else f"The headrace API at {url} answered {status}: {text}"
    )


def _reason(exc: httpx.TransportError) -> str:
    """Why nothing answered, in a few words."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.TimeoutException):
        return "no answer in time"
    return str(exc) or type(exc).__name__


def _not_over_http(what: str) -> NoReturn:
    raise NotOverHttp.refusing(what)
