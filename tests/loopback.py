"""Loopback plumbing shared by the tests: free ports, and real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web


def free_ports(n: int) -> list[int]:
    """n distinct loopback ports nothing listens on now (bound together, then released)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    """A loopback port nothing listens on now: a closed endpoint, or one to give a server."""
    return free_ports(1)[0]


@asynccontextmanager
async def serving(app: web.Application, shutdown_timeout: float = 0.1) -> AsyncIterator[str]:
    """`app` served on a free loopback port; yields its base URL (`http://127.0.0.1:PORT`)."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serving_get(path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                      shutdown_timeout: float = 0.1) -> AsyncIterator[str]:
    """A server of one GET route, `path`, on loopback; yields its base URL."""
    app = web.Application()
    app.router.add_get(path, handler)
    async with serving(app, shutdown_timeout) as url:
        yield url
