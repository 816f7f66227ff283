"""What a subflow prints: its own log lines, as what its ``logging`` records are.

The run's process writes its stdout and stderr to pipes its runner reads as
the run's log. While a subflow runs, ``print`` and ``sys.stderr`` writes from
its body are sent as log events of the subflow's run instead; programs it
starts (which write to the file descriptors) still write to the caller's log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from headrace.jsonvalues import storable
from headrace.process.protocol import Log

RunId = Callable[[], str | None]
"""The subflow run writing now (None: the process's own run)."""
Send = Callable[[Log], None]


class SubflowStream:
    """``sys.stdout``/``sys.stderr`` of a run's process, aware of the subflow writing."""

    def __init__(self, real: TextIO, level: int, run_id: RunId, send: Send) -> None:
        self._real = real
        self._level = level
        self._run_id = run_id
        self._send = send
        self._partial: dict[str, str] = {}
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        run_id = self._run_id()
        if run_id is None:
            return self._real.write(text)
        with self._lock:
            lines = (self._partial.pop(run_id, "") + text).split("\n")
            if lines[-1]:
                self._partial[run_id] = lines[-1]
        for line in lines[:-1]:
            self._send(Log(self._level, storable(line), time.time(), flow_run_id=run_id))
        return len(text)

    def end(self, run_id: str) -> None:
        """The subflow ended: what it printed without a newline is a line too."""
        with self._lock:
            rest = self._partial.pop(run_id, "")
        if rest:
            self._send(Log(self._level, storable(rest), time.time(), flow_run_id=run_id))

    def flush(self) -> None:
        self._real.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, encoding, isatty, buffer...
        return getattr(self._real, name)


def subflow_streams(
    stdout: TextIO, stderr: TextIO, run_id: RunId, send: Send
) -> tuple[SubflowStream, SubflowStream]:
    """The process's stdout and stderr, sending a subflow's lines as its logs."""
    return (
        SubflowStream(stdout, logging.INFO, run_id, send),
        SubflowStream(stderr, logging.ERROR, run_id, send),
    )
