"""The protected system's admin API, as a stub on loopback: answers 200 and timestamps every request."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(handle: Handler, client_max_size: int = 1024 ** 2) -> tuple[web.AppRunner, str]:
    """`handle` answering every path on a free loopback port: its runner (to clean up) and its URL."""
    app = web.Application(client_max_size=client_max_size)
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]


@dataclass
class AdminStub:
    url: str = ""
    hits: list[tuple[float, str, str]] = field(default_factory=list)  # (monotonic arrival, method, path)
    _runner: web.AppRunner | None = None

    async def start(self) -> "AdminStub":
        async def handle(request: web.Request) -> web.Response:
            self.hits.append((time.monotonic(), request.method, request.path))  # first thing: the arrival
            await request.read()
            return web.json_response({"ok": True})

        self._runner, self.url = await serve(handle)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def first(self, path_suffix: str) -> float | None:
        return next((t for t, _, p in self.hits if p.endswith(path_suffix)), None)
