"""The unit tier starts no process and opens no socket; this guard makes that checkable.

Every unit test runs with process starts (``subprocess.Popen`` and everything built on
it, ``os.fork``, ``os.posix_spawn``) and socket ``connect``/``bind`` replaced by a call
that raises ``TierLeak``. The attempt is also recorded, so a test whose code swallows
the error still fails. In-process transports (``httpx.MockTransport``,
``httpx.ASGITransport``) need neither and work as usual. A test that needs a real
child or socket belongs in ``tests/integration`` or ``tests/acceptance``.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

ADVICE = "unit tests start no processes and open no sockets: move this test to tests/integration"


class TierLeak(RuntimeError):
    """A unit test tried to start a process or use a socket."""


def _refuse(what: str, attempts: list[str]) -> Callable[..., Any]:
    def refuse(*args: object, **kwargs: object) -> Any:
        attempts.append(what)
        raise TierLeak(f"{what} called: {ADVICE}")

    return refuse


GUARDED: list[tuple[object, str, str]] = [
    (subprocess.Popen, "_execute_child", "subprocess.Popen"),
    (os, "fork", "os.fork"),
    (os, "forkpty", "os.forkpty"),
    (os, "posix_spawn", "os.posix_spawn"),
    (os, "posix_spawnp", "os.posix_spawnp"),
    (socket.socket, "connect", "socket.connect"),
    (socket.socket, "connect_ex", "socket.connect_ex"),
    (socket.socket, "bind", "socket.bind"),
]


@pytest.fixture(autouse=True)
def no_processes_or_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    attempts: list[str] = []
    for owner, name, what in GUARDED:
        if hasattr(owner, name):
            monkeypatch.setattr(owner, name, _refuse(what, attempts))
    yield
    if attempts:
        pytest.fail(f"{', '.join(sorted(set(attempts)))} called: {ADVICE}", pytrace=False)
