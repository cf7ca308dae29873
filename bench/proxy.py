"""A recording proxy between the daemon (or the baseline) and moto (AWS query protocol).

Adapted from tests/aws_proxy.py (not imported: bench/ stands alone). Every
GetMetricData call is recorded with the number of queries it carried and the
time the proxy spent on it (from the request's arrival to the answer being
handed back): that is "the endpoint's time" the daemon waited for.

Two modes on top of forwarding:
* breach: the answer for one query id gets a breaching value in every datapoint;
  the moment the first such answer is handed back is recorded (reaction time
  starts there);
* replay (soak only): moto's answer to a request is kept and handed back again
  for the same request, until moto's data would answer differently (the next
  datum becomes visible every minute), so a long soak does not measure moto;
* churn: every value of every answer gets one more digit, another at each call
  (284.214 -> 284.2143), so that each poll brings every rule new values, as a
  read at a period boundary does (a new bucket for every query): the daemon
  judges every rule again at every poll, not only when moto's minute turns.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

import aiohttp
from aiohttp import web

_QID = re.compile(rb"MetricDataQueries\.member\.\d+\.Id=")
_END = re.compile(rb"EndTime=([^&]*)")


@dataclass
class Call:
    t_in: float  # monotonic, request fully read
    t_out: float  # monotonic, answer handed back
    queries: int
    status: int
    source: str  # "moto" or "replay"

    @property
    def endpoint_s(self) -> float:
        return self.t_out - self.t_in


@dataclass
class RecordingProxy:
    upstream: str
    url: str = ""
    calls: list[Call] = field(default_factory=list)
    other_requests: int = 0
    breach_qid: bytes | None = None  # rewrite this query id's values
    breach_at: float | None = None  # when the first rewritten answer was handed back
    replay: bool = False
    churn: bool = False
    _cache: dict[bytes, bytes] = field(default_factory=dict)
    session: aiohttp.ClientSession | None = None
    _runner: web.AppRunner | None = None

    async def start(self) -> "RecordingProxy":
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self.session is not None:
            await self.session.close()

    def reset(self) -> None:
        self.calls.clear()
        self.other_requests = 0
        self.breach_qid, self.breach_at = None, None

    def arm_breach(self, qid: str) -> None:
        self.breach_qid, self.breach_at = qid.encode(), None

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        t_in = time.monotonic()
        gmd = b"Action=GetMetricData" in raw
        if not gmd:
            self.other_requests += 1
        key = self._replay_key(raw) if gmd and self.replay else None
        source = "moto"
        if key is not None and key in self._cache:
            body, status, ctype, source = self._cache[key], 200, "text/xml", "replay"
        else:
            headers = {k: v for k, v in request.headers.items()
                       if k.lower() not in ("host", "content-length", "transfer-encoding")}
            assert self.session is not None
            async with self.session.request(request.method, self.upstream + request.path_qs, data=raw,
                                            headers=headers) as up:
                body = await up.read()
                status, ctype = up.status, up.headers.get("Content-Type", "text/xml")
            if key is not None and status == 200:
                if self._cache and next(iter(self._cache))[-8:] != key[-8:]:
                    self._cache.clear()  # moto sees another minute's datum now: older answers are stale
                self._cache[key] = body
        breached = False
        if gmd and status == 200 and self.churn:
            body = _churn(body, len(self.calls))
        if gmd and status == 200 and self.breach_qid is not None:
            body, breached = _rewrite(body, self.breach_qid)
        t_out = time.monotonic()
        if breached and self.breach_at is None:
            self.breach_at = t_out
        if gmd:
            self.calls.append(Call(t_in, t_out, len(_QID.findall(raw)), status, source))
        return web.Response(status=status, body=body, headers={"Content-Type": ctype})

    def _replay_key(self, raw: bytes) -> bytes | None:
        """The request without its EndTime, plus which minute's datum the EndTime lets moto see."""
        from bench.synth import DATUM_SECOND

        m = _END.search(raw)
        if m is None:
            return None
        from datetime import datetime

        end = datetime.fromisoformat(unquote_plus(m.group(1).decode()).replace("Z", "+00:00")).timestamp()
        visible = int((end - DATUM_SECOND - 1) // 60)  # datum at mm:30 is in [start, end) once end > mm:30
        return hashlib.sha256(_END.sub(b"", raw)).digest() + visible.to_bytes(8, "big", signed=True)


_VALUES = re.compile(rb"<Values>.*?</Values>", re.S)


def _churn(body: bytes, call: int) -> bytes:
    """Every value one digit longer, the digit the call's (1..9): the bench's values (80..400 with three decimals,
    SampleCount's 1.0) stay far below their thresholds."""
    digit = str(call % 9 + 1).encode() + b"</member>"
    return _VALUES.sub(lambda m: m.group(0).replace(b"</member>", digit), body)


def _rewrite(body: bytes, qid: bytes) -> tuple[bytes, bool]:
    """Every value of query `qid` becomes a breaching one; (new body, whether it held any value)."""
    from bench.synth import BREACH_VALUE

    start = body.find(b"<Id>" + qid + b"</Id>")
    if start < 0:
        return body, False
    member_start = body.rfind(b"<member>", 0, start)
    end = body.find(b"</Values>", start)
    values_at = body.find(b"<Values>", start)
    if member_start < 0 or values_at < 0 or end < 0:
        return body, False
    next_id = body.find(b"<Id>", start + 1)
    if next_id != -1 and next_id < values_at:
        return body, False  # this result has no values
    segment = body[values_at:end]
    new, count = re.subn(rb"<member>[^<]*</member>", b"<member>" + repr(BREACH_VALUE).encode() + b"</member>", segment)
    return body[:values_at] + new + body[end:], count > 0


def summarize_calls(calls: list[Call]) -> dict[str, Any]:
    return {
        "calls": len(calls),
        "queries": sum(c.queries for c in calls),
        "endpoint_s": sum(c.endpoint_s for c in calls),
        "max_queries_per_call": max((c.queries for c in calls), default=0),
    }
