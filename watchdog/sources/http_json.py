"""An HTTP endpoint that answers JSON, e.g. a GDPR-compliance or security-score API.

Each poll is one reading per rule, picked with a dotted `field` path. A non-2xx
answer, a timeout, invalid JSON or a missing or non-scalar field is a source
error, never a breach.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import aiohttp

from watchdog.config.base import Model
from watchdog.support.retrying import Sleep, retrying
from watchdog.core.rules import Datapoint
from watchdog.sources.base import HttpSampled, HttpSourceConfig, Query, SourceError
from watchdog.sources.kind import SourceDeps, SourceKind


class HttpJsonSource(HttpSourceConfig):
    type: Literal["http_json"]


class HttpJsonReads(Model):
    field: str  # a dotted path into the JSON answer


class _Transient(SourceError):
    pass


def pick(doc: Any, path: str) -> float | bool:
    cur = doc
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise SourceError(f"field {path!r} not found in the answer")
    if isinstance(cur, bool):
        return cur
    if isinstance(cur, (int, float)):
        return float(cur)
    raise SourceError(f"field {path!r} is {type(cur).__name__}, not a number or boolean")


class HttpJson(HttpSampled):
    def __init__(self, cfg: HttpJsonSource, queries: Sequence[Query], session: aiohttp.ClientSession,
                 sleep: Sleep | None = None):
        super().__init__(cfg, queries, session, sleep)
        self._cfg = cfg
        self._fields = {q.key: q.rule.reads(HttpJsonReads).field for q in self._queries}

    async def poll(self, now: datetime) -> Mapping[str, Sequence[Datapoint]]:
        doc = await self._fetch()
        values = {key: pick(doc, field) for key, field in self._fields.items()}
        for key, value in values.items():
            self._readings.add(key, now, value)
        return self._readings.all()

    async def _fetch(self) -> Any:
        headers = {k: v.get_secret_value() for k, v in self._cfg.headers.items()}
        timeout = aiohttp.ClientTimeout(total=self._cfg.timeout.total_seconds())
        async for attempt in retrying(self._cfg.retry, lambda e: isinstance(e, _Transient), sleep=self._sleep or asyncio.sleep):
            with attempt:
                try:
                    async with self._session.get(self._cfg.url, headers=headers, timeout=timeout) as resp:
                        if resp.status >= 500 or resp.status == 429:
                            raise _Transient(f"HTTP {resp.status}")
                        if resp.status >= 300:
                            raise SourceError(f"HTTP {resp.status}")
                        try:
                            return await resp.json(content_type=None)
                        except ValueError:
                            raise SourceError("the answer is not valid JSON") from None
                except asyncio.TimeoutError:
                    raise _Transient(f"no answer within {self._cfg.timeout.total_seconds():g}s") from None
                except aiohttp.ClientError as exc:
                    raise _Transient(f"{type(exc).__name__}") from None
        raise SourceError("no attempt made")


def _build(cfg: HttpJsonSource, queries: Sequence[Query], deps: SourceDeps) -> HttpJson:
    return HttpJson(cfg, queries, deps.session)


KIND = SourceKind(type="http_json", config=HttpJsonSource, reads=HttpJsonReads, requires=("field",), build=_build,
                  sampled=True)
