"""HTTP actions: an admin API call (the request itself is shared with the http check, http_check.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal

import aiohttp
from pydantic import Field, SecretStr, field_validator
from yarl import URL

from watchdog.actions.base import ActionFailed, NothingToOpen, Step, probe_url
from watchdog.actions.kind import ActionKind, Probing, RunnerDeps, Verdict
from watchdog.config.base import RetrySchedule
from watchdog.config.models import Action
from watchdog.config.types import HttpUrl, Timeout

# 408 and 429 are the server asking for another try; other 4xx will not change.
_RETRY_4XX = {408, 425, 429}


class HttpAction(Action):
    type: Literal["http"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: HttpUrl
    headers: dict[str, SecretStr] = {}
    json_body: Any = Field(None, alias="json")
    expect_status: list[int] = Field(default_factory=list)  # empty: any 2xx
    timeout: Timeout = timedelta(seconds=10)
    retry: RetrySchedule = RetrySchedule()
    idempotent: bool = False
    probe: HttpUrl | None = None  # `validate` GETs this (any answer but a connection error passes); default: TCP connect

    @field_validator("expect_status", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, int) else v

    def describe(self) -> str:
        return self.name or f"{self.method} {self.url}"


async def request(session: aiohttp.ClientSession, method: str, url: str, headers: Mapping[str, SecretStr],
                  body: Any, timeout: timedelta, expected: list[int]) -> str:
    """One request; "HTTP <status>" when the status is one of `expected` (empty: any 2xx), else ActionFailed."""
    sent = {k: v.get_secret_value() for k, v in headers.items()}
    kwargs = {}
    if body is not None:
        kwargs["json"] = body
    limit = aiohttp.ClientTimeout(total=timeout.total_seconds())
    try:
        async with session.request(method, url, headers=sent, timeout=limit, **kwargs) as resp:
            await resp.read()
            status = resp.status
    except asyncio.TimeoutError:
        raise ActionFailed(f"no answer within {timeout.total_seconds():g}s", unknown=True) from None
    except aiohttp.ClientConnectorError as exc:  # never connected: the request did not go out
        raise ActionFailed(f"{type(exc).__name__}: {_safe(exc)}") from None
    except aiohttp.ClientError as exc:  # the request may have arrived before the connection broke
        raise ActionFailed(f"{type(exc).__name__}: {_safe(exc)}", unknown=True) from None
    ok = status in expected if expected else 200 <= status < 300
    if not ok:
        retryable = status >= 500 or status in _RETRY_4XX
        raise ActionFailed(f"HTTP {status}", retryable=retryable)
    return f"HTTP {status}"


class HttpRunner(NothingToOpen):
    def __init__(self, session: aiohttp.ClientSession):
        self._session = session

    async def run(self, action: Step) -> str:
        if not isinstance(action, HttpAction):
            raise TypeError(f"the http runner cannot run a {action.type} step")
        return await request(self._session, action.method, action.url, action.headers, action.json_body,
                             action.timeout, action.expect_status)


def _safe(exc: aiohttp.ClientError) -> str:
    # Connection errors name host and port, never the path or query (where tokens hide).
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}"
    return type(exc).__name__


async def _reach(action: HttpAction, probing: Probing) -> Verdict:
    """Its `probe` URL answers, or else its host takes a TCP connection: nothing is sent to the URL itself."""
    if action.probe:
        return await probe_url(action.probe, probing.session)
    url = URL(action.url)
    if not url.host:
        return False, "the URL has no host"
    try:
        async with asyncio.timeout(5):
            _, writer = await asyncio.open_connection(url.host, url.port)
        writer.close()
        return True, f"{url.host}:{url.port} accepts connections"
    except (OSError, TimeoutError) as exc:
        return False, f"{url.host}:{url.port}: {getattr(exc, 'strerror', None) or type(exc).__name__}"


def _runner(deps: RunnerDeps) -> HttpRunner:
    return HttpRunner(deps.session)


KIND = ActionKind(type="http", config=HttpAction, factory=_runner, probe=_reach)
