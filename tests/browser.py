"""Headless Chromium driven over its DevTools protocol (aiohttp's websocket client): open a page, see every
request the page itself makes (the browser's own calls home are another target's and do not count),
evaluate JavaScript in it and take a screenshot."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp


@dataclass
class Page:
    ws: aiohttp.ClientWebSocketResponse
    session: str
    requests: list[str] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _waiting: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    _events: dict[str, asyncio.Event] = field(default_factory=dict)

    async def call(self, method: str, session: str | None = "", **params: Any) -> Any:
        mid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[mid] = fut
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params}
        if session != "" or self.session:
            msg["sessionId"] = self.session if session == "" else session
        if msg.get("sessionId") is None:
            msg.pop("sessionId", None)
        await self.ws.send_str(json.dumps(msg))
        return await asyncio.wait_for(fut, 60)

    def seen(self, event: str) -> asyncio.Event:
        return self._events.setdefault(event, asyncio.Event())

    async def pump(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self._waiting:
                fut = self._waiting.pop(data["id"])
                if "error" in data:
                    fut.set_exception(RuntimeError(str(data["error"])))
                else:
                    fut.set_result(data.get("result"))
            elif data.get("sessionId") == self.session:
                if data.get("method") == "Network.requestWillBeSent":
                    self.requests.append(data["params"]["request"]["url"])
                self.seen(data.get("method", "")).set()

    async def open(self, url: str) -> None:
        await self.call("Page.enable")
        await self.call("Network.enable")
        await self.call("Page.navigate", url=url)
        await asyncio.wait_for(self.seen("Page.loadEventFired").wait(), 60)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def screenshot(self, path: Path, width: int = 1100, height: int = 1400) -> None:
        await self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                        mobile=False)
        shot = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))


@asynccontextmanager
async def headless(binary: str, profile: Path) -> AsyncIterator[Page]:
    proc = await asyncio.create_subprocess_exec(
        binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-port=0",
        f"--user-data-dir={profile}", "about:blank", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stderr is not None
        url = None
        while url is None:
            line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode(errors="replace")
            if not line:
                raise RuntimeError("chromium exited before its DevTools endpoint was up")
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            url = m.group(1) if m else None
        async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
            page = Page(ws, session="")
            pump = asyncio.create_task(page.pump())
            target = await page.call("Target.createTarget", session=None, url="about:blank")
            attached = await page.call("Target.attachToTarget", session=None, targetId=target["targetId"], flatten=True)
            page.session = attached["sessionId"]
            try:
                yield page
            finally:
                pump.cancel()
    finally:
        proc.terminate()
        await proc.wait()
