"""The dashboard in chromium against a real ``headrace serve``: log in, run from the form,
watch runs change without reloading, tail logs, cancel, and text from runs shown as text."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.conftest import KEY, Server, shoot

pytestmark = [pytest.mark.timeout(90), pytest.mark.xdist_group("browser")]

SCRIPT = "<script>alert(1)</script>"


def mark(page: Any) -> None:
    """Tag the loaded document: the tag survives live updates, not a reload."""
    page.evaluate("window.__notReloaded = true")


def not_reloaded(page: Any) -> bool:
    return bool(page.evaluate("window.__notReloaded === true"))


def test_the_key_is_asked_for_once(browser: Any, server: Server) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 700})
    page = context.new_page()
    page.goto(f"{server.url}/ui/runs")
    assert "/ui/login" in page.url
    assert page.locator("main").inner_text().count("daily") == 0
    page.fill("#key", "wrong")
    page.click("button[type=submit]")
    page.get_by_role("alert").wait_for()
    shoot(page, "login")
    page.fill("#key", KEY)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/ui/runs$"))
    assert page.get_by_role("heading", name="Runs").is_visible()
    cookies = context.cookies()
    assert any(
        c["name"] == "headrace_key" and c["httpOnly"] and c["sameSite"] == "Strict" for c in cookies
    )
    context.close()


def test_a_run_from_the_form_completes_live(page: Any, server: Server) -> None:
    server.trigger(title="fail")
    page.goto(f"{server.url}/ui/deployments/{server.deployment_id}")
    page.get_by_label("title").fill("Weekly numbers")
    page.get_by_label("rows").fill("2.5")
    page.get_by_role("button", name="Run daily").click()
    error = page.locator("#p-limits-rows-error")
    error.wait_for()
    assert "not a whole number" in error.inner_text()
    assert page.get_by_label("title").input_value() == "Weekly numbers"
    shoot(page, "deployment-form-error")
    page.get_by_label("rows").fill("250")
    page.get_by_label("mode").select_option("full")
    page.get_by_role("button", name="Run daily").click()
    page.wait_for_url(re.compile(r".*/ui/runs/[0-9a-f-]+$"))
    mark(page)
    page.locator("h1 .state.s-completed").wait_for(timeout=30_000)
    assert not_reloaded(page)
    assert '"mode": "full"' in page.locator("pre.json").first.inner_text()
    assert '"rows": 250' in page.locator("pre.json").first.inner_text()
    shoot(page, "run")


def test_runs_appear_and_change_without_reloading(page: Any, server: Server) -> None:
    page.goto(f"{server.url}/ui/runs")
    mark(page)
    run_id = server.trigger(title="Appears live", seconds=0.5)
    row = page.locator(f"a[href='/ui/runs/{run_id}']")
    row.wait_for(timeout=20_000)
    page.locator("tr", has=row).locator(".state.s-completed").wait_for(timeout=30_000)
    assert not_reloaded(page)
    shoot(page, "runs")


def test_logs_tail_live_and_a_running_run_cancels(page: Any, server: Server) -> None:
    run_id = server.trigger(title="Long", note=SCRIPT, seconds=60)
    page.goto(f"{server.url}/ui/runs/{run_id}")
    mark(page)
    logs = page.locator("#logs")
    logs.get_by_text("tick 3", exact=True).wait_for(timeout=30_000)
    assert not_reloaded(page)
    assert logs.get_by_text(SCRIPT, exact=True).is_visible()  # shown as text, never run
    assert page.locator("#logs script").count() == 0
    page.locator("h1 .state.s-running").wait_for()
    shoot(page, "run-live-logs")
    page.get_by_role("button", name="Cancel run").click()
    page.locator("h1 .state.s-cancelled").wait_for(timeout=30_000)
    assert server.state(run_id) == "CANCELLED"


def test_every_page_in_light_dark_and_narrow(browser: Any, logged_in: Any, server: Server) -> None:
    server.trigger(title="fail")
    page = logged_in.new_page()
    for path, name in (
        ("/ui/", "overview"),
        ("/ui/deployments", "deployments"),
        (f"/ui/deployments/{server.deployment_id}", "deployment"),
        ("/ui/runners", "runners"),
    ):
        page.goto(f"{server.url}{path}")
        page.locator("main h1").wait_for()
        shoot(page, name)
    page.goto(f"{server.url}/ui/")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused.strip() == "headrace"
    page.emulate_media(color_scheme="dark")
    shoot(page, "overview-dark")
    page.goto(f"{server.url}/ui/deployments/{server.deployment_id}")
    shoot(page, "deployment-dark")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{server.url}/ui/runs")
    shoot(page, "runs-narrow")
    page.goto(f"{server.url}/ui/")
    shoot(page, "overview-narrow")
    page.close()
