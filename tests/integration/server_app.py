"""The runner webserver in-process for tests: an ASGI client, and a runner serving test flows."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from fastapi import FastAPI

from headrace.runner import Runner
from headrace.settings import Settings
from tests.flows import basic, nested
from tests.helpers import make_runner

FLOWS_DIR = Path(__file__).resolve().parent.parent / "flows"
UNMANAGED = f"{FLOWS_DIR / 'unmanaged.py'}:unmanaged_flow"


def sqlite_settings_in(tmp_path: Path) -> Settings:
    """For behaviour that does not depend on the database."""
    return Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'web.db'}")


@contextlib.asynccontextmanager
async def client(app: FastAPI, **headers: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client calling ``app`` in-process, sending ``headers`` with every request."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://localhost", headers=headers
    ) as c:
        yield c


async def served(settings: Settings, **runner_options: Any) -> tuple[Runner, dict[str, UUID]]:
    """A runner serving ``add`` (defaults y=10), ``touch``, ``complex_flow`` and ``double``."""
    runner = make_runner(settings, **runner_options)
    ids = {
        "adder": await runner.add_flow(basic.add, "adder", parameters={"y": 10}),
        "toucher": await runner.add_flow(basic.touch, "toucher"),
        "complex": await runner.add_flow(nested.complex_flow, "complex"),
        "double": await runner.add_flow(nested.double, "double"),
    }
    return runner, ids
