"""Webhook delivery attempts: one row each, read back in the order they were made."""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa

from headrace.notifications import Delivery
from headrace.store.connection import SQLBase
from headrace.store.records import MAX_PAGE
from headrace.store.tables import notification_deliveries


class Deliveries(SQLBase):
    """Writes and reads of ``notification_deliveries``."""

    def record_delivery(self, delivery: Delivery) -> Delivery:
        """Store one delivery attempt (its run deleted meanwhile: ``StoreError``)."""
        values = delivery.model_dump(exclude={"id"})
        with self._write() as conn:
            new_id = conn.execute(
                notification_deliveries.insert().values(**values)
            ).inserted_primary_key
        return delivery.model_copy(update={"id": new_id[0] if new_id else 0})

    def read_deliveries(self, flow_run_id: UUID) -> list[Delivery]:
        """Every delivery attempt of a run's webhooks, oldest first."""
        table = notification_deliveries
        with self._read() as conn:
            rows = conn.execute(
                sa.select(table)
                .where(table.c.flow_run_id == flow_run_id)
                .order_by(table.c.id)
                .limit(MAX_PAGE)
            ).all()
        return [Delivery.model_validate(row._asdict()) for row in rows]
