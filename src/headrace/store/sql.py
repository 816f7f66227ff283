"""The SQL store: every database read and write headrace makes, on SQLite or PostgreSQL.

Rows leave this module as frozen value objects. Driver errors are wrapped in
``StoreError``/``StoreUnavailable``. The dialects differ only in how a claim
locks rows: PostgreSQL uses ``FOR UPDATE SKIP LOCKED``, SQLite's ``BEGIN
IMMEDIATE`` makes the whole claim one exclusive step.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID, uuid4

import sqlalchemy as sa

from headrace.deployments import Deployment, DeploymentSpec
from headrace.exceptions import (
    HeadraceError,
    InvalidStateTransition,
    ObjectNotFound,
    StoreError,
    StoreUnavailable,
)
from headrace.flow_runs import FlowRun, LogRecord, NewFlowRun
from headrace.names import generate_run_name
from headrace.schedules import schedule_key
from headrace.states import (
    ACTIVE_STATES,
    State,
    StateType,
    cancellation_target,
    check_transition,
    sources_of,
    utcnow,
)
from headrace.store import statements
from headrace.store.base import MAX_PAGE, RunnerRecord
from headrace.store.engine import WRITE_OPTION, create_engine
from headrace.store.migrate import upgrade
from headrace.store.tables import (
    UTCDateTime,
    deployments,
    flow_run_states,
    flow_runs,
    logs,
    runners,
)

logger = logging.getLogger(__name__)

SCHEDULED_PREFIX = "scheduled:"
"""Idempotency keys of runs planned from schedules start with this."""


class StateChange(NamedTuple):
    """One requested state change: run, new state, allowed current states, other fields."""

    flow_run_id: UUID
    state: State
    expected: Collection[StateType] | None
    fields: dict[str, Any]


_Owner = tuple[Collection[UUID], str | None]
"""Whose runs: these deployments' runs, and the ad-hoc runs of the runner of this name."""

RUN_FIELDS = frozenset(
    {"start_time", "end_time", "result", "pid", "expected_start_time", "runner_id", "runner_name"}
)
"""Columns a state change may set beside the state itself."""


class SQLStore:
    """All of headrace's persistence behind intent-named methods."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.engine = create_engine(url)
        self.dialect = self.engine.dialect.name
        if migrate:
            with self._errors():
                upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    # -- transactions -------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sa.exc.OperationalError as exc:
            raise StoreUnavailable(f"The database cannot be reached: {exc.orig}") from exc
        except sa.exc.DBAPIError as exc:
            raise StoreError(f"The database operation failed: {exc.orig}") from exc

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self._errors(), self.engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self._errors(), self.engine.connect() as conn, conn.begin():
            yield conn

    # -- deployments --------------------------------------------------------

    def upsert_deployment(self, spec: DeploymentSpec) -> Deployment:
        """Create or update the deployment named (flow name, name), keeping its id."""
        now = utcnow()
        values = spec.model_dump(mode="json")
        key = (deployments.c.flow_name == spec.flow_name) & (deployments.c.name == spec.name)
        for _ in range(2):
            try:
                with self._write() as conn:
                    existing = conn.execute(sa.select(deployments.c.id).where(key)).scalar()
                    if existing is not None:
                        conn.execute(deployments.update().where(key).values(**values, updated=now))
                        self._remove_unplanned_runs(conn, existing, spec, now)
                        return self._deployment(conn, existing)
                    new_id = uuid4()
                    conn.execute(
                        deployments.insert().values(id=new_id, **values, created=now, updated=now)
                    )
                    return self._deployment(conn, new_id)
            except sa.exc.IntegrityError:  # pragma: no cover - lost a concurrent insert
                continue
        raise StoreError(f"Could not store deployment {spec.flow_name}/{spec.name}")

    def _remove_unplanned_runs(
        self, conn: sa.Connection, deployment_id: UUID, spec: DeploymentSpec, now: datetime
    ) -> None:
        """Delete future, unstarted runs planned by schedules the deployment no longer has."""
        condition = (
            (flow_runs.c.deployment_id == deployment_id)
            & (flow_runs.c.state_type == StateType.SCHEDULED.value)
            & (flow_runs.c.run_count == 0)
            & (flow_runs.c.expected_start_time > now)
            & flow_runs.c.idempotency_key.startswith(SCHEDULED_PREFIX)
        )
        kept = [] if spec.paused else [schedule_key(s) for s in spec.schedules if s.active]
        for key in kept:
            condition &= ~flow_runs.c.idempotency_key.startswith(f"{SCHEDULED_PREFIX}{key}:")
        removed = conn.execute(flow_runs.delete().where(condition)).rowcount
        if removed:
            logger.info("Removed %d runs of schedules that changed", removed)

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

        Returns the run and whether it was created now.
        """
        scope = _scope(new)
        try:
            with self._write() as conn:
                if new.idempotency_key is not None:
                    existing = self._run_by_key(conn, scope, new.idempotency_key)
                    if existing is not None:
                        return existing, False
                return self._insert_run(conn, new, scope), True
        except StoreError as exc:
            if not isinstance(exc.__cause__, sa.exc.IntegrityError) or not new.idempotency_key:
                raise
        with self._read() as conn:  # lost a race for the same key: the winner's run is the one
            existing = self._run_by_key(conn, scope, new.idempotency_key)
        if existing is None:  # pragma: no cover
            raise StoreError("Idempotency conflict without an existing run")
        return existing, False

    def create_flow_runs_each(
        self, runs: Sequence[NewFlowRun]
    ) -> list[tuple[FlowRun, bool] | HeadraceError]:
        """Many creations in one transaction; on a conflict, each on its own."""
        try:
            return list(self.create_flow_runs(runs))
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
        keyed = {(_scope(n), n.idempotency_key) for n in runs if n.idempotency_key is not None}
        with self._write() as conn:
            known = self._runs_by_keys(conn, keyed)
            results: list[tuple[FlowRun, bool]] = []
            rows: list[dict[str, Any]] = []
            now = utcnow()
            for new in runs:
                key = (_scope(new), new.idempotency_key)
                if new.idempotency_key is not None and key in known:
                    results.append((known[key], False))
                    continue
                values = _new_run_values(new, key[0], now)
                run = _flow_run(values)
                rows.append(values)
                results.append((run, True))
                if new.idempotency_key is not None:
                    known[key] = run
            if rows:
                conn.execute(flow_runs.insert(), rows)
                self._record_history(conn, [(row["id"], row) for row in rows])
        return results

    def _runs_by_keys(
        self, conn: sa.Connection, keys: Collection[tuple[str, str | None]]
    ) -> dict[tuple[str, str | None], FlowRun]:
        if not keys:
            return {}
        pair = sa.tuple_(flow_runs.c.idempotency_scope, flow_runs.c.idempotency_key)
        rows = conn.execute(flow_runs.select().where(pair.in_(list(keys)))).all()
        return {
            (row.idempotency_scope, row.idempotency_key): _flow_run(row._asdict()) for row in rows
        }

    def _insert_run(self, conn: sa.Connection, new: NewFlowRun, scope: str) -> FlowRun:
        values = _new_run_values(new, scope, utcnow())
        conn.execute(flow_runs.insert(), values)
        self._record_history(conn, [(values["id"], values)])
        return _flow_run(values)

    def _run_by_key(self, conn: sa.Connection, scope: str, key: str) -> FlowRun | None:
        row = conn.execute(
            flow_runs.select().where(
                (flow_runs.c.idempotency_scope == scope) & (flow_runs.c.idempotency_key == key)
            )
        ).first()
        return None if row is None else _flow_run(row._asdict())

    def last_planned_times(
        self, deployment_id: UUID, schedule_keys: Collection[str]
    ) -> dict[str, datetime]:
        """The latest run time already planned for each schedule of a deployment."""
        found: dict[str, datetime] = {}
        with self._read() as conn:
            for key in schedule_keys:
                value = conn.execute(
                    sa.select(sa.func.max(flow_runs.c.expected_start_time)).where(
                        (flow_runs.c.deployment_id == deployment_id)
                        & flow_runs.c.idempotency_key.startswith(f"{SCHEDULED_PREFIX}{key}:")
                    )
                ).scalar()
                if value is not None:
                    found[key] = _utc(value, self.engine.dialect)
        return found

    def read_flow_run(self, flow_run_id: UUID) -> FlowRun:
        with self._read() as conn:
            row = conn.execute(flow_runs.select().where(flow_runs.c.id == flow_run_id)).first()
        if row is None:
            raise ObjectNotFound(f"No flow run with id {flow_run_id}")
        return _flow_run(row._asdict())

    def read_flow_runs(
        self,
        *,
        ids: Collection[UUID] | None = None,
        deployment_id: UUID | None = None,
        flow_name: str | None = None,
        states: Collection[StateType] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[FlowRun]:
        """Runs matching every given filter, newest first."""
        query = flow_runs.select()
        if ids is not None:
            query = query.where(flow_runs.c.id.in_(list(ids)))
        if deployment_id is not None:
            query = query.where(flow_runs.c.deployment_id == deployment_id)
        if flow_name is not None:
            query = query.where(flow_runs.c.flow_name == flow_name)
        if states is not None:
            query = query.where(flow_runs.c.state_type.in_([s.value for s in states]))
        query = query.order_by(flow_runs.c.created.desc(), flow_runs.c.id)
        query = query.limit(min(max(limit, 0), MAX_PAGE)).offset(max(offset, 0))
        with self._read() as conn:
            return [_flow_run(row._asdict()) for row in conn.execute(query)]

    def count_queued_runs(
        self, deployment_ids: Collection[UUID], runner_name: str | None, *, cap: int
    ) -> int:
        """How many due runs wait in SCHEDULED for these deployments (or this runner), up to
        ``cap``; runs planned for later are not a backlog."""
        owned = _owned_by(deployment_ids, runner_name)
        inner = (
            sa.select(flow_runs.c.id)
            .where(
                (flow_runs.c.state_type == StateType.SCHEDULED.value)
                & (flow_runs.c.expected_start_time <= utcnow())
                & owned
            )
            .limit(cap)
            .subquery()
        )
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(inner)).scalar_one())

    def count_active_runs(self, deployment_ids: Collection[UUID]) -> dict[UUID, int]:
        """Runs currently PENDING, RUNNING or CANCELLING, per deployment."""
        with self._read() as conn:
            return self._active_counts(conn, deployment_ids)

    def _active_counts(
        self, conn: sa.Connection, deployment_ids: Collection[UUID]
    ) -> dict[UUID, int]:
        if not deployment_ids:
            return {}
        rows = conn.execute(
            sa.select(flow_runs.c.deployment_id, sa.func.count())
            .where(
                flow_runs.c.deployment_id.in_(list(deployment_ids))
                & flow_runs.c.state_type.in_([s.value for s in ACTIVE_STATES])
            )
            .group_by(flow_runs.c.deployment_id)
        ).all()
        return {row[0]: int(row[1]) for row in rows}

    # -- claiming -----------------------------------------------------------

    def claim_runs(
        self,
        *,
        deployment_ids: Collection[UUID],
        runner: RunnerRecord,
        limit: int,
        now: datetime | None = None,
        concurrency_limits: Mapping[UUID, int] | None = None,
    ) -> list[FlowRun]:
        """Atomically move up to ``limit`` due SCHEDULED runs to PENDING for ``runner``.

        Oldest first; runs of a deployment with a concurrency limit are taken
        only while that deployment has free slots. Two claimers never win the
        same run: the update is a compare-and-set on SCHEDULED.
        """
        if limit <= 0:
            return []
        now = now or utcnow()
        limits = dict(concurrency_limits or {})
        with self._write() as conn:
            candidates = self._claim_candidates(conn, deployment_ids, runner, limit, now, limits)
            return self._mark_claimed(conn, candidates[:limit], runner, now)

    def claim_flow_run(self, flow_run_id: UUID, runner: RunnerRecord) -> FlowRun:
        """Claim one particular SCHEDULED run, whatever its due time."""
        now = utcnow()
        with self._write() as conn:
            current = self._current_state(conn, flow_run_id)
            check_transition(current, StateType.PENDING)
            (claimed,) = self._mark_claimed(conn, [flow_run_id], runner, now)
            return claimed

    def next_due_time(
        self, deployment_ids: Collection[UUID], runner_name: str | None
    ) -> datetime | None:
        """When the earliest queued run of these deployments (or this runner) is due."""
        query = sa.select(sa.func.min(flow_runs.c.expected_start_time)).where(
            (flow_runs.c.state_type == StateType.SCHEDULED.value)
            & _owned_by(deployment_ids, runner_name)
        )
        with self._read() as conn:
            value = conn.execute(query).scalar()
        return (
            None
            if value is None
            else UTCDateTime().process_result_value(value, self.engine.dialect)
        )

    def _claim_candidates(
        self,
        conn: sa.Connection,
        deployment_ids: Collection[UUID],
        runner: RunnerRecord,
        limit: int,
        now: datetime,
        limits: dict[UUID, int],
    ) -> list[UUID]:
        free_ids = [d for d in deployment_ids if d not in limits]
        found = self._due(conn, (free_ids, runner.name), limit, now)
        limited = [d for d in deployment_ids if d in limits]
        if limited:
            if not self.is_sqlite:
                for deployment_id in sorted(limited):
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_key(deployment_id))))
            active = self._active_counts(conn, limited)
            for deployment_id in limited:
                slots = min(limit, limits[deployment_id] - active.get(deployment_id, 0))
                if slots > 0:
                    found.extend(self._due(conn, ([deployment_id], None), slots, now))
        found.sort(key=lambda item: item[1])
        return [run_id for run_id, _ in found]

    def explain_queue_query(
        self, deployment_ids: Collection[UUID], runner_name: str | None
    ) -> list[str]:
        """The database's plan for the claim query: it must use the queue index."""
        query = statements.due_runs(
            by_deployment=bool(deployment_ids), by_runner=runner_name is not None, lock=False
        )
        params = {
            "deployment_ids": list(deployment_ids),
            "runner_name": runner_name,
            "now": utcnow(),
            "limit": 8,
        }
        bound = query.params(**params)
        compiled = bound.compile(self.engine, compile_kwargs={"literal_binds": True})
        prefix = "EXPLAIN QUERY PLAN " if self.is_sqlite else "EXPLAIN "
        with self._read() as conn:
            rows = conn.exec_driver_sql(prefix + str(compiled)).all()
        return [str(row[-1]) for row in rows]

    def _due(
        self, conn: sa.Connection, owned: _Owner, limit: int, now: datetime
    ) -> list[tuple[UUID, datetime]]:
        ids, runner_name = owned
        if not ids and runner_name is None:
            return []
        query = statements.due_runs(
            by_deployment=bool(ids), by_runner=runner_name is not None, lock=not self.is_sqlite
        )
        params = {"deployment_ids": list(ids), "runner_name": runner_name, "now": now}
        rows = conn.execute(query, {**params, "limit": limit})
        return [(row[0], row[1]) for row in rows]

    def _mark_claimed(
        self, conn: sa.Connection, run_ids: list[UUID], runner: RunnerRecord, now: datetime
    ) -> list[FlowRun]:
        if not run_ids:
            return []
        params = {
            "run_ids": run_ids,
            "now": now,
            "runner_id": runner.id,
            "new_runner_name": runner.name,
        }
        rows = conn.execute(statements.mark_claimed(), params).all()
        claimed = sorted(
            (_flow_run(row._asdict()) for row in rows),
            key=lambda run: (run.expected_start_time or now, run.created),
        )
        self._record_history(conn, [(run.id, _state_values(run.state)) for run in claimed])
        return claimed

    # -- state changes ------------------------------------------------------

    def set_state(
        self,
        flow_run_id: UUID,
        state: State,
        *,
        expected: Collection[StateType] | None = None,
        **fields: Any,
    ) -> FlowRun:
        """Move a run to ``state`` if the rules (and ``expected``, when given) allow it.

        A compare-and-set on the current state: a concurrent change in between
        makes this raise ``InvalidStateTransition`` instead of overwriting it.
        """
        with self._write() as conn:
            return self._set_state_in(conn, StateChange(flow_run_id, state, expected, fields))

    def set_states(self, changes: Sequence[StateChange]) -> list[FlowRun | HeadraceError]:
        """Several independent state changes in one transaction (group commit).

        Each change succeeds or fails on its own; a refused change leaves no
        trace, so its error is returned in its place instead of raised.
        """
        results: list[FlowRun | HeadraceError] = []
        with self._write() as conn:
            for change in changes:
                try:
                    results.append(self._set_state_in(conn, change))
                except (InvalidStateTransition, ObjectNotFound) as exc:
                    results.append(exc)
        return results

    def _set_state_in(self, conn: sa.Connection, change: StateChange) -> FlowRun:
        flow_run_id, state, expected, fields = change
        unknown = set(fields) - RUN_FIELDS
        if unknown:
            raise ValueError(f"set_state cannot set {sorted(unknown)}")
        sources = sources_of(state.type)
        if expected is not None:
            sources &= frozenset(expected)
        changed = self._apply_state(conn, flow_run_id, sources, state, fields)
        if changed is not None:
            return changed
        current = self._current_state(conn, flow_run_id)
        if expected is not None and current not in expected:
            raise InvalidStateTransition(
                f"Flow run {flow_run_id} is {current.value}, not {_names(expected)}"
            )
        check_transition(current, state.type)
        raise InvalidStateTransition(  # pragma: no cover - the CAS and the rules agree
            f"Flow run {flow_run_id} changed state concurrently"
        )

    def _current_state(self, conn: sa.Connection, flow_run_id: UUID) -> StateType:
        query = sa.select(flow_runs.c.state_type).where(flow_runs.c.id == flow_run_id)
        if not self.is_sqlite:
            query = query.with_for_update()
        value = conn.execute(query).scalar()
        if value is None:
            raise ObjectNotFound(f"No flow run with id {flow_run_id}")
        return StateType(value)

    def _apply_state(
        self,
        conn: sa.Connection,
        flow_run_id: UUID,
        sources: Collection[StateType],
        state: State,
        fields: dict[str, Any],
    ) -> FlowRun | None:
        """The compare-and-set itself: None when the run was in none of ``sources``."""
        values = {**_state_values(state), "updated": utcnow(), **fields}
        if state.type == StateType.RUNNING:
            values.setdefault("start_time", state.timestamp)
        if state.is_terminal:
            values.setdefault("end_time", state.timestamp)
        fieldset = frozenset(values) - frozenset(statements.STATE_COLUMNS)
        params = statements.update_state_params(flow_run_id, [s.value for s in sources], values)
        row = conn.execute(statements.update_state(fieldset), params).first()
        if row is None:
            return None
        self._record_history(conn, [(flow_run_id, _state_values(state))])
        return _flow_run(row._asdict())

    def request_cancellation(self, flow_run_id: UUID) -> FlowRun:
        """SCHEDULED runs are cancelled at once; started ones become CANCELLING for their runner."""
        with self._write() as conn:
            current = self._current_state(conn, flow_run_id)
            target = cancellation_target(current)
            if target is None:
                raise InvalidStateTransition(
                    f"Flow run {flow_run_id} has already ended ({current.value})"
                )
            if target == current:
                row = conn.execute(flow_runs.select().where(flow_runs.c.id == flow_run_id)).one()
                return _flow_run(row._asdict())
            message = "Cancelled before it started" if target.is_terminal else "Cancel requested"
            state = State(type=target, message=message)
            changed = self._apply_state(conn, flow_run_id, [current], state, {})
            assert changed is not None  # the write lock / row lock holds the state still
            return changed

    def read_state_history(self, flow_run_id: UUID) -> list[State]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(flow_run_states)
                .where(flow_run_states.c.flow_run_id == flow_run_id)
                .order_by(flow_run_states.c.id)
            ).all()
        return [
            State(type=row.type, name=row.name, message=row.message, timestamp=row.timestamp)
            for row in rows
        ]

    def _record_history(
        self, conn: sa.Connection, entries: Sequence[tuple[UUID, Mapping[str, Any]]]
    ) -> None:
        if not entries:
            return
        conn.execute(
            flow_run_states.insert(),
            [
                {
                    "flow_run_id": run_id,
                    "type": values["state_type"],
                    "name": values["state_name"],
                    "message": values["state_message"],
                    "timestamp": values["state_timestamp"],
                }
                for run_id, values in entries
            ],
        )

    # -- logs ---------------------------------------------------------------

    def write_logs(self, records: Sequence[LogRecord]) -> None:
        if not records:
            return
        with self._write() as conn:
            conn.execute(
                logs.insert(),
                [
                    {
                        "flow_run_id": r.flow_run_id,
                        "level": r.level,
                        "message": r.message,
                        "timestamp": r.timestamp,
                    }
                    for r in records
                ],
            )

    def read_logs(
        self, flow_run_id: UUID, *, after_id: int = 0, limit: int = MAX_PAGE
    ) -> list[LogRecord]:
        """A run's log lines in the order they were written, after the line ``after_id``."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(logs)
                .where((logs.c.flow_run_id == flow_run_id) & (logs.c.id > after_id))
                .order_by(logs.c.id)
                .limit(min(limit, MAX_PAGE))
            ).all()
        return [LogRecord.model_validate(row._asdict()) for row in rows]

    # -- runners ------------------------------------------------------------

    def register_runner(self, runner: RunnerRecord) -> None:
        with self._write() as conn:
            conn.execute(runners.insert().values(**runner.model_dump()))

    def heartbeat(self, runner_id: UUID, *, stopped: bool = False) -> None:
        now = utcnow()
        values: dict[str, Any] = {"heartbeat": now}
        if stopped:
            values["stopped"] = now
        with self._write() as conn:
            conn.execute(runners.update().where(runners.c.id == runner_id).values(**values))

    def read_active_runs(
        self, deployment_ids: Collection[UUID], runner_name: str | None
    ) -> list[tuple[FlowRun, RunnerRecord | None]]:
        """Runs owned by a runner (PENDING/RUNNING/CANCELLING), each with that runner's record."""
        query = (
            sa.select(flow_runs, *[c.label(f"runner__{c.name}") for c in runners.c])
            .select_from(flow_runs.outerjoin(runners, runners.c.id == flow_runs.c.runner_id))
            .where(
                flow_runs.c.state_type.in_([s.value for s in ACTIVE_STATES])
                & _owned_by(deployment_ids, runner_name)
            )
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [_run_with_runner(row._asdict()) for row in rows]


def _owned_by(deployment_ids: Collection[UUID], runner_name: str | None) -> sa.ColumnElement[bool]:
    """Runs of these deployments, or ad-hoc runs (no deployment) addressed to this runner."""
    clauses: list[sa.ColumnElement[bool]] = []
    if deployment_ids:
        clauses.append(flow_runs.c.deployment_id.in_(list(deployment_ids)))
    if runner_name is not None:
        clauses.append(
            flow_runs.c.deployment_id.is_(None) & (flow_runs.c.runner_name == runner_name)
        )
    return sa.or_(sa.false(), *clauses)


def _utc(value: Any, dialect: sa.Dialect) -> datetime:
    """Aggregates (min, max) may bypass the column type on SQLite: normalise to aware UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    result = UTCDateTime().process_result_value(value, dialect)
    assert result is not None
    return result


def _lock_key(deployment_id: UUID) -> int:
    return int.from_bytes(deployment_id.bytes[:8], "big", signed=True)


def _scope(new: NewFlowRun) -> str:
    """Idempotency keys are unique per deployment (per flow for runs without one)."""
    return str(new.deployment_id) if new.deployment_id else f"flow:{new.flow_name}"


def _new_run_values(new: NewFlowRun, scope: str, now: datetime) -> dict[str, Any]:
    return {
        "id": uuid4(),
        "name": new.name or generate_run_name(),
        "flow_name": new.flow_name,
        "deployment_id": new.deployment_id,
        "entrypoint": new.entrypoint,
        "parameters": new.parameters,
        "parent_task_run_id": new.parent_task_run_id,
        "idempotency_scope": scope,
        "idempotency_key": new.idempotency_key,
        "state_type": StateType.SCHEDULED.value,
        "state_name": new.state_name,
        "state_message": new.state_message,
        "state_timestamp": now,
        "expected_start_time": new.expected_start_time or now,
        "run_count": 0,
        "max_retries": new.max_retries,
        "retry_delay_seconds": new.retry_delay_seconds,
        "timeout_seconds": new.timeout_seconds,
        "runner_name": new.runner_name,
        "created": now,
        "updated": now,
    }


def _state_values(state: State) -> dict[str, Any]:
    return {
        "state_type": state.type.value,
        "state_name": state.name,
        "state_message": state.message,
        "state_timestamp": state.timestamp,
    }


def _names(states: Collection[StateType]) -> str:
    return " or ".join(sorted(s.value for s in states))


def _flow_run(values: Mapping[str, Any]) -> FlowRun:
    data = {
        k: v for k, v in values.items() if not k.startswith("state_") and k != "idempotency_scope"
    }
    data["state"] = State(
        type=values["state_type"],
        name=values["state_name"],
        message=values["state_message"],
        timestamp=values["state_timestamp"],
    )
    return FlowRun.model_validate(data)


def _run_with_runner(values: Mapping[str, Any]) -> tuple[FlowRun, RunnerRecord | None]:
    runner = {k.removeprefix("runner__"): v for k, v in values.items() if k.startswith("runner__")}
    run = _flow_run({k: v for k, v in values.items() if not k.startswith("runner__")})
    return run, (RunnerRecord.model_validate(runner) if runner.get("id") else None)
