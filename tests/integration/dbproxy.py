"""A TCP proxy in front of the shared PostgreSQL server, to take "the database" away and back.

``down()`` closes every connection through it and refuses new ones, as a
database that went away does; ``up()`` accepts again on the same port.
``black_hole()`` keeps every connection open and accepts new ones, but
forwards nothing either way, as a network partition does; ``resume()``
forwards again, what was held back first (``down()`` then ``up()`` ends it too).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import sqlalchemy as sa


class DatabaseProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._flowing = threading.Event()
        self._flowing.set()
        self.port = 0
        self.up()

    def url_for(self, url: str) -> str:
        """``url``, going through this proxy."""
        rerouted = sa.make_url(url).set(host="127.0.0.1", port=self.port)
        return rerouted.render_as_string(hide_password=False)

    def up(self) -> None:
        self._flowing.set()
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def black_hole(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def down(self) -> None:
        self._flowing.set()  # what a black hole held back meets closed sockets
        with self._lock:
            listener, self._listener = self._listener, None
            doomed = [*self._sockets, *([listener] if listener else [])]
            self._sockets.clear()
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # down
            try:
                server = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._sockets |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                self._flowing.wait()
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def proxy_for(url: str) -> Iterator[DatabaseProxy]:
    parsed = sa.make_url(url)
    proxy = DatabaseProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
    try:
        yield proxy
    finally:
        proxy.down()
