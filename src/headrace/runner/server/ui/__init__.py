"""The dashboard: server-rendered HTML pages over the whole database, live without reloads.

==========================================  ===========================================
``GET /``                                   a redirect to ``/ui/``
``/ui/``                                    overview: runners, runs per hour, failures, next
``/ui/deployments``, ``/ui/deployments/X``  deployments; one with its run form and chart
``/ui/runs``, ``/ui/runs/X``                runs (filters, pages); one with its live logs
``/ui/runners``                             every runner, alive or presumed dead
``/ui/events``                              Server-Sent Events: runs changed
==========================================  ===========================================

Pages are Jinja2 templates with autoescape (``context``), charts are SVG drawn
here (``charts``), the run form comes from the parameter schema (``forms``).
A small script (``static/live.js``) re-reads a page's live region when
``/ui/events`` says runs changed (``live``), and tails a run's logs.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from headrace.runner.server.ui.context import HERE, Dashboard
from headrace.runner.server.ui.deployment_pages import add_deployment_routes
from headrace.runner.server.ui.login import add_login_routes
from headrace.runner.server.ui.overview import add_overview_routes
from headrace.runner.server.ui.run_pages import add_run_pages

__all__ = ["Dashboard", "add_dashboard"]


def add_dashboard(app: FastAPI, dash: Dashboard) -> None:
    """Add the dashboard's pages, actions and files to ``app``."""
    app.state.dashboard = dash
    add_login_routes(app)
    add_overview_routes(app)
    add_deployment_routes(app)
    add_run_pages(app)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
