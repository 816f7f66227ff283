"""Which ``Host`` and ``Origin`` values the webserver answers, decided once from settings.

A web page open on the same machine can reach a webserver bound to loopback:
through DNS rebinding (its own name resolving to 127.0.0.1) it could read runs,
and with a plain form it could POST to ``/shutdown`` or a trigger. Checking the
``Host`` header stops the first (the page's name is not ``localhost``), checking
a POST's ``Origin`` the second. Both sets are built here, as lowercase bytes, so
the check on each request is a set lookup.
"""

from __future__ import annotations

import ipaddress

from headrace.settings import Settings

ANY = "*"
LOOPBACK_HOSTS = frozenset({b"localhost", b"127.0.0.1", b"[::1]"})
"""The ``Host`` names a loopback bind answers by default, on any port."""
LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the webserver reachable from this machine only."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(host: bytes) -> bytes:
    """A ``Host`` header without its port, lowercased: ``[::1]:8080`` -> ``[::1]``."""
    if not host.endswith(b"]"):
        name, colon, port = host.rpartition(b":")
        if colon and port.isdigit():
            host = name
    return host.lower()


def allowed_hosts(settings: Settings) -> frozenset[bytes] | None:
    """The ``Host`` names the webserver answers, any port; None for any host.

    ``HEADRACE_RUNNER_SERVER_ALLOWED_HOSTS`` replaces the default: on a loopback
    bind the loopback names (and the bound address itself), elsewhere any host.
    """
    names = _entries(settings.runner_server_allowed_hosts or "")
    if names:
        return None if ANY in names else frozenset(_host_entry(name) for name in names)
    bind = settings.runner_server_host
    if not is_loopback(bind):
        return None
    return LOOPBACK_HOSTS | {_host_entry(bind)}


def allowed_origins(settings: Settings) -> frozenset[bytes] | None:
    """Origins besides the server's own whose pages may POST; None for any origin."""
    origins = _entries(settings.runner_server_allowed_origins)
    if ANY in origins:
        return None
    return frozenset(origin.rstrip("/").encode() for origin in origins)


def same_origin(origin: bytes, host: bytes) -> bool:
    """Whether ``origin`` (``http://localhost:8080``) names the server the request reached."""
    _, _, authority = origin.partition(b"://")
    return authority.lower() == host.lower() and bool(host)


def _entries(text: str) -> list[str]:
    return [entry.strip().lower() for entry in text.split(",") if entry.strip()]


def _host_entry(name: str) -> bytes:
    """A configured host as ``host_name`` gives it: IPv6 in brackets, no port."""
    if name.count(":") > 1 and not name.startswith("["):
        name = f"[{name}]"
    return host_name(name.encode())
