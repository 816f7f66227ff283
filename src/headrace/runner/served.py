"""What a runner serves: its deployments as last stored, and the flows behind them.

A flow served from a script file follows the file: its runs load the script as
it is on disk, so ``FlowFile`` lets the webserver load it again once it changed
and check a trigger's parameters against the flow the run will execute.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from headrace.deployments import Deployment, OnShutdown
from headrace.entrypoints import (
    flow_attribute,
    is_file_entrypoint,
    load_script_as_module,
    resolve_script,
    split_entrypoint,
)
from headrace.exceptions import EntrypointError, InvalidEntrypoint
from headrace.flow_runs import FlowRun
from headrace.store import AsyncStore

if TYPE_CHECKING:
    from headrace.flows import Flow

logger = logging.getLogger(__name__)


class FlowFile:
    """A served flow and the script it came from, loaded again when the file changes.

    ``changed()`` is one ``stat``, cheap enough for every trigger; the script is
    executed again only when its modification time differs from the last seen.
    """

    def __init__(self, flow: Flow[Any, Any], path: Path, name: str) -> None:
        self.flow = flow
        self.path = path
        self.name = name
        self.mtime_ns = _mtime_ns(path)
        self.lock = asyncio.Lock()

    @classmethod
    def of(cls, deployment: Deployment, flow: Flow[Any, Any] | None) -> FlowFile | None:
        """The file behind a deployment's flow; None for a module entrypoint (its runs
        import the module once, so it does not follow edits) or no flow at hand."""
        entrypoint = deployment.entrypoint
        if flow is None or not entrypoint or not is_file_entrypoint(entrypoint):
            return None
        where, name = split_entrypoint(entrypoint)
        try:
            return cls(flow, resolve_script(where), name)
        except EntrypointError:
            return None

    def changed(self) -> bool:
        return _mtime_ns(self.path) != self.mtime_ns

    async def current(self) -> tuple[Flow[Any, Any], bool]:
        """The flow as the file now defines it, and whether its parameters just changed."""
        if not self.changed():
            return self.flow, False
        async with self.lock:  # one reload; triggers arriving meanwhile wait for its result
            if not self.changed():
                return self.flow, False
            changed = await asyncio.to_thread(self._reload)
            return self.flow, changed

    def _reload(self) -> bool:
        """Execute the changed script again; a version that fails keeps the flow as it was."""
        mtime_ns = _mtime_ns(self.path)
        try:
            flow = flow_attribute(load_script_as_module(self.path), str(self.path), self.name)
        except EntrypointError as exc:
            logger.warning("%s changed but cannot be loaded: %s", self.path, exc)
            return False
        finally:
            self.mtime_ns = mtime_ns  # each version of the file is tried once
        changed = flow.parameters.model_dump() != self.flow.parameters.model_dump()
        self.flow = flow
        return changed


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


class ServedDeployments:
    """The deployments a runner claims runs of, and the rules they set for those runs."""

    def __init__(self) -> None:
        self.deployments: dict[UUID, Deployment] = {}
        self.flows: dict[UUID, Flow[Any, Any]] = {}
        """The flow objects, as registered: the webserver checks parameters with them."""

    @property
    def ids(self) -> set[UUID]:
        return set(self.deployments)

    def add(self, deployment: Deployment, flow: Flow[Any, Any]) -> None:
        self.deployments[deployment.id] = deployment
        self.flows[deployment.id] = flow

    async def refresh(self, store: AsyncStore) -> None:
        """Take the stored definitions: another process may have registered a newer one
        (a changed schedule, limit or pause) since this runner registered its own."""
        if self.deployments:
            for deployment in await store.read_deployments(self.ids):
                self.deployments[deployment.id] = deployment

    def entrypoints(self) -> list[str]:
        """What the runs' processes will load: a fork server imports these ahead of time."""
        return [d.entrypoint for d in self.deployments.values() if d.entrypoint]

    def entrypoint_for(self, run: FlowRun) -> str | None:
        """The run's own entrypoint, else its deployment's (runs queued by bare clients)."""
        if run.entrypoint or run.deployment_id is None:
            return run.entrypoint
        deployment = self.deployments.get(run.deployment_id)
        return deployment.entrypoint if deployment else None

    def can_load(self, entrypoint: str | None) -> bool:
        """Whether a run of ``entrypoint`` can run here: a served deployment's flow comes
        from the same file or module (an ad-hoc run of a runner that is gone moves here)."""
        if not entrypoint:
            return False
        where = _source(entrypoint)
        served = (d.entrypoint for d in self.deployments.values() if d.entrypoint)
        return any(_source(served_entrypoint) == where for served_entrypoint in served)

    def concurrency_limits(self) -> Mapping[UUID, int]:
        return {
            d.id: d.concurrency_limit
            for d in self.deployments.values()
            if d.concurrency_limit is not None
        }

    def on_shutdown(self, run: FlowRun) -> OnShutdown:
        """What becomes of ``run`` when its runner stops before it ends."""
        deployment = self.deployments.get(run.deployment_id) if run.deployment_id else None
        return deployment.on_shutdown if deployment else "finish"


def _source(entrypoint: str) -> str:
    """The file or module part of an entrypoint."""
    try:
        return split_entrypoint(entrypoint)[0]
    except InvalidEntrypoint:
        return entrypoint
