"""The deployments page, a deployment's page with its run form, and the actions on them.

The run form is validated as ``POST /deployment/{id}/run`` validates a body
(``new_runs.for_deployment``, with the served flow when this runner serves
the deployment): the same errors, shown next to their fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from headrace import new_runs
from headrace.deployments import Deployment
from headrace.exceptions import ParameterValidationError
from headrace.runner.server.ui.charts import DurationPoint, duration_dots
from headrace.runner.server.ui.context import Dashboard
from headrace.runner.server.ui.forms import Field, build_fields, place_errors, read_form, refill
from headrace.runner.server.ui.http import Dash, back_to, page, wants_fragment
from headrace.runner.server.ui.http import read_form as read_body
from headrace.runner.server.ui.schedule_words import describe
from headrace.states import utcnow
from headrace.store.dashboard import RunFilter
from headrace.store.records import RunnerRecord

RECENT_RUNS = 20
CHART_RUNS = 200


@dataclass
class DeploymentRow:
    deployment: Deployment
    schedules: list[str]
    runners: list[RunnerRecord]
    next_time: object
    last_run: object


async def _serving(dash: Dashboard, ids: list[UUID]) -> dict[UUID, list[RunnerRecord]]:
    from datetime import timedelta

    timeout = timedelta(seconds=dash.settings.runner_heartbeat_timeout_seconds)
    now = utcnow()
    found: dict[UUID, list[RunnerRecord]] = {}
    for deployment_id, runner in await dash.store.read_serving_runners(ids):
        if runner.presumed_alive(now, timeout):
            found.setdefault(deployment_id, []).append(runner)
    return found


async def deployments_page(request: Request, dash: Dash) -> Response:
    """Every deployment: flow, schedule in words, next and last run, paused, its runners."""
    store = dash.store
    deployments = sorted(await store.read_deployments(), key=lambda d: (d.flow_name, d.name))
    ids = [d.id for d in deployments]
    latest = await store.read_latest_runs(ids)
    upcoming = await store.read_next_run_times()
    serving = await _serving(dash, ids)
    rows = [
        DeploymentRow(
            deployment=d,
            schedules=[describe(s) for s in d.schedules],
            runners=serving.get(d.id, []),
            next_time=upcoming.get(d.id),
            last_run=latest.get(d.id),
        )
        for d in deployments
    ]
    template = "deployments_live.html" if wants_fragment(request) else "deployments.html"
    return page(dash.render(template, nav="deployments", rows=rows))


async def deployment_page(request: Request, dash: Dash, deployment_id: UUID) -> Response:
    """A deployment: its run form, recent runs, and its runs' durations over time."""
    deployment = await dash.store.read_deployment(deployment_id)
    if wants_fragment(request):
        return page(dash.render("deployment_live.html", **await _runs_of(dash, deployment)))
    fields = build_fields(deployment.parameter_schema, deployment.parameters)
    return await _deployment_view(dash, deployment, fields, [], 200)


async def _runs_of(dash: Dashboard, deployment: Deployment) -> dict[str, object]:
    recent = await dash.store.read_run_page(
        RunFilter(deployment_id=deployment.id), limit=CHART_RUNS
    )
    ended = [r for r in reversed(recent) if r.start_time is not None and r.end_time is not None]
    points = [
        DurationPoint(r.end_time, (r.end_time - r.start_time).total_seconds(), r.state.type)
        for r in ended
        if r.end_time is not None and r.start_time is not None
    ]
    return {"deployment": deployment, "runs": recent[:RECENT_RUNS], "chart": duration_dots(points)}


async def _deployment_view(
    dash: Dashboard, deployment: Deployment, fields: list[Field], problems: list[str], status: int
) -> Response:
    serving = await _serving(dash, [deployment.id])
    values = {
        **await _runs_of(dash, deployment),
        "fields": fields,
        "problems": problems,
        "schedules": [describe(s) for s in deployment.schedules],
        "runners": serving.get(deployment.id, []),
    }
    return page(dash.render("deployment.html", nav="deployments", **values), status)


async def trigger(request: Request, dash: Dash, deployment_id: UUID) -> Response:
    """Create a run from the form, or show the form again with each error at its field."""
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
            run, _ = await dash.store.create_flow_run(new)
            return back_to(f"/ui/runs/{run.id}")
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
