"""Persistence: one narrow store interface over SQLite or PostgreSQL.

Only this package imports SQLAlchemy. ``SQLStore`` is synchronous;
``AsyncStore`` runs it off the event loop, on a single thread for SQLite (one
writer, no lock contention inside the process) and on a small pool for
PostgreSQL. ``open_store(settings)`` gives the one ``AsyncStore`` a process
keeps per database.

The interface, by what it holds (both classes have each method):

- runs: ``create_flow_run`` (idempotent on its key; group commit in
  ``AsyncStore``), ``create_flow_runs``, ``create_planned_runs``,
  ``last_planned_times``, ``read_flow_run``, ``read_flow_run_by_key`` (``sql.py``)
- listing: ``read_flow_runs``, ``count_flow_runs`` by state, under the same filters
  (``listing.py``)
- states: ``set_state`` (a compare-and-set; ``AsyncStore.queue_state`` queues
  one without waiting), ``request_cancellation``, ``cancelling_among``, ``cancel_asked_among``,
  ``taken_among``, ``read_state_history`` (``transitions.py``)
- claims: ``claim_runs``, ``claim_flow_run``, ``next_due_time``,
  ``count_queued_runs``, ``count_active_runs`` (``claims.py``)
- logs: ``write_logs`` (one bad line spares the rest of its batch), ``read_logs``
  (``logs.py``)
- webhooks: ``record_delivery``, ``read_deliveries`` (``deliveries.py``)
- deployments: ``upsert_deployment``, ``set_deployment_paused``, ``read_deployment``,
  ``read_deployment_by_name``, ``read_deployments`` (``sql.py``)
- upkeep: ``delete_deployment``, ``delete_flow_run``, ``prune_flow_runs`` (one batch
  of retention; ``Pruned``), ``count_prunable``, ``backup`` (SQLite only) (``admin.py``)
- runners: ``register_runner``, ``heartbeat`` (which also records the
  deployments a runner serves), ``read_serving_runners``, ``read_live_runner``,
  ``read_active_runs``, ``read_addressed_runs``, ``readdress_flow_run``
  (``runners.py``; ``RunnerRecord``)
- changes: ``AsyncStore.changes``, a ``ChangeFeed`` that tells subscribers (the
  runners of this database) of runs queued and cancellations requested, by this
  process or by others (``changes.py``)
"""

from __future__ import annotations

import threading

from headrace.settings import Settings
from headrace.store.admin import Pruned
from headrace.store.async_store import AsyncStore, bounded_waits
from headrace.store.records import RunnerRecord
from headrace.store.sql import SQLStore

__all__ = ["AsyncStore", "Pruned", "RunnerRecord", "SQLStore", "bounded_waits", "open_store"]

_stores: dict[str, AsyncStore] = {}
_stores_lock = threading.Lock()


def open_store(settings: Settings) -> AsyncStore:
    """The process's store for the settings' database, opened (and migrated) on first use.

    One per database URL per process: engines and migrations are paid for once.
    """
    url = settings.resolved_database_url
    with _stores_lock:
        store = _stores.get(url)
        if store is None:
            timeout = settings.database_timeout_seconds
            store = _stores[url] = AsyncStore(SQLStore(url, timeout_seconds=timeout))
        return store
