"""The overview page (runners' health, runs per hour, failures, next runs) and the runners page."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from headrace.flow_runs import FlowRun
from headrace.runner.server.ui.charts import hourly_bars
from headrace.runner.server.ui.context import Dashboard
from headrace.runner.server.ui.http import Dash, page, wants_fragment
from headrace.states import StateType, utcnow
from headrace.store import RunnerRecord

LISTED = 10


@dataclass
class RunnerHealth:
    """A runner as the pages show it."""

    record: RunnerRecord
    alive: bool
    running: int
    limit: int | None
    backlog: int | None
    serves: int
    local: bool


async def runner_health(dash: Dashboard) -> list[RunnerHealth]:
    """Every known runner, live ones first: its heartbeat, runs held, limit and backlog,
    all as the database has them, whichever process serves the page."""
    store = dash.store
    # At once: on PostgreSQL each runs on a thread and connection of its own.
    records, running, serving, (due_by_deployment, due_by_runner) = await asyncio.gather(
        store.read_runners(),
        store.count_running_by_runner(),
        store.read_served_deployment_ids(),
        store.count_due_runs(),
    )
    now = utcnow()
    timeout = timedelta(seconds=dash.settings.runner_heartbeat_timeout_seconds)
    local = dash.local_runner()
    found = []
    for record in records:
        alive = record.presumed_alive(now, timeout)
        served = serving.get(record.id, [])
        backlog = None
        if alive:
            backlog = due_by_runner.get(record.id, 0)
            backlog += sum(due_by_deployment.get(d, 0) for d in served)
        found.append(
            RunnerHealth(
                record=record,
                alive=alive,
                running=running.get(record.id, 0),
                limit=record.process_limit,
                backlog=backlog,
                serves=len(served),
                local=record.id == local,
            )
        )
    return found


async def deployment_names(dash: Dashboard, runs: list[FlowRun]) -> dict[UUID, str]:
    ids = {run.deployment_id for run in runs if run.deployment_id is not None}
    return await dash.store.read_deployment_names(ids) if ids else {}


async def overview(request: Request, dash: Dash) -> Response:
    """Runners' health, runs ended per hour, recent failures, the next scheduled runs."""
    store = dash.store
    now = utcnow()
    counts, failures, upcoming, runners = await asyncio.gather(
        dash.hourly.read(store, now),
        store.read_recent_failures(LISTED),
        store.read_next_scheduled(LISTED),
        runner_health(dash),
    )
    values = {
        "runners": runners,
        "chart": hourly_bars(counts, now),
        "totals": _totals(counts),
        "failures": failures,
        "upcoming": upcoming,
        "names": await deployment_names(dash, failures + upcoming),
    }
    if wants_fragment(request):
        return page(dash.render("overview_live.html", **values))
    return page(dash.render("overview.html", nav="overview", **values))


def _totals(counts: dict[tuple[str, StateType], int]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for (_, state), n in counts.items():
        totals[state.value] = totals.get(state.value, 0) + n
    return totals


async def runners_page(request: Request, dash: Dash) -> Response:
    """Every runner: name, host, pid, heartbeat age, runs held, alive or presumed dead."""
    values = {"runners": await runner_health(dash)}
    if wants_fragment(request):
        return page(dash.render("runners_live.html", **values))
    return page(dash.render("runners.html", nav="runners", **values))


def add_overview_routes(app: FastAPI) -> None:
    app.add_api_route("/ui/", overview, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ui/runners", runners_page, methods=["GET"], include_in_schema=False)
