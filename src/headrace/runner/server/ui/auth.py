"""The dashboard's login: with ``HEADRACE_API_KEY`` set, the key is asked for once and
kept in an HttpOnly, SameSite=Strict cookie, which the gate accepts for dashboard paths only.

The cookie holds the key itself (URL-quoted): the gate compares it as it
compares an ``Authorization`` header, in constant time. SameSite=Strict keeps
other sites' pages from sending it; the gate's Origin rule refuses their POSTs.
"""

from __future__ import annotations

from urllib.parse import quote, unquote, urlencode

from starlette.responses import RedirectResponse, Response

KEY_COOKIE = "headrace_key"
LOGIN_PATH = "/ui/login"
STATIC_PREFIX = "/ui/static/"
COOKIE_MAX_AGE = 30 * 24 * 3600


def is_ui_path(path: str) -> bool:
    """The dashboard's pages and the redirect to them."""
    return path == "/" or path == "/ui" or path.startswith("/ui/")


def is_open_ui_path(path: str) -> bool:
    """The login form and the files it needs: no data, open without the key."""
    return path == LOGIN_PATH or path.startswith(STATIC_PREFIX)


def login_redirect(path: str, query: bytes) -> Response:
    """303 to the login form, which comes back here once the key is given."""
    back = path + ("?" + query.decode("latin-1") if query else "")
    return RedirectResponse(f"{LOGIN_PATH}?{urlencode({'next': back})}", status_code=303)


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server, never another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/ui/"
    return target


def cookie_value(key: str) -> str:
    return quote(key, safe="")


def key_from_cookie(value: bytes) -> bytes:
    return unquote(value.decode("latin-1")).encode()


def with_key_cookie(response: Response, key: str, *, secure: bool) -> Response:
    response.set_cookie(
        KEY_COOKIE,
        cookie_value(key),
        max_age=COOKIE_MAX_AGE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure,
    )
    return response
