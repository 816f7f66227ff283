"""The deployments page, a deployment's page with its run form, and the actions on them.

The run form is validated as ``POST /deployment/{id}/run`` validates a body
(``new_runs.for_deployment``, with the served flow when this runner serves
the deployment): the same errors, shown next to their fields. It is refused
as that route refuses when the backlog is full: 429, the form shown again
with the reason, no run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from uuid import UUID

from fastapi import FastAPI, Query
from starlette.requests import Request
from starlette.responses import Response

from headrace import new_runs
from headrace.deployments import Deployment
from headrace.exceptions import ParameterValidationError
from headrace.runner.server.backlog import BacklogFull
from headrace.runner.server.ui.charts import DurationPoint, duration_dots
from headrace.runner.server.ui.context import Dashboard
from headrace.runner.server.ui.forms import Field, build_fields, place_errors, read_form, refill
from headrace.runner.server.ui.http import Dash, back_to, page, wants_fragment
from headrace.runner.server.ui.http import read_form as read_body
from headrace.runner.server.ui.schedule_words import describe, describe_stored
from headrace.states import utcnow
from headrace.store.dashboard import DeploymentSummary, RunFilter
from headrace.store.records import RunnerRecord

RECENT_RUNS = 20
DEPLOYMENTS_PER_PAGE = 100
MAX_PAGE_NUMBER = 1000
CHART_RUNS = 200


@dataclass
class DeploymentRow:
    deployment: DeploymentSummary
    schedules: list[str]
    runners: list[RunnerRecord]
    next_time: object
    last_run: object


async def _serving(dash: Dashboard, ids: list[UUID]) -> dict[UUID, list[RunnerRecord]]:
    """The live runners serving each of these deployments (runners are few: read them all)."""
    timeout = timedelta(seconds=dash.settings.runner_heartbeat_timeout_seconds)
    now = utcnow()
    wanted = set(ids)
    served, runners = await asyncio.gather(
        dash.store.read_served_deployment_ids(), dash.store.read_runners()
    )
    found: dict[UUID, list[RunnerRecord]] = {}
    for runner in runners:
        if not runner.presumed_alive(now, timeout):
            continue
        for deployment_id in served.get(runner.id, ()):
            if deployment_id in wanted:
                found.setdefault(deployment_id, []).append(runner)
    return found


async def deployments_page(
    request: Request,
    dash: Dash,
    page_number: Annotated[int, Query(alias="page", ge=1, le=MAX_PAGE_NUMBER)] = 1,
) -> Response:
    """Deployments by name: flow, schedule in words, next and last run, paused, runners."""
    store = dash.store
    offset = (page_number - 1) * DEPLOYMENTS_PER_PAGE
    deployments = await store.read_deployment_page(DEPLOYMENTS_PER_PAGE + 1, offset)
    has_next = len(deployments) > DEPLOYMENTS_PER_PAGE
    deployments = deployments[:DEPLOYMENTS_PER_PAGE]
    ids = [d.id for d in deployments]
    latest, upcoming, serving = await asyncio.gather(
        store.read_latest_runs(ids), store.read_next_run_times(ids), _serving(dash, ids)
    )
    rows = [
        DeploymentRow(
            deployment=d,
            schedules=[describe_stored(s) for s in d.schedules],
            runners=serving.get(d.id, []),
            next_time=upcoming.get(d.id),
            last_run=latest.get(d.id),
        )
        for d in deployments
    ]
    values = {
        "rows": rows,
        "page_number": page_number,
        "live_url": f"/ui/deployments?page={page_number}",
        "prev_url": f"/ui/deployments?page={page_number - 1}" if page_number > 1 else None,
        "next_url": f"/ui/deployments?page={page_number + 1}" if has_next else None,
    }
    template = "deployments_live.html" if wants_fragment(request) else "deployments.html"
    return page(dash.render(template, nav="deployments", **values))


async def deployment_page(request: Request, dash: Dash, deployment_id: UUID) -> Response:
    """A deployment: its run form, recent runs, and its runs' durations over time."""
    deployment = await dash.store.read_deployment(deployment_id)
    if wants_fragment(request):
        return page(dash.render("deployment_live.html", **await _runs_of(dash, deployment)))
    fields = build_fields(deployment.parameter_schema, deployment.parameters)
    return await _deployment_view(dash, deployment, fields, [], 200)


async def _runs_of(dash: Dashboard, deployment: Deployment) -> dict[str, object]:
    store = dash.store
    recent, briefs = await asyncio.gather(
        store.read_run_page(RunFilter(deployment_id=deployment.id), RECENT_RUNS),
        store.read_run_briefs(deployment.id, CHART_RUNS),
    )
    points = [
        DurationPoint(b.end_time, (b.end_time - b.start_time).total_seconds(), b.state_type)
        for b in reversed(briefs)
        if b.start_time is not None and b.end_time is not None
    ]
    return {"deployment": deployment, "runs": recent, "chart": duration_dots(points)}


async def _deployment_view(
    dash: Dashboard,
    deployment: Deployment,
    fields: list[Field],
    problems: list[str],
    status: int,
    headers: dict[str, str] | None = None,
) -> Response:
    serving, runs = await asyncio.gather(
        _serving(dash, [deployment.id]), _runs_of(dash, deployment)
    )
    values = {
        **runs,
        "fields": fields,
        "problems": problems,
        "schedules": [describe(s) for s in deployment.schedules],
        "runners": serving.get(deployment.id, []),
    }
    response = page(dash.render("deployment.html", nav="deployments", **values), status)
    response.headers.update(headers or {})
    return response


async def trigger(request: Request, dash: Dash, deployment_id: UUID) -> Response:
    """Create a run from the form, or show the form again with each error at its field,
    or with the reason the backlog refused it."""
    deployment = await dash.store.read_deployment(deployment_id)
    form = await read_body(request)
    fields = build_fields(deployment.parameter_schema, deployment.parameters)
    parameters, errors = read_form(fields, form)
    if not errors:
        try:
            new = new_runs.for_deployment(
                deployment, parameters, flow=dash.flows.get(deployment.id)
            )
        except ParameterValidationError as exc:
            errors = {str(e["parameter"]): str(e["message"]) for e in exc.errors}
        else:
            queued = await dash.queue_run(new)
            if not isinstance(queued, BacklogFull):
                return back_to(f"/ui/runs/{queued.id}")
            refill(fields, form)
            reason = f"{queued.message}; retry in {queued.retry_after_seconds} s"
            return await _deployment_view(dash, deployment, fields, [reason], 429, queued.headers)
    refill(fields, form)
    problems = place_errors(fields, errors)
    return await _deployment_view(dash, deployment, fields, problems, 400)


async def pause(dash: Dash, deployment_id: UUID) -> Response:
    await dash.store.set_deployment_paused(deployment_id, True)
    return back_to(f"/ui/deployments/{deployment_id}")


async def resume(dash: Dash, deployment_id: UUID) -> Response:
    await dash.store.set_deployment_paused(deployment_id, False)
    return back_to(f"/ui/deployments/{deployment_id}")


def add_deployment_routes(app: FastAPI) -> None:
    add = app.add_api_route
    add("/ui/deployments", deployments_page, methods=["GET"], include_in_schema=False)
    add(
        "/ui/deployments/{deployment_id}", deployment_page, methods=["GET"], include_in_schema=False
    )
    add("/ui/deployments/{deployment_id}/run", trigger, methods=["POST"], include_in_schema=False)
    add("/ui/deployments/{deployment_id}/pause", pause, methods=["POST"], include_in_schema=False)
    add("/ui/deployments/{deployment_id}/resume", resume, methods=["POST"], include_in_schema=False)
