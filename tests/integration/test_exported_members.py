from __future__ import annotations

import subprocess
import sys

import headrace


def test_public_names_are_pinned() -> None:
    assert sorted(headrace.__all__) == sorted(
        [
            "Flow",
            "Notify",
            "Runner",
            "Task",
            "exponential_backoff",
            "flow",
            "get_client",
            "run_deployment",
            "runtime",
            "serve",
            "submit_to_runner",
            "task",
            "wait_for_submitted_runs",
        ]
    )
    for name in headrace.__all__:
        assert getattr(headrace, name) is not None


def test_importing_headrace_stays_light() -> None:
    code = (
        "import sys, headrace; "
        "heavy = [m for m in ('fastapi', 'sqlalchemy', 'uvicorn', 'psycopg') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
