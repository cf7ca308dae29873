"""The control API (SPEC 3.3): POST /api/v1/..., bearer token compared in constant time.

Without a configured `api_token` every control endpoint answers 403; with one, a
missing or wrong token answers 401. Bad input answers 400 with one line.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from aiohttp import web

from watchdog.config.types import format_duration, parse_duration
from watchdog.status import to_json

if TYPE_CHECKING:
    from watchdog.app import App

Handler = Any


def add_routes(wa: web.Application, key: web.AppKey["App"]) -> None:
    def wrap(fn: Handler) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            app = request.app[key]
            token = app.cfg.watchdog.api_token
            if token is None:
                return _err(403, "the control API is off: set watchdog.api_token")
            given = request.headers.get("Authorization", "")
            expected = f"Bearer {token.get_secret_value()}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return _err(401, "missing or wrong bearer token")
            try:
                body = await _body(request)
                return await fn(app, request, body)
            except _BadInput as exc:
                return _err(400, str(exc))

        return handler

    wa.router.add_post("/api/v1/pause", wrap(pause))
    wa.router.add_post("/api/v1/resume", wrap(resume))
    wa.router.add_post("/api/v1/targets/{target}/rollback", wrap(rollback))
    wa.router.add_post("/api/v1/incidents/{incident}/resolve", wrap(resolve))
    wa.router.add_get("/api/v1/incidents", wrap(incidents))
    wa.router.add_get("/api/v1/incidents/{incident}", wrap(incident))
    wa.router.add_post("/api/v1/alertmanager", wrap(alertmanager))


async def alertmanager(app: "App", request: web.Request, body: dict[str, Any]) -> web.Response:
    """Alertmanager's webhook (payload version 4). The alert sources are judged at once, not at their
    next interval: a firing alert should act as fast as a polled breach."""
    try:
        taken = app.alerts.receive(body)
    except ValueError as exc:
        raise _BadInput(str(exc)) from None
    for name in app.alert_sources():
        app.spawn(app.poll(name), f"poll:{name}:pushed")
    return web.json_response({"received": taken})


class _BadInput(Exception):
    pass


def _err(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    if request.method != "POST" or not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise _BadInput("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _BadInput("the body must be a JSON object")
    return body


def _text(body: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _BadInput(f"{key}: required")
        return None
    if not isinstance(value, str):
        raise _BadInput(f"{key}: must be a string")
    return value.strip()


async def pause(app: "App", request: web.Request, body: dict[str, Any]) -> web.Response:
    raw = _text(body, "duration")
    try:
        duration = parse_duration(raw)
    except ValueError as exc:
        raise _BadInput(f"duration: {exc}") from None
    if duration.total_seconds() <= 0:
        raise _BadInput("duration: must be more than 0")
    reason, target = _text(body, "reason"), _text(body, "target", required=False)
    try:
        p = await app.pause(target, duration, reason or "")
    except KeyError:
        return _err(404, f"no target named {target!r}")
    return web.json_response({"paused": p.scope, "until": p.until.isoformat(), "reason": p.reason,
                              "duration": format_duration(duration)})


async def resume(app: "App", request: web.Request, body: dict[str, Any]) -> web.Response:
    target, reason = _text(body, "target", required=False), _text(body, "reason", required=False)
    try:
        p = await app.resume(target, reason or "resumed by an operator")
    except KeyError:
        return _err(404, f"no target named {target!r}")
    return web.json_response({"resumed": p.scope if p else None, "was_paused": p is not None})


async def rollback(app: "App", request: web.Request, body: dict[str, Any]) -> web.Response:
    target = request.match_info["target"]
    if target not in app.executors:
        return _err(404, f"no target named {target!r}")
    level = body.get("level")
    if not isinstance(level, int) or isinstance(level, bool):
        raise _BadInput("level: required, a whole number")
    reason = _text(body, "reason")
    try:
        incident = await app.manual_rollback(target, level, reason or "")
    except ValueError as exc:
        return _err(409, str(exc))
    return web.json_response({"target": target, "level": level, "incident": incident}, status=202)


async def resolve(app: "App", request: web.Request, body: dict[str, Any]) -> web.Response:
    note = _text(body, "note")
    incident = request.match_info["incident"]
    try:
        target = await app.resolve(incident, note or "")
    except KeyError:
        return _err(404, f"no open incident {incident!r}")
    return web.json_response({"resolved": incident, "target": target})


async def incidents(app: "App", request: web.Request, body: dict[str, Any]) -> web.Response:
    return web.json_response({"incidents": app.incidents()}, dumps=to_json)


async def incident(app: "App", request: web.Request, body: dict[str, Any]) -> web.Response:
    wanted = request.match_info["incident"]
    found = next((i for i in app.incidents() if i.get("id") == wanted), None)
    if found is None:
        return _err(404, f"no incident {wanted!r}")
    return web.json_response(found, dumps=to_json)

