"""Run log lines: written in one transaction per batch, where one bad line costs only itself."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from headrace.exceptions import StoreUnavailable
from headrace.flow_runs import LogRecord
from headrace.store.connection import SQLBase
from headrace.store.records import MAX_PAGE
from headrace.store.tables import logs

logger = logging.getLogger(__name__)


def _row(record: LogRecord) -> dict[str, Any]:
    return {
        "flow_run_id": record.flow_run_id,
        "level": record.level,
        "message": record.message,
        "timestamp": record.timestamp,
    }


class LogLines(SQLBase):
    """Writes and reads of run log lines."""

    def write_logs(self, records: Sequence[LogRecord]) -> int:
        """Store lines of any runs in one transaction; returns how many could not be stored.

        Lines from many runs share a batch, so a line the database refuses (its run
        was deleted, say) must not take the others with it: the batch is then written
        again line by line, each in a savepoint, and each refused line is reported once.
        """
        if not records:
            return 0
        rows = [_row(record) for record in records]
        try:
            with self._write() as conn:
                conn.execute(logs.insert(), rows)
            return 0
        except StoreUnavailable:
            raise
        except Exception:  # StoreError, or a value the driver cannot send
            pass
        return self._write_each(records, rows)

    def _write_each(self, records: Sequence[LogRecord], rows: list[dict[str, Any]]) -> int:
        refused = 0
        with self._write() as conn:
            for record, row in zip(records, rows, strict=True):
                try:
                    with conn.begin_nested():
                        conn.execute(logs.insert(), row)
                except sa.exc.OperationalError:
                    raise
                except Exception as exc:  # reported; only this line is lost
                    refused += 1
                    reason = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
                    run = str(record.flow_run_id)
                    logger.error(
                        "Could not store a log line of flow run %s (%s): %r",
                        run,
                        str(reason).splitlines()[0] if str(reason) else type(reason).__name__,
                        record.message[:200],
                        extra={"flow_run_id": run},
                    )
        return refused

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
