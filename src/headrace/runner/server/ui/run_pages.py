"""The runs page (filters, pages, live), a run's page (logs tailed live), cancel and retry."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode
from uuid import UUID

from fastapi import FastAPI, Header, Query
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from headrace import new_runs
from headrace.exceptions import InvalidStateTransition, ObjectNotFound
from headrace.flow_runs import FlowRun
from headrace.runner.server.runs import log_id
from headrace.runner.server.ui.context import Dashboard
from headrace.runner.server.ui.http import Dash, back_to, page, wants_fragment
from headrace.runner.server.ui.overview import deployment_names
from headrace.runner.server.watch import SHUTTING_DOWN, log_json, sse_event
from headrace.states import StateType
from headrace.store.dashboard import RunFilter
from headrace.store.records import MAX_PAGE

PAGE_SIZE = 50
MAX_PAGE_NUMBER = 2000
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _when(text: str | None) -> datetime | None:
    """A ``datetime-local`` input's value (UTC), or nothing when empty; ValueError when
    it is no date and time (``xx``, 30 February)."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date and time (YYYY-MM-DDTHH:MM, UTC): this filter was not applied"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _created_between(
    after: str | None, before: str | None
) -> tuple[datetime | None, datetime | None, dict[str, str]]:
    """The creation-time filters, and an error per filter that cannot be read."""
    found: dict[str, datetime | None] = {}
    problems: dict[str, str] = {}
    for name, text in (("after", after), ("before", before)):
        try:
            found[name] = _when(text)
        except ValueError as exc:
            found[name], problems[name] = None, str(exc)
    return found["after"], found["before"], problems


async def runs_page(
    request: Request,
    dash: Dash,
    state: Annotated[list[StateType] | None, Query()] = None,
    deployment: UUID | None = None,
    flow: Annotated[str | None, Query(max_length=1000)] = None,
    after: Annotated[str | None, Query(max_length=40)] = None,
    before: Annotated[str | None, Query(max_length=40)] = None,
    page_number: Annotated[int, Query(alias="page", ge=1, le=MAX_PAGE_NUMBER)] = 1,
    older: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """Runs newest first, filtered by state, deployment, flow and creation time; paginated.
    A time filter that cannot be read is shown with its error (400), not applied."""
    created_after, created_before, problems = _created_between(after, before)
    where = RunFilter(
        states=state,
        deployment_id=deployment,
        flow_name=flow or None,
        created_after=created_after,
        created_before=created_before,
        older_than=_cursor(older),
    )
    offset = 0 if where.older_than else (page_number - 1) * PAGE_SIZE
    runs = await dash.store.read_run_page(where, limit=PAGE_SIZE + 1, offset=offset)
    has_next = len(runs) > PAGE_SIZE
    runs = runs[:PAGE_SIZE]
    query = {
        "state": [s.value for s in state or []],
        "deployment": str(deployment) if deployment else "",
        "flow": flow or "",
        "after": after or "",
        "before": before or "",
    }
    kept = [(k, v) for k, vs in query.items() for v in ([vs] if isinstance(vs, str) else vs) if v]
    values = {
        "runs": runs,
        "names": await deployment_names(dash, runs),
        "query": query,
        "page_number": page_number,
        "prev_url": _page_url(kept, 1) if page_number > 1 else None,
        "next_url": _page_url(kept, page_number + 1, runs[-1]) if has_next else None,
        "live_url": _page_url(kept, page_number, older=older),
    }
    status = 400 if problems else 200
    if wants_fragment(request):
        return page(dash.render("runs_live.html", **values), status)
    values["deployments"] = await _deployment_options(dash, deployment)
    values["states"] = list(StateType)
    return page(dash.render("runs.html", nav="runs", problems=problems, **values), status)


async def _deployment_options(dash: Dashboard, chosen: UUID | None) -> list[tuple[str, str, bool]]:
    """The deployment filter's options: value, label, whether chosen."""
    names = await dash.store.read_deployment_names()
    return [(str(key), label, key == chosen) for key, label in names.items()]


def _page_url(
    kept: list[tuple[str, str]], number: int, after: FlowRun | None = None, older: str | None = None
) -> str:
    """A page's address: pages after the first start after the previous page's last run."""
    query = [*kept, ("page", str(number))]
    if after is not None:
        older = f"{after.created.isoformat()}|{after.id}"
    if older and number > 1:
        query.append(("older", older))
    return "/ui/runs?" + urlencode(query)


def _cursor(text: str | None) -> tuple[datetime, UUID] | None:
    """``<created>|<id>`` of the run a page continues after; nothing when unreadable."""
    if not text or "|" not in text:
        return None
    created, _, run_id = text.partition("|")
    try:
        when, after = datetime.fromisoformat(created), UUID(run_id)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)), after


async def run_page(request: Request, dash: Dash, flow_run_id: UUID) -> Response:
    """A run: state and attempts, timeline, parameters, result, parent and children, task
    runs, logs."""
    store = dash.store
    run = await store.read_flow_run(flow_run_id)
    history = await store.read_state_history(flow_run_id)
    children = await store.read_child_runs(flow_run_id)
    task_runs = await store.read_task_runs(flow_run_id)
    parent_id = getattr(run, "parent_flow_run_id", None)
    names = await deployment_names(dash, [run, *children])
    values = {
        "run": run,
        "history": history,
        "children": children,
        "task_runs": task_runs,
        "parent_id": parent_id,
        "names": names,
    }
    if wants_fragment(request):
        return page(dash.render("run_live.html", **values))
    return page(dash.render("run.html", nav="runs", **values))


async def run_logs(
    dash: Dash,
    flow_run_id: UUID,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """The run's log lines as Server-Sent Events, from the first (or after the one a
    reconnecting browser names), until the run has ended; 400 for a ``Last-Event-ID``
    that is no log line's id, as ``GET /flow_runs/{id}/logs`` answers."""
    after = log_id(last_event_id)
    await dash.store.read_flow_run(flow_run_id)  # 404 before streaming
    return StreamingResponse(
        tail_logs(dash, flow_run_id, after), media_type="text/event-stream", headers=SSE_HEADERS
    )


async def tail_logs(dash: Dashboard, flow_run_id: UUID, after: int) -> AsyncIterator[bytes]:
    """New log lines each time the shared watcher says something changed; an ``end`` event
    once the run has ended and every line written before its end was sent."""
    last = after
    async for _ in dash.live.changes(dash.closing):
        ended = (await dash.store.read_flow_run(flow_run_id)).state
        while True:  # read after the state: a run's lines are stored before its end
            lines = await dash.store.read_logs(flow_run_id, after_id=last)
            for line in lines:
                last = line.id
                yield sse_event(log_json(line), event_id=line.id)
            if len(lines) < MAX_PAGE:
                break
        if ended.is_terminal:
            yield sse_event({"state": ended.model_dump(mode="json")}, event="end")
            return
    yield sse_event({"state": None, "reason": SHUTTING_DOWN}, event="end")


async def events(dash: Dash) -> Response:
    """``change`` whenever runs may have changed: open pages re-read their live regions."""

    async def stream() -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        async for _ in dash.live.changes(dash.closing):
            yield sse_event({}, event="change")

    return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)


async def cancel(dash: Dash, flow_run_id: UUID) -> Response:
    """Cancel the run (a run already ended stays as it is)."""
    with contextlib.suppress(InvalidStateTransition):  # it ended meanwhile: its page says how
        await dash.store.request_cancellation(flow_run_id)
    return back_to(f"/ui/runs/{flow_run_id}")


async def retry(dash: Dash, flow_run_id: UUID) -> Response:
    """A new run of the same deployment with the same parameters."""
    run = await dash.store.read_flow_run(flow_run_id)
    if run.deployment_id is None:
        raise ObjectNotFound("Only a deployment's runs can be run again from the dashboard")
    deployment = await dash.store.read_deployment(run.deployment_id)
    new = new_runs.for_deployment(deployment, run.parameters, flow=dash.flows.get(deployment.id))
    created, _ = await dash.store.create_flow_run(new)
    return back_to(f"/ui/runs/{created.id}")


def add_run_pages(app: FastAPI) -> None:
    add = app.add_api_route
    add("/ui/runs", runs_page, methods=["GET"], include_in_schema=False)
    add("/ui/runs/{flow_run_id}", run_page, methods=["GET"], include_in_schema=False)
    add("/ui/runs/{flow_run_id}/logs", run_logs, methods=["GET"], include_in_schema=False)
    add("/ui/runs/{flow_run_id}/cancel", cancel, methods=["POST"], include_in_schema=False)
    add("/ui/runs/{flow_run_id}/retry", retry, methods=["POST"], include_in_schema=False)
    add("/ui/events", events, methods=["GET"], include_in_schema=False)
