"""A recording proxy in front of moto for CloudWatch tests (AWS query protocol).

It forwards every request to moto and records each GetMetricData call (a form
body with Action=GetMetricData and MetricDataQueries.member.N.*). Per call it can
answer a scripted reply instead (Throttling, 503, an HTML 500 page, a delay), split
moto's answer into two NextToken pages (moto never paginates), or rewrite it.
"""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode

import aiohttp
from aiohttp import web
from loopback import serving

NS = "http://monitoring.amazonaws.com/doc/2010-08-01/"
ET.register_namespace("", NS)


@dataclass
class Reply:
    """A scripted answer to one GetMetricData call; status None forwards to moto (after `delay`)."""

    status: int | None = None
    body: str = ""
    content_type: str = "text/xml"
    delay: float = 0.0


FORWARD = Reply()


def aws_error(code: str, status: int = 400, message: str = "scripted") -> Reply:
    body = (
        f'<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{message}</Message></Error><RequestId>req-1</RequestId></ErrorResponse>"
    )
    return Reply(status, body)


@dataclass
class RecordingProxy:
    upstream: str
    url: str = ""
    calls: list[dict[str, list[str]]] = field(default_factory=list)  # form of each GetMetricData call
    sent: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)  # each GetMetricData call's body and headers
    script: list[Reply] = field(default_factory=list)  # in order; the last one repeats; empty forwards
    paginate: bool = False
    rewrite: Callable[[bytes], bytes] | None = None  # applied to moto's GetMetricData answers
    emulate_math: bool = False  # compute Expression queries, which moto answers empty
    session: aiohttp.ClientSession | None = None

    @property
    def sizes(self) -> list[int]:
        """Number of queries in each GetMetricData call."""
        return [sum(1 for k in form if k.startswith("MetricDataQueries.member.") and k.endswith(".Id")) for form in self.calls]

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        form = parse_qs(raw.decode(), keep_blank_values=True)
        gmd = form.get("Action") == ["GetMetricData"]
        reply = FORWARD
        if gmd:
            self.calls.append(form)
            self.sent.append((raw, dict(request.headers)))
            if self.script:
                reply = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        await asyncio.sleep(reply.delay)
        if reply.status is not None:
            return web.Response(status=reply.status, text=reply.body, content_type=reply.content_type)
        hidden: set[str] = set()
        if gmd and self.emulate_math:
            raw, hidden = _all_returned(form)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length", "transfer-encoding")}
        assert self.session is not None
        async with self.session.request(request.method, self.upstream + request.path_qs, data=raw, headers=headers) as up:
            body = await up.read()
            status, ctype = up.status, up.headers.get("Content-Type", "text/xml")
        if gmd and self.paginate and status == 200:
            body = self._page(body, form)
        if gmd and self.emulate_math and status == 200:
            body = _compute_math(body, form, hidden)
        if gmd and self.rewrite and status == 200:
            body = self.rewrite(body)
        return web.Response(status=status, body=body, headers={"Content-Type": ctype})

    def _page(self, body: bytes, form: dict[str, list[str]]) -> bytes:
        """First page: the first half of every result's points and a NextToken; then the rest."""
        root = ET.fromstring(body)
        first = "NextToken" not in form
        for result in root.iter(f"{{{NS}}}MetricDataResults"):
            for member in result.findall(f"{{{NS}}}member"):
                for name in ("Timestamps", "Values"):
                    lst = member.find(f"{{{NS}}}{name}")
                    items = list(lst) if lst is not None else []
                    half = (len(items) + 1) // 2
                    for item in items[half:] if first else items[:half]:
                        lst.remove(item)  # type: ignore[union-attr]
        if first:
            res = root.find(f"{{{NS}}}GetMetricDataResult")
            token = ET.SubElement(res, f"{{{NS}}}NextToken")  # type: ignore[arg-type]
            token.text = f"page2-of-call{len(self.calls)}"
        return ET.tostring(root)


def _members(form: dict[str, list[str]]) -> dict[str, dict[str, str]]:
    """MetricDataQueries.member.N.<field> -> {N: {field: value}}."""
    out: dict[str, dict[str, str]] = {}
    for key, values in form.items():
        if key.startswith("MetricDataQueries.member."):
            n, _, rest = key.removeprefix("MetricDataQueries.member.").partition(".")
            out.setdefault(n, {})[rest] = values[0]
    return out


def _all_returned(form: dict[str, list[str]]) -> tuple[bytes, set[str]]:
    """The request with every metric's data returned (moto needs it to compute from); the ids that were
    hidden are answered without data afterwards, as CloudWatch would."""
    hidden = set()
    form = {k: list(v) for k, v in form.items()}  # the recorded call stays as sent
    for n, q in _members(form).items():
        if q.get("ReturnData") == "false":
            hidden.add(q["Id"])
            form[f"MetricDataQueries.member.{n}.ReturnData"] = ["true"]
    return urlencode(form, doseq=True).encode(), hidden


def _compute_math(body: bytes, form: dict[str, list[str]], hidden: set[str]) -> bytes:
    """Evaluates each Expression (plain arithmetic over query ids) per timestamp, like CloudWatch."""
    root = ET.fromstring(body)
    results = root.find(f".//{{{NS}}}MetricDataResults")
    assert results is not None
    series: dict[str, dict[str, float]] = {}
    for member in list(results):
        qid = member.findtext(f"{{{NS}}}Id") or ""
        stamps = [t.text or "" for t in member.find(f"{{{NS}}}Timestamps") or []]
        values = [float(v.text or "nan") for v in member.find(f"{{{NS}}}Values") or []]
        series[qid] = dict(zip(stamps, values))
        if qid in hidden:
            results.remove(member)
    for q in _members(form).values():
        if "Expression" not in q:
            continue
        names = [n for n in series if n != q["Id"] and re.search(rf"\b{n}\b", q["Expression"])]
        stamps = sorted(set.intersection(*(set(series[n]) for n in names))) if names else []
        member = next(m for m in results if m.findtext(f"{{{NS}}}Id") == q["Id"])
        ts_el, val_el = member.find(f"{{{NS}}}Timestamps"), member.find(f"{{{NS}}}Values")
        if ts_el is None:
            ts_el = ET.SubElement(member, f"{{{NS}}}Timestamps")
        if val_el is None:
            val_el = ET.SubElement(member, f"{{{NS}}}Values")
        for stamp in stamps:
            env = {n: series[n][stamp] for n in names}
            try:
                value = eval(q["Expression"], {"__builtins__": {}}, env)  # test-only: ids and arithmetic
            except ZeroDivisionError:
                continue
            ET.SubElement(ts_el, f"{{{NS}}}member").text = stamp
            ET.SubElement(val_el, f"{{{NS}}}member").text = repr(float(value))
    return ET.tostring(root)


@asynccontextmanager
async def running_proxy(upstream: str) -> AsyncIterator[RecordingProxy]:
    p = RecordingProxy(upstream)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", p.handle)
    # The server stops before the session closes: a handler may still be forwarding.
    async with aiohttp.ClientSession() as p.session, serving(app, shutdown_timeout=60.0) as p.url:
        yield p
