"""The orchestration client: read and create deployments and runs, read logs, cancel.

``get_client()`` talks to the store directly (there is no separate API server
to run), or, with ``HEADRACE_API_URL`` set, to a runner's HTTP API (``remote.py``).
The store tells the runners serving its database of the runs it creates and
cancels, so local work never waits for a poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from headrace import new_runs
from headrace.deployments import Deployment
from headrace.entrypoints import entrypoint_of
from headrace.exceptions import InvalidStateTransition, ObjectNotFound
from headrace.flow_runs import FlowRun, LogRecord, NewFlowRun
from headrace.notifications import Delivery
from headrace.parameters import jsonable_parameters
from headrace.process.results import result_of
from headrace.settings import Settings, load_settings
from headrace.states import State, StateType, utcnow
from headrace.store import AsyncStore, open_store
from headrace.task_runs import TaskRun

if TYPE_CHECKING:
    from headrace.flows import Flow


class ServingRunner(BaseModel):
    """A runner serving a deployment, and whether it is alive by its last heartbeat."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    name: str
    host: str
    pid: int
    started: datetime
    heartbeat: datetime
    alive: bool


class HeadraceClient:
    """Reads and writes deployments and flow runs through the store.

    Runs are returned as readers see them: an overdue SCHEDULED run is named
    Late (``HEADRACE_LATE_RUNS_AFTER_SECONDS``).
    """

    def __init__(self, store: AsyncStore, settings: Settings | None = None) -> None:
        self.store = store
        self.settings = settings or load_settings()

    def _seen(self, run: FlowRun) -> FlowRun:
        return run.as_seen(utcnow(), self.settings.late_runs_after_seconds)

    async def read_serving_runners(
        self, deployment_ids: Collection[UUID] | None = None
    ) -> dict[UUID, list[ServingRunner]]:
        """The runners serving each of these deployments (or each deployment), most recent
        heartbeat first; alive by the heartbeat timeout runners go by before taking over
        another's runs. A deployment nobody serves is left out."""
        timeout = timedelta(seconds=self.settings.runner_heartbeat_timeout_seconds)
        now = utcnow()
        found: dict[UUID, list[ServingRunner]] = {}
        for deployment_id, record in await self.store.read_serving_runners(deployment_ids):
            alive = record.presumed_alive(now, timeout)
            runner = ServingRunner(**record.model_dump(exclude={"stopped"}), alive=alive)
            found.setdefault(deployment_id, []).append(runner)
        return found

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
        parent_flow_run_id: UUID | None = None,
        *,
        name: str | None = None,
        expected_start_time: datetime | None = None,
    ) -> FlowRun:
        """Queue a run of a deployment: parameters merged over its defaults and checked.

        Values are taken as pydantic's JSON mode encodes them (a model, a date,
        an enum, a UUID); NaN and infinities are refused, naming the parameter.
        A known ``idempotency_key`` gives back its run; ``IdempotencyKeyReused`` when
        that run was created with other (merged) parameters. ``name`` replaces the
        generated one; with ``expected_start_time`` the run waits until then.
        """
        parameters = jsonable_parameters(parameters)
        deployment = await self.store.read_deployment(deployment_id)
        new_runs.check_storable(parameters)
        new = new_runs.for_deployment(deployment, parameters, idempotency_key=idempotency_key)
        new = new.model_copy(update={"name": name, "expected_start_time": expected_start_time})
        if parent_flow_run_id is not None:  # started by that run (``run_deployment``)
            new = new.model_copy(update={"parent_flow_run_id": parent_flow_run_id})
        run, _ = await self.store.create_flow_run(new)
        return self._seen(run)

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
        """Queue an ad-hoc run of ``flow`` (no deployment).

        By default no runner claims it: ``runner.execute_flow_run(run.id)`` runs
        it, in whichever process calls it. With ``runner_name``, the live runner
        of that name claims it (``ObjectNotFound`` when there is none).
        Values are taken as ``create_flow_run_from_deployment`` takes them.
        """
        runner = None
        if runner_name is not None:
            runner = await self.store.read_live_runner(runner_name)
            if runner is None:
                raise ObjectNotFound(f"No runner named {runner_name!r} is running")
        new = new_runs.for_flow(
            flow,
            jsonable_parameters(parameters),
            entrypoint=entrypoint or entrypoint_of(flow),
            runner_id=runner.id if runner else None,
            runner_name=runner_name,
            parent_task_run_id=parent_task_run_id,
            idempotency_key=idempotency_key,
        )
        new_runs.check_storable(new.parameters)
        run, _ = await self.store.create_flow_run(new)
        return self._seen(run)

    async def read_flow_run(self, flow_run_id: UUID) -> FlowRun:
        return self._seen(await self.store.read_flow_run(flow_run_id))

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
        """Runs matching every given filter, newest first (``since``/``until``: created;
        ``parent_flow_run_id``: the runs that run started, its subflows among them)."""
        runs = await self.store.read_flow_runs(
            parent_flow_run_id=parent_flow_run_id,
            deployment_id=deployment_id,
            flow_name=flow_name,
            states=None if states is None else [StateType(s) for s in states],
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )
        return [self._seen(run) for run in runs]

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
        """How many runs match every given filter (as ``read_flow_runs``), by state."""
        return await self.store.count_flow_runs(
            parent_flow_run_id=parent_flow_run_id,
            deployment_id=deployment_id,
            flow_name=flow_name,
            states=None if states is None else [StateType(s) for s in states],
            since=since,
            until=until,
        )

    async def read_flow_run_result(self, flow_run_id: UUID) -> Any:
        """The whole result of a COMPLETED run, from the result store when it was too large
        for the run's row (see ``results.py``).

        ``InvalidStateTransition`` when the run has no result: it has not completed, or
        its result could not be kept (the message says why).
        """
        run = await self.store.read_flow_run(flow_run_id)
        return await asyncio.to_thread(result_of, run)  # may read a file or a URL

    async def read_state_history(self, flow_run_id: UUID) -> list[State]:
        await self.store.read_flow_run(flow_run_id)  # unknown ids raise ObjectNotFound
        return await self.store.read_state_history(flow_run_id)

    async def read_logs(self, flow_run_id: UUID, *, after_id: int = 0) -> list[LogRecord]:
        await self.store.read_flow_run(flow_run_id)  # unknown ids raise ObjectNotFound
        return await self.store.read_logs(flow_run_id, after_id=after_id)

    async def read_notification_deliveries(self, flow_run_id: UUID) -> list[Delivery]:
        """Every attempt to deliver the run's webhooks, oldest first."""
        await self.store.read_flow_run(flow_run_id)  # unknown ids raise ObjectNotFound
        return await self.store.read_deliveries(flow_run_id)

    async def read_task_runs(self, flow_run_id: UUID) -> list[TaskRun]:
        """A run's task runs, in the order they started; ObjectNotFound for an unknown run."""
        return await self.store.read_task_runs(flow_run_id)

    async def cancel_flow_run(self, flow_run_id: UUID) -> FlowRun:
        """Cancel a run: at once if it has not started, else its runner kills it; at once
        too when that runner is dead (no runner may serve its deployment to recover it)."""
        run = await self.store.request_cancellation(flow_run_id)
        if run.state.type == StateType.CANCELLING and run.runner_id is not None:
            run = await self._cancel_if_runner_dead(run, run.runner_id)
        return self._seen(run)

    async def _cancel_if_runner_dead(self, run: FlowRun, runner_id: UUID) -> FlowRun:
        """As a recovering runner would: past the heartbeat timeout and the lease margin,
        a runner has killed its runs itself (its lease lapsed), or died with them."""
        runner = await self.store.read_runner(runner_id)
        settings = self.settings
        seconds = settings.runner_heartbeat_timeout_seconds + settings.runner_lease_margin_seconds
        if runner is None or runner.presumed_alive(utcnow(), timedelta(seconds=seconds)):
            return run
        message = f"Cancelled: its runner {runner.name} had stopped or died"
        with contextlib.suppress(InvalidStateTransition):  # it ended meanwhile
            return await self.store.set_state(
                run.id, State(type=StateType.CANCELLED, message=message), expected=[run.state.type]
            )
        return await self.store.read_flow_run(run.id)

    async def set_deployment_paused(self, deployment_id: UUID, paused: bool) -> Deployment:
        """Pause (or resume) a deployment's schedules; its runners follow at their next poll.

        A runner that registers the deployment again (a restarted ``headrace serve``)
        sets the pause it was given.
        """
        return await self.store.set_deployment_paused(deployment_id, paused)

    async def delete_deployment(self, deployment_id: UUID) -> int:
        """Delete a deployment and its queued runs; its other runs stay, with no deployment.

        Refused (``InvalidStateTransition``) while a live runner serves it or one of its
        runs is being executed. Returns how many queued runs were deleted.
        """
        serving = (await self.read_serving_runners([deployment_id])).get(deployment_id, [])
        alive = [runner.name for runner in serving if runner.alive]
        if alive:
            raise InvalidStateTransition(
                f"Runner {', '.join(sorted(alive))} serves this deployment: stop it first"
            )
        return await self.store.delete_deployment(deployment_id)

    async def retry_flow_run(self, flow_run_id: UUID) -> FlowRun:
        """A new run of an ended run's deployment (or flow) with the same parameters.

        The deployment's current definition applies (its retries, timeout, schema).
        """
        run = await self.store.read_flow_run(flow_run_id)
        if not run.state.type.is_terminal:
            raise InvalidStateTransition(
                f"Flow run {run.name} has not ended ({run.state.type.value}): "
                "only an ended run can be retried"
            )
        if run.deployment_id is not None:
            deployment = await self.store.read_deployment(run.deployment_id)
            new = new_runs.for_deployment(deployment, run.parameters)
        else:
            new = NewFlowRun(
                flow_name=run.flow_name,
                entrypoint=run.entrypoint,
                parameters=run.parameters,
                max_retries=run.max_retries,
                retry_delay_seconds=run.retry_delay_seconds,
                timeout_seconds=run.timeout_seconds,
                retry_delays=run.retry_delays,
                retry_jitter_factor=run.retry_jitter_factor,
                runner_id=run.runner_id,
                runner_name=run.runner_name,
            )
        created, _ = await self.store.create_flow_run(new)
        return self._seen(created)

    async def delete_flow_run(self, flow_run_id: UUID) -> None:
        """Delete an ended run, its state history and its logs."""
        await self.store.delete_flow_run(flow_run_id)

    async def read_deployment_by_ref(self, ref: str) -> Deployment:
        """A deployment by id, by ``flow/deployment``, or by a name only one deployment has.

        Names may hold ``/``, so every split of ``ref`` is tried as flow and name.
        """
        try:
            deployment_id = UUID(ref)
        except ValueError:
            pass
        else:
            return await self.read_deployment(deployment_id)
        for index, char in enumerate(ref):
            if char == "/":
                with contextlib.suppress(ObjectNotFound):
                    return await self.read_deployment_by_name(ref[:index], ref[index + 1 :])
        if "/" not in ref:
            matches = [d for d in await self.read_deployments() if ref in (d.name, d.flow_name)]
            if len(matches) == 1:
                return matches[0]
            if matches:
                candidates = ", ".join(sorted(f"{d.flow_name}/{d.name}" for d in matches))
                raise ObjectNotFound(  # not one deployment: a user error, as an unknown name is
                    f"{ref!r} names more than one deployment: give one of {candidates}"
                )
        raise ObjectNotFound(
            f"No deployment {ref!r}: give FLOW/DEPLOYMENT or an id "
            "(`headrace deployments ls` lists them)"
        )


@asynccontextmanager
async def get_client(settings: Settings | None = None) -> AsyncIterator[HeadraceClient]:
    """The orchestration client for the configured database (``HEADRACE_DATABASE_URL``), or,
    with ``HEADRACE_API_URL`` set, for the runner's HTTP API there (``headrace.remote``)."""
    settings = settings or load_settings()
    if settings.api_url:
        from headrace.remote import RemoteClient  # httpx, only for those who use it

        async with RemoteClient(settings) as client:
            yield client
        return
    yield HeadraceClient(open_store(settings), settings)
