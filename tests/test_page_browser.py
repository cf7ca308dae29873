"""The status page in headless Chromium (Debian's `chromium`, driven by playwright: tools/browser.py), served
by the real daemon on moto during the story's incident: the DOM as the browser built it, a screenshot,
the pause form with a wrong and a right token, a refresh that keeps what was typed, and no request
anywhere but the watchdog's own address.

The screenshots are test artefacts: test-artifacts/page-incident.png and test-artifacts/page-hostile.png at
the repository's root (git-ignores them)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page

from binaries import binary_or_skip
from story import Publisher, render
from tests.daemon import Daemon
from timing import FakeClock
from test_page import HOSTILE, T0, config, feed, started
from tools.browser import chromium

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
TOKEN = "page-browser-token"


async def shown(page: Page, expression: str, timeout: float = 20.0) -> Any:
    """`expression`'s value once it is truthy. Polled from here: playwright's wait_for_function compiles
    its predicate with eval, which the page's Content-Security-Policy rightly forbids."""
    deadline = time.monotonic() + timeout
    while True:
        value = await page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not shown within {timeout:g}s: {expression}")
        await asyncio.sleep(0.1)


async def answer(page: Page, form: str) -> str:
    """The form's answer once the API's reply is shown."""
    return str(await shown(page, f"(t => /^\\d{{3}} /.test(t) && t)(document.querySelector('#{form} .answer')"
                                 ".textContent)"))


async def test_the_page_shows_the_incident_and_its_pause_form_pauses(tmp_path: Path, moto_url: str, aws_env,
                                                                      admin_api) -> None:
    binary = binary_or_skip("chromium", package="chromium")
    ARTIFACTS.mkdir(exist_ok=True)
    ns = f"PAGE{time.monotonic_ns()}"
    pub = Publisher(moto_url, ns)
    pub.start(heal_when=lambda: admin_api.count("/admin/routing") > 0)  # level 1 does not cure, level 2 does
    d = await Daemon(render(tmp_path, moto_url, admin_api, ns, api_token=TOKEN)).start()
    try:
        port = await d.port()
        await d.wait_for("mitigated", timeout=60)
        origin = f"http://127.0.0.1:{port}"
        async with chromium(tmp_path / "profile", origin, binary) as b:
            page = b.page
            await page.goto(origin + "/")
            await page.screenshot(path=ARTIFACTS / "page-incident.png", full_page=True)
            row = page.locator("#targets tr.target")
            assert await row.count() == 1
            assert await row.get_attribute("data-target") == "hybrid-routing"
            assert await row.locator("td.level").text_content() == "2"
            assert await row.locator("td.phase").text_content() == "mitigated"
            incident = await row.get_attribute("data-incident")
            chart = page.locator("svg.chart[data-target='hybrid-routing'][data-rule='latency']")
            assert await chart.count() == 1
            assert await chart.locator("line.threshold").count() == 1
            assert await chart.locator("polyline.values").count() == 1
            assert await chart.locator("text.level-text").all_text_contents() == ["L1", "L2"]
            box = await chart.bounding_box()
            assert box is not None and box["width"] > 500  # laid out, not collapsed
            assert await page.locator(f"ol.timeline[data-incident='{incident}']").count() == 1
            events = await page.locator("ol.timeline li.event").evaluate_all("els => els.map(e => e.dataset.event)")
            assert events[:2] == ["incident_opened", "level_started"] and events[-1] == "mitigated", events
            assert "verification_failed" in events  # level 1 did not cure it
            first = str(await page.locator("ol.timeline li.event").first.text_content())
            assert "alarm: latency" in first and "next: running level 1" in first

            # A wrong token: the API's 401, shown on the page.
            await page.fill("#token", "not-the-token")
            # The reason is hostile markup: it travels through the real API and journal back onto the page.
            await page.fill("#pause-form [name=reason]", f"deploying the fix by hand {HOSTILE}")
            await page.click("#pause-form button")
            assert re.match(r"401 Unauthorized: missing or wrong bearer token", await answer(page, "pause-form"))

            # A refresh of the live part leaves what is typed in the forms alone.
            await page.fill("#resume-form [name=reason]", "half-typed")
            await page.evaluate("window.before = document.querySelector('#targets')")
            await shown(page, "document.querySelector('#targets') !== window.before")
            assert await page.input_value("#resume-form [name=reason]") == "half-typed"
            assert await page.input_value("#pause-form [name=reason]") == f"deploying the fix by hand {HOSTILE}"

            await page.fill("#token", TOKEN)
            await page.evaluate("document.querySelector('#pause-form .answer').textContent = ''")
            await page.click("#pause-form button")
            said = await answer(page, "pause-form")
            assert said.startswith("200 OK: ") and '"paused":"*"' in said, said
            await shown(page, "document.querySelector('#targets td.paused').textContent.includes("
                              "'deploying the fix by hand <img src=x onerror=alert(1)>')")
            assert await page.locator("img").count() == 0  # the reason is text, not an element
            assert await page.evaluate("localStorage.length + sessionStorage.length") == 0
            assert await page.evaluate("document.cookie") == ""
        assert b.outside == [], b.outside
        assert b.dialogs == []  # no script of the reason's ran
        assert b.requests and all(u.startswith(origin + "/") for u in b.requests), b.requests
        assert not [u for u in b.requests if TOKEN in u]
        async with aiohttp.ClientSession() as s, s.get(f"{origin}/metrics") as r:
            metrics = await r.text()
        assert re.search(r"^watchdog_paused 1(\.0)?$", metrics, re.M), metrics
    finally:
        await pub.stop()
        await d.stop()


async def test_a_hostile_rule_name_renders_as_text_in_the_browser(tmp_path: Path) -> None:
    """The config refuses such a name (its name pattern); a config that carries one anyway (model_copy skips
    validation) must still give text, no element and no script run."""
    binary = binary_or_skip("chromium", package="chromium")
    ARTIFACTS.mkdir(exist_ok=True)
    cfg = config(tmp_path, level_name=HOSTILE)
    t = cfg.targets[0]
    cfg = cfg.model_copy(update={"targets": [t.model_copy(update={"rules": [
        t.rules[0].model_copy(update={"name": HOSTILE})]})]})
    app = await started(cfg, FakeClock(T0))
    try:
        await feed(app, T0, 2500.0)
        origin = f"http://127.0.0.1:{app.bound_port}"
        async with chromium(tmp_path / "profile", origin, binary) as b:
            await b.page.goto(origin + "/")
            await b.page.wait_for_timeout(300)
            await b.page.screenshot(path=ARTIFACTS / "page-hostile.png", full_page=True)
            assert await b.page.locator("img").count() == 0
            cell = b.page.locator("tr.rule td").first
            assert await cell.text_content() == HOSTILE
            assert await b.page.locator("svg.chart").get_attribute("data-rule") == HOSTILE
        assert b.dialogs == [] and b.outside == []
    finally:
        await app.stop()

