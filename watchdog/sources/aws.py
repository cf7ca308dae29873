"""What the AWS-backed sources share: one client per source, botocore's retries off (tenacity owns them,
so the two never multiply), which errors are worth another try, and every error a one-line SourceError."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar

import aioboto3
from aiobotocore.session import AioSession
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from watchdog.config.base import RetrySchedule
from watchdog.config.models import AwsSection
from watchdog.config.sources import (
    CloudWatchSource,
    CostExplorerSource,
    SecurityHubSource,
)
from watchdog.retrying import Sleep, retrying
from watchdog.signals import Query
from watchdog.sources.base import SourceError

AwsSourceConfig = CloudWatchSource | CostExplorerSource | SecurityHubSource

T = TypeVar("T")


_RETRY_CODES = {
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestThrottled", "ServiceUnavailable", "InternalFailure", "InternalError", "InternalServiceError",
}
_TRANSIENT = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError, ResponseParserError)


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return err.get("Code") in _RETRY_CODES or status >= 500 or status == 429
    # An HTML 5xx page from a proxy or a local endpoint fails to parse; it is still a 5xx.
    return isinstance(exc, _TRANSIENT)


async def aws_client(stack: AsyncExitStack, service: str, region: str, aws: AwsSection, timeout: timedelta, *,
                     validate: bool = True, timestamps: Callable[[str], datetime] | None = None) -> Any:
    """An aioboto3 client with botocore's retries off (tenacity owns them), closed with `stack`.
    `validate=False` skips botocore's check of each request against the API model (for requests built once
    from a validated config); `timestamps` parses this client's answer times (per session, not global)."""
    core = AioSession()
    if timestamps is not None:
        core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=timestamps)
    session = aioboto3.Session(botocore_session=core, profile_name=aws.profile)
    secs = timeout.total_seconds()
    cfg = BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=secs, read_timeout=secs,
                     parameter_validation=validate)
    return await stack.enter_async_context(
        session.client(service, region_name=region, endpoint_url=aws.endpoint_url, config=cfg)
    )


class AwsSource:
    """What every AWS-backed source shares: its client (opened at start, closed with the source, or given by a
    test), the count of requests sent (each is billed), and each call under the source's retry schedule."""

    service: ClassVar[str]

    def __init__(self, cfg: AwsSourceConfig, queries: Sequence[Query], aws: AwsSection, sleep: Sleep | None = None,
                 client: Any = None):
        self.name = cfg.name
        self.interval = cfg.interval
        self.calls = 0  # requests sent, retries included
        self._cfg = cfg
        self._aws = aws
        self._queries = list(queries)
        self._sleep = sleep
        self._client = client
        self._stack = AsyncExitStack()

    def _region(self) -> str:
        return self._aws.region

    async def _open(self) -> Any:
        return await aws_client(self._stack, self.service, self._region(), self._aws, self._cfg.timeout)

    async def start(self) -> None:
        if self._client is None:
            self._client = await self._open()

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    def _trying(self, kwargs: Mapping[str, Any]) -> None:
        """Each try, as it is sent."""
        self.calls += 1

    async def _call(self, op: str, method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        async def once() -> dict[str, Any]:
            self._trying(kwargs)
            answer: dict[str, Any] = await getattr(self._client, method)(**kwargs)
            return answer

        return await aws_call(op, once, self._cfg.retry, self._sleep)


async def aws_call(op: str, call: Callable[[], Awaitable[T]], retry: RetrySchedule, sleep: Sleep | None) -> T:
    """One API call under the retry schedule; every failure becomes a one-line SourceError."""
    try:
        async for attempt in retrying(retry, is_retryable, sleep=sleep or asyncio.sleep):
            with attempt:
                return await call()
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise SourceError(f"{op}: {err.get('Code', 'error')}: {err.get('Message', '')}".strip()) from None
    except ResponseParserError:  # not a BotoCoreError; its text holds the whole (HTML) body
        raise SourceError(f"{op}: the answer could not be parsed (not what the API sends)") from None
    except (KeyError, ValueError, TypeError) as exc:
        # A 200 that parses but is another document (no GetMetricDataResult), or holds a value that is no
        # number or time: botocore's parser fails with these, not with a ResponseParserError.
        said = " ".join(str(exc).split())
        raise SourceError(f"{op}: the answer is not a {op} document ({type(exc).__name__}: {said})"[:300]) from None
    except (BotoCoreError, OSError) as exc:
        raise SourceError(f"{op}: {type(exc).__name__}: {exc}") from None
    raise SourceError(f"{op}: no attempt made")  # unreachable: stop_after_attempt >= 1
