"""A bound on the connections the webserver holds, so idle clients cannot starve runs of fds.

Every connection is an open file, and so is every pipe a run's process needs:
past the open-file limit, ``os.pipe()`` fails and an accepted run ends CRASHED.
uvicorn holds a connection that never sends a request for as long as the
client keeps it open, and answers 503 past ``limit_concurrency`` only to a
request. So the protocol here also refuses a connection past the bound as it
is accepted (a 503, then closed), and closes one that stays idle before its
first request after the keep-alive timeout, as uvicorn does between requests.
"""

from __future__ import annotations

import asyncio
import json
import resource
from typing import Any

from uvicorn.config import HTTP_PROTOCOLS
from uvicorn.importer import import_from_string

from headrace.process.protocol import FDS_PER_RUN
from headrace.settings import Settings

FDS_RESERVED = 128
"""For what is not a connection or a run: database connections, the fork server's
socket, the event loop's own, log files, the watch streams' helpers."""
FDS_PER_RUN_HELD = 2 * FDS_PER_RUN
"""The runner's ends of a run's socket and pipes, and the child's ends while it starts."""
MIN_CONNECTIONS = 16
MAX_CONNECTIONS = 10_000
"""The default bound never exceeds this, however high the open-file limit."""

_BODY = json.dumps({"message": "Too many connections; try again later"}).encode()
OVER_LIMIT_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
)


def connection_limit(settings: Settings, runs: int) -> int:
    """The configured bound, else what the open-file limit leaves after room for ``runs``."""
    if settings.runner_server_connection_limit is not None:
        return settings.runner_server_connection_limit
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    spare = soft - FDS_RESERVED - runs * FDS_PER_RUN_HELD
    return max(MIN_CONNECTIONS, min(spare, MAX_CONNECTIONS))


def bounded_protocol(limit: int) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, refusing connections past ``limit`` and timing out idle ones."""
    base: Any = import_from_string(HTTP_PROTOCOLS["auto"])

    class BoundedProtocol(base):  # type: ignore[misc]
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            protocol: Any = self
            if len(protocol.connections) > limit:
                transport.write(OVER_LIMIT_RESPONSE)
                transport.close()
                return
            if protocol.timeout_keep_alive_task is None:  # idle before its first request
                protocol.timeout_keep_alive_task = protocol.loop.call_later(
                    protocol.timeout_keep_alive, protocol.timeout_keep_alive_handler
                )

    return BoundedProtocol
