"""AWS clients for the sources other than CloudWatch: one client per source, botocore's retries off
(tenacity owns them, so the two never multiply), every error a one-line SourceError."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any, TypeVar

import aioboto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from watchdog.config.models import AwsSection, RetrySchedule
from watchdog.retrying import Sleep, retrying
from watchdog.sources.base import SourceError
from watchdog.sources.cloudwatch import is_retryable

T = TypeVar("T")


async def aws_client(stack: AsyncExitStack, service: str, region: str, aws: AwsSection, timeout: timedelta) -> Any:
    """An aioboto3 client with botocore's retries off (tenacity owns them), closed with `stack`."""
    session = aioboto3.Session(profile_name=aws.profile)
    secs = timeout.total_seconds()
    cfg = BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=secs, read_timeout=secs)
    return await stack.enter_async_context(
        session.client(service, region_name=region, endpoint_url=aws.endpoint_url, config=cfg)
    )


async def aws_call(op: str, call: Callable[[], Awaitable[T]], retry: RetrySchedule, sleep: Sleep | None) -> T:
    """One API call under the retry schedule; every failure becomes a one-line SourceError."""
    try:
        async for attempt in retrying(retry, is_retryable, sleep=sleep or asyncio.sleep):
            with attempt:
                return await call()
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise SourceError(f"{op}: {err.get('Code', 'error')}: {err.get('Message', '')}".strip()) from None
    except ResponseParserError:  # not a BotoCoreError; its text holds the whole body
        raise SourceError(f"{op}: the answer could not be parsed") from None
    except (BotoCoreError, OSError) as exc:
        raise SourceError(f"{op}: {type(exc).__name__}: {exc}") from None
    raise SourceError(f"{op}: no attempt made")  # unreachable: stop_after_attempt >= 1
