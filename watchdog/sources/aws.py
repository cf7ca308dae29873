"""What the AWS-backed sources share: one client per source (watchdog/support/aws.py opens it), each call under the
source's retry schedule, and every error a one-line SourceError."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any, ClassVar, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from watchdog.support.aws import aws_client, client_error, is_retryable, response_parser_error
from watchdog.config.base import RetrySchedule
from watchdog.config.models import AwsSection
from watchdog.config.sources import Source as SourceConfig
from watchdog.support.retrying import Sleep, retrying
from watchdog.core.signals import Query
from watchdog.sources.base import SourceError

__all__ = ["AwsSource", "aws_call", "aws_client", "is_retryable"]

T = TypeVar("T")


class AwsSource:
    """What every AWS-backed source shares: its client (opened at start, closed with the source, or given by a
    test), the count of requests sent (each is billed), and each call under the source's retry schedule."""

    service: ClassVar[str]

    def __init__(self, cfg: SourceConfig, queries: Sequence[Query], aws: AwsSection, sleep: Sleep | None = None,
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

    def _caller(self) -> Any:
        """What a call goes through: the client, unless a source sends some calls its own way."""
        return self._client

    def _trying(self, kwargs: Mapping[str, Any]) -> None:
        """Each try, as it is sent."""
        self.calls += 1

    async def _call(self, op: str, method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        async def once() -> dict[str, Any]:
            self._trying(kwargs)
            answer: dict[str, Any] = await getattr(self._caller(), method)(**kwargs)
            return answer

        return await aws_call(op, once, self._cfg.retry, self._sleep)


async def aws_call(op: str, call: Callable[[], Awaitable[T]], retry: RetrySchedule, sleep: Sleep | None) -> T:
    """One API call under the retry schedule; every failure becomes a one-line SourceError."""
    try:
        async for attempt in retrying(retry, is_retryable, sleep=sleep or asyncio.sleep):
            with attempt:
                return await call()
    except ClientError as exc:
        raise SourceError(f"{op}: {client_error(exc)}") from None
    except response_parser_error():  # not a BotoCoreError; its text holds the whole (HTML) body
        raise SourceError(f"{op}: the answer could not be parsed (not what the API sends)") from None
    except (KeyError, ValueError, TypeError) as exc:
        # A 200 that parses but is another document (no GetMetricDataResult), or holds a value that is no
        # number or time: botocore's parser fails with these, not with a ResponseParserError.
        said = " ".join(str(exc).split())
        raise SourceError(f"{op}: the answer is not a {op} document ({type(exc).__name__}: {said})"[:300]) from None
    except (BotoCoreError, OSError) as exc:
        raise SourceError(f"{op}: {type(exc).__name__}: {exc}") from None
    raise SourceError(f"{op}: no attempt made")  # unreachable: stop_after_attempt >= 1
