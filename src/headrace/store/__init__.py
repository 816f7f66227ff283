"""Persistence: one narrow store interface over SQLite or PostgreSQL.

Only this package imports SQLAlchemy. ``SQLStore`` is synchronous;
``AsyncStore`` runs it off the event loop, on a single thread for SQLite (one
writer, no lock contention inside the process) and on a small pool for
PostgreSQL.
"""

from __future__ import annotations

from headrace.store.async_store import AsyncStore, open_store
from headrace.store.records import RunnerRecord
from headrace.store.sql import SQLStore

__all__ = ["AsyncStore", "RunnerRecord", "SQLStore", "open_store"]
