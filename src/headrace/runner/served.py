"""What a runner serves: its deployments as last stored, and the flows behind them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from uuid import UUID

from headrace.deployments import Deployment, OnShutdown
from headrace.entrypoints import split_entrypoint
from headrace.exceptions import InvalidEntrypoint
from headrace.flow_runs import FlowRun
from headrace.store import AsyncStore

if TYPE_CHECKING:
    from headrace.flows import Flow


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
