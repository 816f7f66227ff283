"""The login form (only with ``HEADRACE_API_KEY`` set), logging out, and ``GET /``."""

from __future__ import annotations

import hmac

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from headrace.runner.server.ui.auth import KEY_COOKIE, safe_next, with_key_cookie
from headrace.runner.server.ui.http import Dash, back_to, page, read_form

WRONG_KEY = "That is not the API key of this server."


async def login_form(dash: Dash, next: str | None = None) -> Response:
    if not dash.settings.api_key:
        return back_to(safe_next(next))
    return page(dash.render("login.html", next=safe_next(next), error=None))


async def login(request: Request, dash: Dash) -> Response:
    """Check the key; keep it in an HttpOnly, SameSite=Strict cookie and go back."""
    form = await read_form(request)
    target = safe_next(form.get("next"))
    expected = dash.settings.api_key or ""
    given = form.get("key", "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return page(dash.render("login.html", next=target, error=WRONG_KEY), 401)
    secure = request.url.scheme == "https"
    return with_key_cookie(back_to(target), expected, secure=secure)


async def logout() -> Response:
    response = back_to("/ui/login")
    response.delete_cookie(KEY_COOKIE, path="/")
    return response


async def root() -> Response:
    return RedirectResponse("/ui/", status_code=307)


def add_login_routes(app: FastAPI) -> None:
    add = app.add_api_route
    add("/", root, methods=["GET"], include_in_schema=False)
    add("/ui", root, methods=["GET"], include_in_schema=False)
    add("/ui/login", login_form, methods=["GET"], include_in_schema=False)
    add("/ui/login", login, methods=["POST"], include_in_schema=False)
    add("/ui/logout", logout, methods=["POST"], include_in_schema=False)
