"""The HTTP face: the status page (/, page.py), /metrics, /healthz, /readyz, /status (SPEC 3.3)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST

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


async def metrics(request: web.Request) -> web.Response:
    # In a thread: at 5 000 rules rendering takes ~100 ms, which on the loop would hold up polls and levels.
    # prometheus_client's registry is thread-safe (each metric copies its children under its lock).
    body = await asyncio.to_thread(request.app[APP_KEY].metrics.expose)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    ok, why = request.app[APP_KEY].health()
    return web.json_response({"ok": ok, "why": why}, status=200 if ok else 503)


async def readyz(request: web.Request) -> web.Response:
    ok, why = request.app[APP_KEY].readiness()
    return web.json_response({"ok": ok, "why": why}, status=200 if ok else 503)


async def status(request: web.Request) -> web.Response:
    doc: dict[str, Any] = request.app[APP_KEY].status()
    return web.json_response(doc, dumps=to_json)

