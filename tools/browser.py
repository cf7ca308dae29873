"""Headless Chromium from Debian (/usr/bin/chromium) driven by the `playwright` package, for the status
page's browser tests and `make screenshots`. Playwright's own browser builds are never downloaded: the
system's Chromium is launched by path, with a fresh profile, and every request the page makes is recorded;
one that leaves the watchdog's own address is aborted and kept in `outside` (a test fails on it)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import BrowserContext, Dialog, Page, Route, async_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1100, "height": 800}


def chromium_path() -> str | None:
    """Debian's chromium, where it is installed."""
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    return found


@dataclass
class Browsing:
    context: BrowserContext
    page: Page
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    outside: list[str] = field(default_factory=list)  # those not at the allowed origin (aborted)
    dialogs: list[str] = field(default_factory=list)  # alert(), confirm(), ...: a script ran that should not


@asynccontextmanager
async def chromium(profile: Path, origin: str, binary: str = CHROMIUM) -> AsyncIterator[Browsing]:
    """A page in a fresh headless Chromium (`profile`: an empty directory) that may reach `origin`
    (scheme://host:port, or file:// for a report on disk) and nothing else."""
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(profile), executable_path=binary, headless=True, args=ARGS, viewport=VIEWPORT,
            service_workers="block")
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            seen = Browsing(context, page)

            async def route(r: Route) -> None:
                url = r.request.url
                seen.requests.append(url)
                if url == origin or url.startswith(origin.rstrip("/") + "/") or url.startswith("data:"):
                    await r.continue_()
                else:
                    seen.outside.append(url)
                    await r.abort()

            async def dialog(d: Dialog) -> None:
                seen.dialogs.append(d.message)
                await d.dismiss()

            await context.route("**/*", route)
            page.on("dialog", dialog)
            yield seen
        finally:
            await context.close()
