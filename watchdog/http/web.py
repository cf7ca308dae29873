"""The HTTP face: the status page (/, page.py), /metrics, /healthz, /readyz, /status (SPEC 3.3)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterable, Iterator
from itertools import chain, islice
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from watchdog.http.control import MAX_BODY, add_routes
from watchdog.http.guard import GUARD_KEY, ConnectionGuard
from watchdog.http.page import page
from watchdog.runtime.status import to_json

if TYPE_CHECKING:
    from watchdog.runtime.runtime import Runtime

APP_KEY: web.AppKey["Runtime"] = web.AppKey("watchdog", object)  # type: ignore[arg-type]


def build_web(app: "Runtime", guard: ConnectionGuard) -> web.Application:
    """The endpoints; `guard` (the listening server's) is told while a handler runs, so that a connection
    being served is never closed to make room, and it bounds how long a body may take (control._body)."""
    # Stated, not left to aiohttp's default: the control API's 413 answer names this limit.
    wa = web.Application(client_max_size=MAX_BODY, middlewares=[guard.middleware(), api_errors_as_json])
    wa[APP_KEY] = app
    wa[GUARD_KEY] = guard
    wa.router.add_get("/", status_page)
    wa.router.add_get("/metrics", metrics)
    wa.router.add_get("/healthz", healthz)
    wa.router.add_get("/readyz", readyz)
    wa.router.add_get("/status", status)
    add_routes(wa, APP_KEY)
    return wa


@web.middleware
async def api_errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own refusals under /api/ (no such path, wrong method) answer in the API's shape, one JSON
    line, like every other control API error; the other endpoints keep aiohttp's plain text."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/api/"):
            raise
        return web.json_response({"error": exc.reason}, status=exc.status, headers=_kept(exc))


def _kept(exc: web.HTTPException) -> dict[str, str]:
    # A 405 must still say which methods the path takes.
    return {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}


async def status_page(request: web.Request) -> web.Response:
    return await page(request, request.app[APP_KEY])


async def metrics(request: web.Request) -> web.StreamResponse:
    # Rendered in a thread: at 5 000 rules that takes ~100 ms, which on the loop would hold up polls and levels.
    # prometheus_client's registry is thread-safe (each metric copies its children under its lock). Sent as it
    # is rendered, about 64 KiB at a time, the page is never held whole (its lines, their join and its bytes:
    # a scrape's peak at 5 000 rules 2.7 -> 0.26 MB of Python allocations, the same CPU; bench/README.md).
    app = request.app[APP_KEY]
    parts = chain.from_iterable(map(_exposition, app.metrics.registry.collect()))
    chunk = await asyncio.to_thread(_next_chunk, parts)  # before the head: a failure here is still a 500
    resp = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE_LATEST})
    await resp.prepare(request)
    # A reader that stops taking the page is cut off after the idle timeout, as an answered one would be: a
    # handler waiting on it keeps its connection busy, which the guard never closes to make room.
    stall = app.cfg.watchdog.http_idle_timeout.total_seconds()
    try:
        while chunk:
            async with asyncio.timeout(stall):
                await resp.write(chunk)
            chunk = await asyncio.to_thread(_next_chunk, parts)
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()
        return resp
    await resp.write_eof()
    return resp


class _One(Collector):
    """One collected family, or a run of its samples, as prometheus_client's exposition takes it: a collector."""

    def __init__(self, family: Metric):
        self.family = family

    def collect(self) -> Iterable[Metric]:
        return (self.family,)


def _exposition(family: Metric, run: int = 200) -> Iterator[bytes]:
    """A family's exposition (prometheus_client's), in parts: a gauge's samples `run` at a time (the per-rule
    series are one gauge line a rule), each run without the HELP and TYPE lines after the first."""
    if family.type != "gauge":
        yield generate_latest(_One(family))
        return
    samples, first = iter(family.samples), True
    while True:
        part = copy.copy(family)
        part.samples = list(islice(samples, run))
        if not part.samples and not first:
            return
        text = generate_latest(_One(part))
        yield text if first else text.split(b"\n", 2)[2]
        first = False


def _next_chunk(parts: Iterator[bytes], size: int = 64 * 1024) -> bytes:
    """The next parts, at least `size` bytes of them unless they run out (b"": none left)."""
    held, n = [], 0
    for part in parts:
        held.append(part)
        n += len(part)
        if n >= size:
            break
    return b"".join(held)


async def healthz(request: web.Request) -> web.Response:
    ok, why = request.app[APP_KEY].health()
    return web.json_response({"ok": ok, "why": why}, status=200 if ok else 503)


async def readyz(request: web.Request) -> web.Response:
    ok, why = request.app[APP_KEY].readiness()
    return web.json_response({"ok": ok, "why": why}, status=200 if ok else 503)


async def status(request: web.Request) -> web.Response:
    doc: dict[str, Any] = request.app[APP_KEY].status()
    return web.json_response(doc, dumps=to_json)

