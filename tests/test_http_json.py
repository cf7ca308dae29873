"""http_json source against a real aiohttp server on loopback: dotted fields, and every
failure (non-2xx, timeout, bad JSON, missing or non-scalar field) is a SourceError,
never a reading."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from watchdog.config.models import Rule
from watchdog.config.schema import rule_model
from watchdog.sources.base import Query, SourceError
from watchdog.sources.http_json import HttpJson, HttpJsonSource, pick
from loopback import serving_get
from sleeps import Sleeps

UTC = timezone.utc
T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)

DOC: dict[str, Any] = {
    "gdpr": {"compliant": True, "score": 97, "ratio": 0.25},
    "security": {"findings": [{"severity": "high", "count": 3}, {"severity": "low", "count": 0}]},
    "matrix": [[1, 2], [3, 4]],
    "flags": {"off": False, "nothing": None, "label": "green", "list": [1], "map": {}},
    "0": {"literal": 5},
}


@dataclass
class Answer:
    status: int = 200
    body: str | None = None  # None: the JSON document
    delay: float = 0.0
    content_type: str = "application/json"


@dataclass
class JsonServer:
    url: str = ""
    doc: Any = field(default_factory=lambda: DOC)
    script: list[Answer] = field(default_factory=list)  # in order; the last one repeats
    calls: list[dict[str, str]] = field(default_factory=list)  # request headers per call

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append(dict(request.headers))
        ans = Answer()
        if self.script:
            ans = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if ans.delay:
            await asyncio.sleep(ans.delay)
        body = json.dumps(self.doc) if ans.body is None else ans.body
        return web.Response(status=ans.status, text=body, content_type=ans.content_type)


@pytest.fixture
async def server() -> AsyncIterator[JsonServer]:
    s = JsonServer()
    async with serving_get("/status", s.handle) as url:
        s.url = f"{url}/status"
        yield s


def rule(name: str, path: str, n: int = 1) -> Rule:
    return rule_model().model_validate({
        "name": name, "category": "security", "source": "compliance", "field": path,
        "threshold": "== false", "evaluation_periods": n,
    })


def make(url: str, session: aiohttp.ClientSession, fields: dict[str, str], sleeps: Sleeps | None = None,
         attempts: int = 3, timeout: str = "2s", headers: dict[str, str] | None = None, n: int = 1) -> HttpJson:
    cfg = HttpJsonSource.model_validate({
        "name": "compliance", "type": "http_json", "url": url, "interval": "60s", "timeout": timeout,
        "headers": headers or {}, "retry": {"attempts": attempts, "initial_backoff": "10ms", "max_backoff": "40ms"},
    })
    return HttpJson(cfg, [Query(f"t/{k}", rule(k, p, n)) for k, p in fields.items()], session, sleep=sleeps)


# --- pick ----------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "value"), [
    ("gdpr.compliant", True),
    ("flags.off", False),
    ("gdpr.score", 97.0),
    ("gdpr.ratio", 0.25),
    ("security.findings.0.count", 3.0),
    ("security.findings.1.count", 0.0),
    ("matrix.1.0", 3.0),
    ("0.literal", 5.0),  # a dict key that looks like an index is still a key
])
def test_pick_reads_scalars(path: str, value: float | bool) -> None:
    got = pick(DOC, path)
    assert got == value and type(got) is type(value)  # booleans stay booleans, numbers become floats


@pytest.mark.parametrize(("path", "why"), [
    ("gdpr.missing", "not found"),
    ("nope", "not found"),
    ("security.findings.2.count", "not found"),  # index out of range
    ("security.findings.-1.count", "not found"),  # no negative indexes
    ("security.findings.first", "not found"),
    ("gdpr.score.deeper", "not found"),  # through a scalar
    ("gdpr", "dict"),
    ("security.findings", "list"),
    ("flags.nothing", "NoneType"),
    ("flags.label", "str"),
    ("flags.list", "list"),
    ("flags.map", "dict"),
    ("", "not found"),
])
def test_pick_refuses_missing_and_non_scalar_fields(path: str, why: str) -> None:
    with pytest.raises(SourceError, match=why):
        pick(DOC, path)


# --- polling a real server ----------------------------------------------------------------


async def test_poll_reads_every_field_and_keeps_history(server: JsonServer, session: aiohttp.ClientSession) -> None:
    src = make(server.url, session, {"gdpr": "gdpr.compliant", "high": "security.findings.0.count"},
               headers={"Authorization": "Bearer tok-123"}, n=2)
    await src.start()
    assert src.sampled is True
    got = await src.poll(T0)
    assert got == {"t/gdpr": [(T0, True)], "t/high": [(T0, 3.0)]}
    assert len(server.calls) == 1  # one request per poll, whatever the number of rules
    assert server.calls[0]["Authorization"] == "Bearer tok-123"
    server.doc = {"gdpr": {"compliant": False}, "security": {"findings": [{"count": 9}]}}
    times = [T0 + timedelta(minutes=k) for k in range(1, 9)]
    for t in times:
        got = await src.poll(t)
    # history is bounded: the evaluation range (N + 2) + 2 readings
    assert got["t/gdpr"] == [(t, False) for t in times[-6:]]
    assert got["t/high"] == [(t, 9.0) for t in times[-6:]]
    await src.close()


@pytest.mark.parametrize(("status", "calls"), [(400, 1), (401, 1), (403, 1), (404, 1), (500, 3), (502, 3), (503, 3), (429, 3)])
async def test_non_2xx_is_a_source_error(server: JsonServer, session: aiohttp.ClientSession, status: int, calls: int) -> None:
    server.script = [Answer(status, body='{"gdpr": {"compliant": false}}')]  # a body that would breach
    sleeps = Sleeps()
    src = make(server.url, session, {"gdpr": "gdpr.compliant"}, sleeps)
    with pytest.raises(SourceError, match=f"HTTP {status}"):
        await src.poll(T0)
    assert len(server.calls) == calls  # 5xx and 429 retried per schedule, 4xx not
    assert len(sleeps.delays) == calls - 1 and all(0 <= d <= 0.04 for d in sleeps.delays)


async def test_5xx_then_success_is_retried(server: JsonServer, session: aiohttp.ClientSession) -> None:
    server.script = [Answer(503), Answer(500), Answer(200)]
    sleeps = Sleeps()
    src = make(server.url, session, {"gdpr": "gdpr.compliant"}, sleeps, attempts=3)
    assert await src.poll(T0) == {"t/gdpr": [(T0, True)]}
    assert len(server.calls) == 3 and len(sleeps.delays) == 2


async def test_retries_stop_at_attempts(server: JsonServer, session: aiohttp.ClientSession) -> None:
    server.script = [Answer(503)]
    sleeps = Sleeps()
    src = make(server.url, session, {"gdpr": "gdpr.compliant"}, sleeps, attempts=6)
    with pytest.raises(SourceError):
        await src.poll(T0)
    assert len(server.calls) == 6 and len(sleeps.delays) == 5
    assert all(0 <= d <= 0.04 for d in sleeps.delays)


async def test_timeout_is_a_source_error(server: JsonServer, session: aiohttp.ClientSession) -> None:
    server.script = [Answer(delay=3.0)]
    sleeps = Sleeps()
    src = make(server.url, session, {"gdpr": "gdpr.compliant"}, sleeps, attempts=2, timeout="150ms")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(SourceError, match="no answer within 0.15s"):
        await src.poll(T0)
    # Gave up on time, twice (2 x 0.15 s), without waiting for either answer (3 s each): slack for load.
    assert loop.time() - started < 2.5
    assert len(server.calls) == 2 and len(sleeps.delays) == 1


async def test_timeout_then_answer_succeeds(server: JsonServer, session: aiohttp.ClientSession) -> None:
    server.script = [Answer(delay=0.6), Answer()]
    src = make(server.url, session, {"score": "gdpr.score"}, Sleeps(), attempts=2, timeout="150ms")
    assert await src.poll(T0) == {"t/score": [(T0, 97.0)]}


@pytest.mark.parametrize("body", ["<html>oops</html>", "{not json", '{"gdpr": ', ""], ids=["html", "broken", "truncated", "empty"])
async def test_invalid_json_is_a_source_error(server: JsonServer, session: aiohttp.ClientSession, body: str) -> None:
    server.script = [Answer(200, body=body, content_type="text/html")]
    src = make(server.url, session, {"gdpr": "gdpr.compliant"}, Sleeps())
    with pytest.raises(SourceError):
        await src.poll(T0)
    assert len(server.calls) == 1  # a 200 with a bad body is not retried


@pytest.mark.parametrize(("bad", "match"), [
    ({"compliant": True}, "not found"),  # gdpr.score missing
    ({"compliant": True, "score": {"value": 1}}, "dict"),
    ({"compliant": True, "score": "97"}, "str"),
    ({"compliant": True, "score": None}, "NoneType"),
])
async def test_missing_or_non_scalar_field_fails_the_whole_poll(
    server: JsonServer, session: aiohttp.ClientSession, bad: dict, match: str
) -> None:
    src = make(server.url, session, {"ok": "gdpr.compliant", "score": "gdpr.score"}, Sleeps(), n=3)
    assert await src.poll(T0) == {"t/ok": [(T0, True)], "t/score": [(T0, 97.0)]}
    server.doc = {"gdpr": bad}
    with pytest.raises(SourceError, match=match):
        await src.poll(T0 + timedelta(minutes=1))
    assert len(server.calls) == 2  # not retried: the server answered, the answer is unusable
    server.doc = DOC
    later = T0 + timedelta(minutes=2)
    # the failed poll left no partial reading behind, not even for the rule whose field was fine
    assert await src.poll(later) == {"t/ok": [(T0, True), (later, True)], "t/score": [(T0, 97.0), (later, 97.0)]}


async def test_unreachable_server_is_a_source_error(session: aiohttp.ClientSession) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps = Sleeps()
    src = make(f"http://127.0.0.1:{port}/status", session, {"gdpr": "gdpr.compliant"}, sleeps, attempts=2)
    with pytest.raises(SourceError):
        await src.poll(T0)
    assert len(sleeps.delays) == 1  # a refused connection is retried once, then given up
