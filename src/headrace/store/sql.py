"""The SQL store: every database read and write headrace makes, on SQLite or PostgreSQL.

``SQLStore`` is the one narrow interface: deployments and runs here;
claims in ``claims.py``; logs in ``logs.py``; state changes in
``transitions.py``; runners in ``runners.py``; engine and transactions in
``connection.py``. Rows leave as frozen value objects, and driver errors as
``StoreError``/``StoreUnavailable``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from headrace.deployments import Deployment, DeploymentSpec
from headrace.exceptions import HeadraceError, ObjectNotFound, StoreError
from headrace.flow_runs import FlowRun, NewFlowRun
from headrace.notifications import REVEAL_SECRETS
from headrace.schedules import schedule_key
from headrace.states import StateType, utcnow
from headrace.store.admin import Maintenance
from headrace.store.child_runs import ChildRuns
from headrace.store.claims import Claims
from headrace.store.dashboard import DashboardReads
from headrace.store.deliveries import Deliveries
from headrace.store.listing import RunListing
from headrace.store.logs import LogLines
from headrace.store.rows import (
    checked_creation,
    flow_run_from_row,
    idempotency_scope,
    known_run,
    new_run_values,
)
from headrace.store.runners import Runners
from headrace.store.tables import deployments, flow_runs
from headrace.store.task_runs import TaskRuns
from headrace.store.transitions import StateChanges

logger = logging.getLogger(__name__)

SCHEDULED_PREFIX = "scheduled:"
"""Idempotency keys of runs planned from schedules start with this."""


def _active_keys(spec: DeploymentSpec) -> set[str]:
    return set() if spec.paused else {schedule_key(s) for s in spec.schedules if s.active}


def _resumes_planning(before: DeploymentSpec, after: DeploymentSpec) -> bool:
    """A schedule is added or resumed: the time it was not planned is not missed time."""
    return bool(_active_keys(after) - _active_keys(before))


def _run_defaults(spec: DeploymentSpec) -> tuple[Any, ...]:
    """What each run planned for a deployment copies from it."""
    return (
        spec.parameters,
        spec.retries,
        spec.retry_delay_seconds,
        spec.timeout_seconds,
        spec.retry_delays,
        spec.retry_jitter_factor,
    )


class SQLStore(
    Claims,
    ChildRuns,
    StateChanges,
    LogLines,
    Deliveries,
    Runners,
    Maintenance,
    TaskRuns,
    RunListing,
    DashboardReads,
):
    """All of headrace's persistence behind intent-named methods."""

    # -- deployments --------------------------------------------------------

    def upsert_deployment(self, spec: DeploymentSpec) -> Deployment:
        """Create or update the deployment named (flow name, name), keeping its id."""
        now = utcnow()
        values = spec.model_dump(mode="json", context=REVEAL_SECRETS)
        key = (deployments.c.flow_name == spec.flow_name) & (deployments.c.name == spec.name)
        for _ in range(2):
            try:
                with self._write() as conn:
                    existing = conn.execute(sa.select(deployments.c.id).where(key)).scalar()
                    if existing is not None:
                        before = self._deployment(conn, existing)
                        since = now if _resumes_planning(before, spec) else before.planning_since
                        conn.execute(
                            deployments.update()
                            .where(key)
                            .values(**values, updated=now, planning_since=since)
                        )
                        replan = _run_defaults(before) != _run_defaults(spec)
                        self._remove_unplanned_runs(conn, existing, spec, now, replan)
                        return self._deployment(conn, existing)
                    new_id = uuid4()
                    conn.execute(
                        deployments.insert().values(id=new_id, **values, created=now, updated=now)
                    )
                    return self._deployment(conn, new_id)
            except StoreError as exc:
                if not isinstance(exc.__cause__, sa.exc.IntegrityError):
                    raise
                continue  # another process registered it first: update that one
        raise StoreError(f"Could not store deployment {spec.flow_name}/{spec.name}")

    def _remove_unplanned_runs(
        self,
        conn: sa.Connection,
        deployment_id: UUID,
        spec: DeploymentSpec,
        now: datetime,
        all_of_them: bool = False,
    ) -> None:
        """Delete the unstarted runs planned by schedules the deployment no longer has
        (or has paused), overdue ones too: a removed schedule starts nothing more.

        ``all_of_them`` when what a planned run copies (parameters, retries, timeout)
        changed: its future runs are planned again, the same times with the new values.
        """
        planned = (
            (flow_runs.c.deployment_id == deployment_id)
            & (flow_runs.c.state_type == StateType.SCHEDULED.value)
            & (flow_runs.c.run_count == 0)
            & flow_runs.c.idempotency_key.startswith(SCHEDULED_PREFIX)
        )
        kept = _active_keys(spec)
        dropped = sa.and_(
            sa.true(),
            *(~flow_runs.c.idempotency_key.startswith(f"{SCHEDULED_PREFIX}{k}:") for k in kept),
        )
        if all_of_them:
            dropped |= flow_runs.c.expected_start_time > now
        removed = conn.execute(flow_runs.delete().where(planned & dropped)).rowcount
        if removed:
            logger.info("Removed %d runs of schedules that changed", removed)

    def set_deployment_paused(self, deployment_id: UUID, paused: bool) -> Deployment:
        """Pause or resume a deployment's schedules, as registering it paused would.

        Pausing deletes its planned runs that have not started; resuming plans from
        now on (the time it was paused is not missed time). Runs triggered by hand
        still run while it is paused.
        """
        now = utcnow()
        with self._write() as conn:
            before = self._deployment(conn, deployment_id)
            after = before.model_copy(update={"paused": paused})
            since = now if _resumes_planning(before, after) else before.planning_since
            conn.execute(
                deployments.update()
                .where(deployments.c.id == deployment_id)
                .values(paused=paused, updated=now, planning_since=since)
            )
            self._remove_unplanned_runs(conn, deployment_id, after, now)
            return self._deployment(conn, deployment_id)

    def read_deployment(self, deployment_id: UUID) -> Deployment:
        with self._read() as conn:
            return self._deployment(conn, deployment_id)

    def read_deployment_by_name(self, flow_name: str, name: str) -> Deployment:
        with self._read() as conn:
            row = conn.execute(
                deployments.select().where(
                    (deployments.c.flow_name == flow_name) & (deployments.c.name == name)
                )
            ).first()
        if row is None:
            raise ObjectNotFound(f"No deployment named {flow_name}/{name}")
        return Deployment.model_validate(row._asdict())

    def read_deployments(self, ids: Collection[UUID] | None = None) -> list[Deployment]:
        query = deployments.select().order_by(deployments.c.flow_name, deployments.c.name)
        if ids is not None:
            query = query.where(deployments.c.id.in_(list(ids)))
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [Deployment.model_validate(row._asdict()) for row in rows]

    def _deployment(self, conn: sa.Connection, deployment_id: UUID) -> Deployment:
        row = conn.execute(deployments.select().where(deployments.c.id == deployment_id)).first()
        if row is None:
            raise ObjectNotFound(f"No deployment with id {deployment_id}")
        return Deployment.model_validate(row._asdict())

    # -- flow runs ----------------------------------------------------------

    def create_flow_run(self, new: NewFlowRun) -> tuple[FlowRun, bool]:
        """Store a new SCHEDULED run; with a known idempotency key, return the existing one.

        Returns the run and whether it was created now; ``IdempotencyKeyReused``
        when the key's run has other parameters.
        """
        scope = idempotency_scope(new)
        try:
            with self._write() as conn:
                if (existing := known_run(conn, new)) is not None:
                    return existing, False
                return self._insert_run(conn, new, scope), True
        except StoreError as exc:
            if not isinstance(exc.__cause__, sa.exc.IntegrityError) or not new.idempotency_key:
                raise
        with self._read() as conn:  # lost a race for the same key: the winner's run is the one
            existing = known_run(conn, new)
        if existing is None:  # pragma: no cover
            raise StoreError("Idempotency conflict without an existing run")
        return existing, False

    def read_flow_run_by_key(self, new: NewFlowRun) -> FlowRun | None:
        """The run stored under ``new``'s key, if any (``IdempotencyKeyReused``, as above)."""
        if new.idempotency_key is None:
            return None
        with self._read() as conn:
            return known_run(conn, new)

    def create_flow_runs_each(
        self, runs: Sequence[NewFlowRun]
    ) -> list[tuple[FlowRun, bool] | HeadraceError]:
        """Many creations in one transaction; on a conflict, each on its own (a key
        reused with other parameters: that creation's ``IdempotencyKeyReused``)."""
        try:
            created = zip(self.create_flow_runs(runs), runs, strict=True)
            return [checked_creation(result, new) for result, new in created]
        except StoreError as exc:
            if not isinstance(exc.__cause__, sa.exc.IntegrityError):
                raise
        results: list[tuple[FlowRun, bool] | HeadraceError] = []
        for new in runs:
            try:
                results.append(self.create_flow_run(new))
            except HeadraceError as error:
                results.append(error)
        return results

    def create_flow_runs(self, runs: Sequence[NewFlowRun]) -> list[tuple[FlowRun, bool]]:
        """Create many runs in one transaction with a few statements (schedules, triggers).

        Runs whose idempotency key is already stored (or repeated within
        ``runs``) come back as the existing run, not created again.
        """
        keyed = {
            (idempotency_scope(n), n.idempotency_key) for n in runs if n.idempotency_key is not None
        }
        with self._write() as conn:
            known = self._runs_by_keys(conn, keyed)
            results: list[tuple[FlowRun, bool]] = []
            rows: list[dict[str, Any]] = []
            now = utcnow()
            for new in runs:
                key = (idempotency_scope(new), new.idempotency_key)
                if new.idempotency_key is not None and key in known:
                    results.append((known[key], False))
                    continue
                # A microsecond apart: runs queued together are started in the order given.
                values = new_run_values(new, key[0], now + timedelta(microseconds=len(rows)))
                run = flow_run_from_row(values)
                rows.append(values)
                results.append((run, True))
                if new.idempotency_key is not None:
                    known[key] = run
            if rows:
                for optional in ("traceparent", "parent_flow_run_id"):  # one statement:
                    if any(optional in row for row in rows):  # the same keys in each row
                        rows = [{optional: None, **row} for row in rows]
                conn.execute(flow_runs.insert(), rows)  # the database records each SCHEDULED
        return results

    def create_planned_runs(self, runs: Sequence[NewFlowRun]) -> int:
        """Create scheduled runs unless a run with the same key exists; how many were new.

        Several runners plan the same schedule at the same moment: a run another
        one has just inserted is skipped (``ON CONFLICT DO NOTHING``), not an error.
        """
        if not runs:
            return 0
        insert = (sqlite_insert if self.is_sqlite else postgresql_insert)(flow_runs)
        statement = insert.on_conflict_do_nothing(
            index_elements=[flow_runs.c.idempotency_scope, flow_runs.c.idempotency_key]
        ).returning(flow_runs.c.id)
        now = utcnow()
        rows = [
            # A microsecond apart: runs planned together start in the order given.
            new_run_values(new, idempotency_scope(new), now + timedelta(microseconds=index))
            for index, new in enumerate(runs)
        ]
        with self._write() as conn:
            created = 0
            for values in rows:  # one by one: RETURNING says which were new
                created += conn.execute(statement, values).first() is not None
        return created

    def _runs_by_keys(
        self, conn: sa.Connection, keys: Collection[tuple[str, str | None]]
    ) -> dict[tuple[str, str | None], FlowRun]:
        if not keys:
            return {}
        pair = sa.tuple_(flow_runs.c.idempotency_scope, flow_runs.c.idempotency_key)
        rows = conn.execute(flow_runs.select().where(pair.in_(list(keys)))).all()
        return {
            (row.idempotency_scope, row.idempotency_key): flow_run_from_row(row._asdict())
            for row in rows
        }

    def _insert_run(self, conn: sa.Connection, new: NewFlowRun, scope: str) -> FlowRun:
        values = new_run_values(new, scope, utcnow())
        conn.execute(flow_runs.insert(), values)
        return flow_run_from_row(values)

    def last_planned_times(
        self, deployment_id: UUID, schedule_keys: Collection[str]
    ) -> dict[str, datetime]:
        """The latest run time already planned for each schedule of a deployment.

        Read from the newest planned run's key, not its ``expected_start_time``: a
        retry or requeue moves that later, and would hide the times missed since.
        Planned runs of a schedule are created in the order of their times.
        """
        found: dict[str, datetime] = {}
        with self._read() as conn:
            for key in schedule_keys:
                prefix = f"{SCHEDULED_PREFIX}{key}:"
                newest = conn.execute(
                    sa.select(flow_runs.c.idempotency_key)
                    .where(
                        (flow_runs.c.deployment_id == deployment_id)
                        & flow_runs.c.idempotency_key.startswith(prefix)
                    )
                    .order_by(flow_runs.c.created.desc())
                    .limit(1)
                ).scalar()
                if newest is not None:
                    found[key] = datetime.fromisoformat(newest.removeprefix(prefix))
        return found

    def read_flow_run(self, flow_run_id: UUID) -> FlowRun:
        with self._read() as conn:
            row = conn.execute(flow_runs.select().where(flow_runs.c.id == flow_run_id)).first()
        if row is None:
            raise ObjectNotFound(f"No flow run with id {flow_run_id}")
        return flow_run_from_row(row._asdict())
