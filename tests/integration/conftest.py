"""Fixtures the integration tests share beyond the root conftest's databases."""

from __future__ import annotations

from pathlib import Path

import pytest

from headrace.settings import Settings
from tests.integration.server_app import sqlite_settings_in


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    """A SQLite store, for webserver behaviour that does not depend on the database."""
    return sqlite_settings_in(tmp_path)
