"""A local server posing as Slack (incoming webhook and Web API), PagerDuty and a webhook receiver.

Every request is recorded with its headers, raw body, parsed body, the status it
got and when it arrived. `script[path]` answers in order (the last repeats);
`delay[path]` holds the answer; `/slack/api/chat.postMessage` answers like
Slack's Web API with a fresh `ts`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import web
from loopback import serving


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    raw: bytes
    body: Any
    status: int
    at: float  # time.monotonic() on arrival


@dataclass
class Receivers:
    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    script: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    delay: dict[str, float] = field(default_factory=dict)
    _ts: Any = field(default_factory=lambda: itertools.count(1))

    def answer(self, path: str, *answers: int | tuple[int, dict[str, str]]) -> None:
        self.script[path] = [a if isinstance(a, tuple) else (a, {}) for a in answers]

    def ok(self, path: str) -> list[Hit]:
        """The requests to `path` that were answered 2xx: the delivered messages."""
        return [h for h in self.hits if h.path == path and 200 <= h.status < 300]

    def all(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]


async def _handle(rec: Receivers, request: web.Request) -> web.Response:
    arrived = time.monotonic()
    raw = await request.read()
    body: Any
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = dict(parse_qsl(raw.decode()))
    if request.path in rec.delay:
        await asyncio.sleep(rec.delay[request.path])
    status, headers = 200, {}
    answers = rec.script.get(request.path)
    if answers:
        status, headers = answers.pop(0) if len(answers) > 1 else answers[0]
    rec.hits.append(Hit(request.path, dict(request.headers), raw, body, status, arrived))
    if request.path.endswith("/chat.postMessage"):
        if status != 200:
            return web.json_response({"ok": False, "error": "internal_error"}, status=status, headers=headers)
        ts = f"1700000000.{next(rec._ts):06d}"
        return web.json_response({"ok": True, "channel": "C0001", "ts": ts}, headers=headers)
    if request.path.startswith("/pagerduty"):
        return web.json_response({"status": "success" if status < 300 else "error", "dedup_key": "x"},
                                 status=202 if status == 200 else status, headers=headers)
    return web.Response(text="ok" if status < 300 else "error", status=status, headers=headers)


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    rec = Receivers()
    app = web.Application()
    async def handle(request: web.Request) -> web.Response:
        return await _handle(rec, request)

    app.router.add_route("*", "/{tail:.*}", handle)
    async with serving(app, shutdown_timeout=60.0) as rec.url:
        yield rec
