"""A serving process migrates in a child process, so it never carries Alembic around."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, sys
from headrace.exceptions import StoreError
from headrace.runner.serving import tune_for_serving
from headrace.store import SQLStore
from headrace.store.migrate import is_up_to_date

tune_for_serving()
try:
    store = SQLStore(sys.argv[1])
except StoreError as exc:
    print(json.dumps({"error": str(exc)}))
else:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("alembic", "mako"))
    print(json.dumps({"up_to_date": is_up_to_date(store.engine), "loaded": loaded}))
"""


def probe(url: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, url], capture_output=True, text=True, check=True, timeout=60
    )
    return dict(json.loads(done.stdout))


def test_a_serving_process_migrates_a_new_database_without_loading_alembic(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert probe(url) == {"up_to_date": True, "loaded": []}
    assert probe(url) == {"up_to_date": True, "loaded": []}  # and reopens it as it is


def test_a_failed_migration_says_why(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:  # a schema from a newer headrace, unknown here
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES ('9999')")
    result = probe(f"sqlite:///{path}")
    error = str(result["error"])
    assert error.startswith("Migrating the database failed:"), error
    assert "9999" in error
