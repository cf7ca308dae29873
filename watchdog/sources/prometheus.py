"""PromQL instant queries against a Prometheus server (`GET {url}/api/v1/query`).

One reading per rule and poll, stamped with the poll's time. A vector answer is
reduced per the rule's `reduce`: `single` wants exactly one series (none: no
reading this poll; several: a source error), `max`/`min` take the extreme over
all series. A scalar answer is its value. NaN and +-Inf are no reading. An error
answer (bad PromQL, 4xx, `status` other than success), a timeout or an
unreachable server is a source error, never a breach; connection errors,
timeouts, 5xx and 429 are retried first.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

import aiohttp

from watchdog.config.base import Model
from watchdog.config.types import Interval
from watchdog.support.retrying import Sleep, retrying
from watchdog.core.rules import Datapoint
from watchdog.sources.base import HttpSampled, HttpSourceConfig, Query, SourceError
from watchdog.sources.kind import SourceDeps, SourceKind


class PrometheusSource(HttpSourceConfig):
    """PromQL instant queries against a Prometheus server's HTTP API (`/api/v1/query`)."""

    type: Literal["prometheus"]
    interval: Interval = timedelta(seconds=30)


class PrometheusReads(Model):
    promql: str  # an instant query
    reduce: Literal["single", "max", "min"] = "single"  # one series, or the max/min over all


class _Transient(SourceError):
    pass


def _short(text: Any, limit: int = 200) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _number(sample: Any) -> float | None:
    """A `[ts, "value"]` pair's value; None for NaN and +-Inf (no reading)."""
    try:
        value = float(sample[1])
    except (TypeError, ValueError, IndexError, KeyError):
        raise SourceError(f"unexpected sample {_short(sample, 60)}") from None
    return value if math.isfinite(value) else None


def reading(data: Any, rule: PrometheusReads) -> float | None:
    """The one value a `data` object of a query answer gives for `rule`; None: no reading."""
    if not isinstance(data, dict):
        raise SourceError("unexpected answer: no data")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return _number(result)
    if kind != "vector":
        raise SourceError(f"resultType {kind!r} is not supported; the query must give an instant vector or a scalar")
    if not isinstance(result, list):
        raise SourceError("unexpected answer: vector result is not a list")
    if rule.reduce == "single" and len(result) > 1:
        raise SourceError(f"{len(result)} series; use reduce: max|min or narrow the query")
    values = [v for v in (_number(s.get("value") if isinstance(s, dict) else None) for s in result) if v is not None]
    if not values:
        return None
    return max(values) if rule.reduce == "max" else min(values)  # single: the one value


class Prometheus(HttpSampled):
    def __init__(self, cfg: PrometheusSource, queries: Sequence[Query], session: aiohttp.ClientSession,
                 sleep: Sleep | None = None):
        super().__init__(cfg, queries, session, sleep)
        self._cfg = cfg
        self._endpoint = cfg.url.rstrip("/") + "/api/v1/query"
        self._reads = {q.key: q.rule.reads(PrometheusReads) for q in self._queries}

    async def poll(self, now: datetime) -> Mapping[str, Sequence[Datapoint]]:
        tasks = [asyncio.ensure_future(self._read(q, now)) for q in self._queries]
        try:
            values = await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:  # all-or-nothing: do not leave the other queries running
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        for q, value in zip(self._queries, values):
            if value is not None:
                self._readings.add(q.key, now, value)
        return self._readings.all()

    async def _read(self, q: Query, now: datetime) -> float | None:
        try:
            r = self._reads[q.key]
            return reading(await self._query(r.promql, now), r)
        except SourceError as exc:
            raise SourceError(f"rule {q.rule.name}: {exc}") from None

    async def _query(self, promql: str, now: datetime) -> Any:
        headers = {k: v.get_secret_value() for k, v in self._cfg.headers.items()}
        timeout = aiohttp.ClientTimeout(total=self._cfg.timeout.total_seconds())
        params = {"query": promql, "time": f"{now.timestamp():.3f}"}
        async for attempt in retrying(self._cfg.retry, lambda e: isinstance(e, _Transient), sleep=self._sleep or asyncio.sleep):
            with attempt:
                try:
                    async with self._session.get(self._endpoint, params=params, headers=headers,
                                                 timeout=timeout) as resp:
                        try:
                            doc = await resp.json(content_type=None)
                        except ValueError:
                            doc = None
                        status = resp.status
                except asyncio.TimeoutError:
                    raise _Transient(f"no answer within {self._cfg.timeout.total_seconds():g}s") from None
                except aiohttp.ClientError as exc:
                    raise _Transient(type(exc).__name__) from None
                return _answer(status, doc)
        raise SourceError("no attempt made")


def _answer(status: int, doc: Any) -> Any:
    """The `data` of a successful answer; otherwise the (transient or final) error it is."""
    why = ""
    if isinstance(doc, dict) and doc.get("status") != "success":
        why = _short(f"{doc.get('errorType') or 'error'}: {doc.get('error') or 'no error text'}")
    if status >= 500 or status == 429:
        raise _Transient(f"HTTP {status}" + (f" {why}" if why else ""))
    if status >= 300:
        raise SourceError(f"HTTP {status}" + (f" {why}" if why else ""))
    if not isinstance(doc, dict):
        raise SourceError("the answer is not a JSON object")
    if why:
        raise SourceError(why)
    return doc.get("data")


def _build(cfg: PrometheusSource, queries: Sequence[Query], deps: SourceDeps) -> Prometheus:
    return Prometheus(cfg, queries, deps.session)


KIND = SourceKind(type="prometheus", config=PrometheusSource, reads=PrometheusReads, requires=("promql",),
                  build=_build, sampled=True)
