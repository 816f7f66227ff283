"""Runners as the store sees them: their records and heartbeats, the deployments each
serves, the runs they hold, and the ad-hoc runs addressed to them.

A run of no deployment carries the id of the one runner that may claim it
(``flow_runs.runner_id`` while it is SCHEDULED). When that runner is gone,
recovery moves the run to a live runner that can load it, or ends it.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from headrace.flow_runs import FlowRun
from headrace.states import ACTIVE_STATES, StateType, utcnow
from headrace.store.connection import SQLBase
from headrace.store.records import MAX_PAGE, RunnerRecord
from headrace.store.rows import owned_by, run_with_runner_from_row
from headrace.store.tables import flow_runs, runner_deployments, runners

FORGET_SERVING_AFTER = timedelta(days=7)
"""A runner silent this long no longer shows as serving anything: it died long ago."""


class Runners(SQLBase):
    """Runner records, the deployments each serves, and the runs that depend on a runner
    being alive."""

    def register_runner(self, runner: RunnerRecord) -> None:
        with self._write() as conn:
            conn.execute(runners.insert().values(**runner.model_dump()))

    def heartbeat(
        self,
        runner_id: UUID,
        *,
        stopped: bool = False,
        serving: Collection[UUID] | None = None,
    ) -> None:
        """Show the runner alive (or stopped); ``serving`` replaces the deployments it serves.

        A stopped runner serves nothing any more, so its deployments are cleared.
        """
        now = utcnow()
        values: dict[str, Any] = {"heartbeat": now}
        if stopped:
            values["stopped"] = now
            serving = ()
        with self._write() as conn:
            conn.execute(runners.update().where(runners.c.id == runner_id).values(**values))
            if serving is not None:
                self._replace_serving(
                    conn, runner_id, serving, forget_before=now - FORGET_SERVING_AFTER
                )

    def _replace_serving(
        self,
        conn: sa.Connection,
        runner_id: UUID,
        serving: Collection[UUID],
        *,
        forget_before: datetime,
    ) -> None:
        long_silent = sa.select(runners.c.id).where(runners.c.heartbeat < forget_before)
        conn.execute(
            runner_deployments.delete().where(
                (runner_deployments.c.runner_id == runner_id)
                | runner_deployments.c.runner_id.in_(long_silent)
            )
        )
        if serving:
            conn.execute(
                runner_deployments.insert(),
                [{"runner_id": runner_id, "deployment_id": d} for d in set(serving)],
            )

    def read_serving_runners(
        self, deployment_ids: Collection[UUID] | None = None
    ) -> list[tuple[UUID, RunnerRecord]]:
        """(deployment id, runner) for each runner serving these deployments (or any),
        most recent heartbeat first; stopped runners serve nothing."""
        query = (
            sa.select(runner_deployments.c.deployment_id, runners)
            .join(runners, runners.c.id == runner_deployments.c.runner_id)
            .order_by(runners.c.heartbeat.desc(), runners.c.id)
            .limit(MAX_PAGE)
        )
        if deployment_ids is not None:
            query = query.where(runner_deployments.c.deployment_id.in_(list(deployment_ids)))
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [(row.deployment_id, RunnerRecord.model_validate(row._asdict())) for row in rows]

    def read_runner(self, runner_id: UUID) -> RunnerRecord | None:
        """The runner of this id, if it ever registered here."""
        with self._read() as conn:
            row = conn.execute(sa.select(runners).where(runners.c.id == runner_id)).first()
        return None if row is None else RunnerRecord.model_validate(row._asdict())

    def read_live_runner(self, name: str) -> RunnerRecord | None:
        """The runner of this name that has not stopped and beat last, if any."""
        query = (
            sa.select(runners)
            .where((runners.c.name == name) & runners.c.stopped.is_(None))
            .order_by(runners.c.heartbeat.desc())
            .limit(1)
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else RunnerRecord.model_validate(row._asdict())

    def read_active_runs(
        self, deployment_ids: Collection[UUID], ad_hoc: bool = False
    ) -> list[tuple[FlowRun, RunnerRecord | None]]:
        """Runs owned by a runner (PENDING/RUNNING/CANCELLING), each with that runner's record:
        those of these deployments, and with ``ad_hoc`` every run of no deployment."""
        owned = owned_by(deployment_ids, None)
        if ad_hoc:
            owned |= flow_runs.c.deployment_id.is_(None)
        return self._runs_with_runners(
            flow_runs.c.state_type.in_([s.value for s in ACTIVE_STATES]) & owned
        )

    def read_addressed_runs(self, except_runner: UUID) -> list[tuple[FlowRun, RunnerRecord | None]]:
        """Queued ad-hoc runs addressed to another runner than ``except_runner``, each with
        that runner's record (None when it is unknown)."""
        return self._runs_with_runners(
            (flow_runs.c.state_type == StateType.SCHEDULED.value)
            & flow_runs.c.deployment_id.is_(None)
            & flow_runs.c.parent_flow_run_id.is_(None)  # a subflow's run: never taken over
            & flow_runs.c.runner_id.is_not(None)
            & (flow_runs.c.runner_id != except_runner)
        )

    def readdress_flow_run(self, flow_run_id: UUID, from_id: UUID, to: RunnerRecord) -> bool:
        """Send a queued run addressed to runner ``from_id`` to runner ``to`` instead.

        A compare-and-set: False when the run was claimed, ended or sent elsewhere first.
        """
        query = (
            flow_runs.update()
            .where(
                (flow_runs.c.id == flow_run_id)
                & (flow_runs.c.state_type == StateType.SCHEDULED.value)
                & (flow_runs.c.runner_id == from_id)
            )
            .values(runner_id=to.id, runner_name=to.name, updated=utcnow())
        )
        with self._write() as conn:
            return conn.execute(query).rowcount == 1

    def _runs_with_runners(
        self, condition: sa.ColumnElement[bool]
    ) -> list[tuple[FlowRun, RunnerRecord | None]]:
        query = (
            sa.select(flow_runs, *[c.label(f"runner__{c.name}") for c in runners.c])
            .select_from(flow_runs.outerjoin(runners, runners.c.id == flow_runs.c.runner_id))
            .where(condition)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [run_with_runner_from_row(row._asdict()) for row in rows]
