"""The control API (SPEC 3.3): POST /api/v1/..., bearer token compared in constant time.

Without a configured `api_token` every control endpoint answers 403; with one, a
missing or wrong token answers 401. Bad input answers 4xx with a one-line JSON
error, never 500: 400 for a body or field that cannot be used, 413 for a body
over MAX_BODY.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from watchdog.config.types import format_duration, parse_duration
from watchdog.http.guard import BodyTimeout, read_body
from watchdog.runtime.status import to_json

if TYPE_CHECKING:
    from watchdog.runtime.runtime import Runtime

Handler = Callable[["Runtime", web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]
# The largest request body read (aiohttp's client_max_size, set by web.build_web): an Alertmanager
# payload of a few thousand alerts fits; anything larger is answered 413.
MAX_BODY = 1024 * 1024


def add_routes(wa: web.Application, key: web.AppKey["Runtime"]) -> None:
    def wrap(fn: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            app = request.app[key]
            token = app.cfg.watchdog.api_token
            if token is None:
                return _err(403, "the control API is off: set watchdog.api_token")
            if not _authorized(request.headers.get("Authorization", ""), token.get_secret_value()):
                return _err(401, "missing or wrong bearer token")
            try:
                body = await _body(request)
                return await fn(app, request, body)
            except _BadInput as exc:
                return _err(exc.status, str(exc))

        return handler

    wa.router.add_post("/api/v1/pause", wrap(pause))
    wa.router.add_post("/api/v1/resume", wrap(resume))
    wa.router.add_post("/api/v1/targets/{target}/rollback", wrap(rollback))
    wa.router.add_post("/api/v1/incidents/{incident}/resolve", wrap(resolve))
    wa.router.add_get("/api/v1/incidents", wrap(incidents))
    wa.router.add_get("/api/v1/incidents/{incident}", wrap(incident))
    wa.router.add_post("/api/v1/alertmanager", wrap(alertmanager))


def _authorized(given: str, token: str) -> bool:
    # aiohttp hands header values over decoded as UTF-8 with surrogateescape, and the token may come
    # from the environment the same way: a strict .encode() raised on a byte such as 0xff (a 500).
    # surrogatepass encodes any str, and both sides alike, so such a byte is simply a wrong token.
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"),
                               f"Bearer {token}".encode("utf-8", "surrogatepass"))


async def alertmanager(app: "Runtime", request: web.Request, body: dict[str, Any]) -> web.Response:
    """Alertmanager's webhook (payload version 4). The alert sources are judged at once, not at their
    next interval: a firing alert should act as fast as a polled breach."""
    try:
        taken = app.alerts.receive(body)
    except ValueError as exc:
        raise _BadInput(str(exc)) from None
    pushed = app.clock.now()  # the push is the tick of the polls it brings forward
    for name in app.alert_sources():  # each pushed poll passes the reload gate as a scheduled one does
        app.tasks.spawn(app.poll(name, pushed), f"poll:{name}:pushed")
    return web.json_response({"received": taken})


class _BadInput(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _err(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _shown(value: str, limit: int = 40) -> str:
    """A client's value quoted in an error, cut short: the answer stays one short line."""
    return repr(value if len(value) <= limit else value[:limit - 3] + "...")


async def _body(request: web.Request) -> dict[str, Any]:
    if request.method != "POST" or not request.can_read_body:
        return {}
    try:
        raw = await read_body(request)  # within watchdog.http_body_timeout: a stalled body holds nothing long
    except web.HTTPRequestEntityTooLarge:
        raise _BadInput(f"the body is larger than {MAX_BODY} bytes (1 MiB)", 413) from None
    except BodyTimeout as exc:
        raise _BadInput(str(exc), 408) from None
    body = _parse_json(_decode(raw, _charset(request)))
    if not isinstance(body, dict):
        raise _BadInput("the body must be a JSON object")
    return body


def _charset(request: web.Request) -> str:
    try:
        return request.charset or "utf-8"
    except ValueError:  # a Content-Type aiohttp cannot parse
        raise _BadInput("Content-Type: cannot be parsed") from None


def _decode(raw: bytes, charset: str) -> str:
    try:
        return raw.decode(charset)
    except LookupError:  # no such codec, or one that is not a text encoding ("rot13", "hex")
        raise _BadInput(f"Content-Type: unknown charset {_shown(charset)}") from None
    except ValueError:
        raise _BadInput(f"the body is not valid {_shown(charset)} text") from None


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise _BadInput("the body is not valid JSON") from None
    except RecursionError:  # the parser recurses per level: [[[[...]]]] 200 000 deep
        raise _BadInput("the body is nested too deeply") from None


def _text(body: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _BadInput(f"{key}: required")
        return None
    if not isinstance(value, str):
        raise _BadInput(f"{key}: must be a string")
    try:
        # JSON may carry a lone surrogate ("\ud800"), which no UTF-8 file (the state file) can hold.
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _BadInput(f"{key}: not valid Unicode text") from None
    return value.strip()


async def pause(app: "Runtime", request: web.Request, body: dict[str, Any]) -> web.Response:
    raw = _text(body, "duration")
    try:
        duration = parse_duration(raw)
    except (ValueError, OverflowError) as exc:
        raise _BadInput(f"duration: {exc}") from None
    if duration.total_seconds() <= 0:
        raise _BadInput("duration: must be more than 0")
    reason, target = _text(body, "reason"), _text(body, "target", required=False)
    try:
        p, stored = await app.pause(target, duration, reason or "")
    except KeyError:
        return _err(404, f"no target named {_shown(target or '')}")
    return web.json_response({"paused": p.scope, "until": p.until.isoformat(), "reason": p.reason,
                              "duration": format_duration(duration), "stored": stored})


async def resume(app: "Runtime", request: web.Request, body: dict[str, Any]) -> web.Response:
    target, reason = _text(body, "target", required=False), _text(body, "reason", required=False)
    try:
        p, stored = await app.resume(target, reason or "resumed by an operator")
    except KeyError:
        return _err(404, f"no target named {_shown(target or '')}")
    return web.json_response({"resumed": p.scope if p else None, "was_paused": p is not None, "stored": stored})


async def rollback(app: "Runtime", request: web.Request, body: dict[str, Any]) -> web.Response:
    target = request.match_info["target"]
    # The target checked and its level started under one hold of the gate: a reload that removes the target
    # swaps before the check (404) or after the level's incident is open (and is then refused), never between.
    with app.gate.commanding():
        if target not in app.executors:
            return _err(404, f"no target named {_shown(target)}")
        level = body.get("level")
        if not isinstance(level, int) or isinstance(level, bool):
            raise _BadInput("level: required, a whole number")
        # A level the target does not have is bad input (400); 409 is kept for "not now" (a level runs).
        last = app.executors[target].machine.max_level
        if not 1 <= level <= last:
            raise _BadInput(f"level: must be 1..{last} for target {target!r}")
        reason = _text(body, "reason")
        try:
            incident = await app.manual_rollback(target, level, reason or "")
        except ValueError as exc:
            return _err(409, str(exc))
    return web.json_response({"target": target, "level": level, "incident": incident}, status=202)


async def resolve(app: "Runtime", request: web.Request, body: dict[str, Any]) -> web.Response:
    note = _text(body, "note")
    incident = request.match_info["incident"]
    try:
        target, stored = await app.resolve(incident, note or "")
    except KeyError:
        return _err(404, f"no open incident {_shown(incident)}")
    except ValueError as exc:  # a level is running: closing the incident under it would let a second one start
        return _err(409, str(exc))
    return web.json_response({"resolved": incident, "target": target, "stored": stored})


async def incidents(app: "Runtime", request: web.Request, body: dict[str, Any]) -> web.Response:
    return web.json_response({"incidents": app.incidents()}, dumps=to_json)


async def incident(app: "Runtime", request: web.Request, body: dict[str, Any]) -> web.Response:
    wanted = request.match_info["incident"]
    found = next((i for i in app.incidents() if i.get("id") == wanted), None)
    if found is None:
        return _err(404, f"no incident {_shown(wanted)}")
    return web.json_response(found, dumps=to_json)
