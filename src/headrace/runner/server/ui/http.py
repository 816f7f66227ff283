"""What the dashboard's routes share: the ``Dashboard`` from the app, HTML answers, forms."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Depends, HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from headrace.runner.server.ui.context import Dashboard

MAX_FORM_BYTES = 256 * 1024
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
FRAGMENT_HEADER = "x-fragment"


def dashboard(request: Request) -> Dashboard:
    found: Dashboard = request.app.state.dashboard
    return found


Dash = Annotated[Dashboard, Depends(dashboard)]


def page(html: str, status_code: int = 200) -> HTMLResponse:
    """An HTML answer no page may frame, and no browser may cache (it changes as runs do)."""
    return HTMLResponse(
        html,
        status_code,
        headers={
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
            "style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
        },
    )


def wants_fragment(request: Request) -> bool:
    """The live script asks for a page's live region only."""
    return request.headers.get(FRAGMENT_HEADER) == "1"


def back_to(path: str) -> RedirectResponse:
    """After a POST: see the page again (303: the browser GETs it, a reload repeats nothing)."""
    return RedirectResponse(path, status_code=303)


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body; the last value of a repeated name.

    Any other body is refused (415) rather than read as an empty form, which would
    quietly run with the defaults; so is one too large to be a form (413).
    """
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    body = await request.body()
    if media_type != FORM_MEDIA_TYPE and (media_type or body):
        shown = f"{media_type[:100]!r}" if media_type else "a body without a Content-Type"
        raise HTTPException(
            415, f"The dashboard's forms are sent as {FORM_MEDIA_TYPE}, not {shown}"
        )
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(413, f"A form may be at most {MAX_FORM_BYTES} bytes")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
