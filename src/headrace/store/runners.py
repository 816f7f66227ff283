"""Runner records: who is alive (heartbeats) and which deployments each serves."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from headrace.states import utcnow
from headrace.store.connection import SQLBase
from headrace.store.records import MAX_PAGE, RunnerRecord
from headrace.store.tables import runner_deployments, runners

FORGET_SERVING_AFTER = timedelta(days=7)
"""A runner silent this long no longer shows as serving anything: it died long ago."""


class Runners(SQLBase):
    """Registration, heartbeats and the deployments each runner serves."""

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
