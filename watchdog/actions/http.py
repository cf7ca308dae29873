"""HTTP actions and checks: an admin API call, a health probe."""

from __future__ import annotations

import asyncio

import aiohttp

from watchdog.actions.base import ActionFailed, Step
from watchdog.config.models import HttpAction, HttpCheck

# 408 and 429 are the server asking for another try; other 4xx will not change.
_RETRY_4XX = {408, 425, 429}


class HttpRunner:
    def __init__(self, session: aiohttp.ClientSession):
        self._session = session

    async def run(self, action: Step) -> str:
        if not isinstance(action, (HttpAction, HttpCheck)):
            raise TypeError(f"the http runner cannot run a {action.type} step")
        headers = {k: v.get_secret_value() for k, v in action.headers.items()}
        kwargs = {}
        body = getattr(action, "json_body", None)
        if body is not None:
            kwargs["json"] = body
        timeout = aiohttp.ClientTimeout(total=action.timeout.total_seconds())
        try:
            async with self._session.request(action.method, action.url, headers=headers, timeout=timeout, **kwargs) as resp:
                await resp.read()
                status = resp.status
        except asyncio.TimeoutError:
            raise ActionFailed(f"no answer within {action.timeout.total_seconds():g}s", unknown=True) from None
        except aiohttp.ClientConnectorError as exc:  # never connected: the request did not go out
            raise ActionFailed(f"{type(exc).__name__}: {_safe(exc)}") from None
        except aiohttp.ClientError as exc:  # the request may have arrived before the connection broke
            raise ActionFailed(f"{type(exc).__name__}: {_safe(exc)}", unknown=True) from None
        expected = action.expect_status if isinstance(action, HttpAction) else [action.expect_status]
        ok = status in expected if expected else 200 <= status < 300
        if not ok:
            retryable = status >= 500 or status in _RETRY_4XX
            raise ActionFailed(f"HTTP {status}", retryable=retryable)
        return f"HTTP {status}"


def _safe(exc: aiohttp.ClientError) -> str:
    # Connection errors name host and port, never the path or query (where tokens hide).
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}"
    return type(exc).__name__
