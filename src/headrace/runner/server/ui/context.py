"""What every dashboard page shares: the store, settings, templates and the live watcher."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import jinja2

from headrace.flow_runs import FlowRun, NewFlowRun
from headrace.runner.server.backlog import BacklogFull
from headrace.runner.server.ui import formatting
from headrace.runner.server.ui.hourly import HourlyCounts
from headrace.runner.server.ui.live import LiveRuns
from headrace.settings import Settings
from headrace.store import AsyncStore

if TYPE_CHECKING:
    from headrace.flows import Flow

HERE = Path(__file__).parent


def environment() -> jinja2.Environment:
    """Templates with autoescape on: every value from a run is shown as text."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters.update(formatting.FILTERS)
    return env


@dataclass
class Dashboard:
    """The dashboard over one database; ``flows`` are those this process serves (a
    runner's), which check a trigger's parameters as the runner's own route does."""

    store: AsyncStore
    settings: Settings
    live: LiveRuns
    flows: dict[UUID, Flow[Any, Any]] = field(default_factory=dict)
    local_runner: Callable[[], UUID | None] = lambda: None
    """The id of the runner in this process, if any: its row is marked "this server"."""
    queue: Callable[[NewFlowRun], Awaitable[FlowRun | BacklogFull]] | None = None
    """Queues a run form's run as this server's ``POST /deployment/{id}/run`` does, backlog
    check and all: the refusal when the backlog is full. None: straight into the store."""
    closing: Callable[[], bool] = lambda: False
    templates: jinja2.Environment = field(default_factory=environment)
    hourly: HourlyCounts = field(default_factory=HourlyCounts)

    def __post_init__(self) -> None:
        self.templates.globals["key_required"] = bool(self.settings.api_key)

    def render(self, name: str, **values: Any) -> str:
        return self.templates.get_template(name).render(**values)

    async def queue_run(self, new: NewFlowRun) -> FlowRun | BacklogFull:
        if self.queue is not None:
            return await self.queue(new)
        run, _ = await self.store.create_flow_run(new)
        return run
