"""Retry schedules (config data) turned into tenacity policies."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from watchdog.config.models import RetrySchedule

Sleep = Callable[[float], Awaitable[None]]


def retrying(
    schedule: RetrySchedule,
    retry_if: Callable[[BaseException], bool],
    sleep: Sleep = asyncio.sleep,
    before_sleep: Callable[..., None] | None = None,
) -> AsyncRetrying:
    """Exponential backoff with full jitter, at most `schedule.attempts` tries, last error re-raised."""
    return AsyncRetrying(
        stop=stop_after_attempt(schedule.attempts),
        wait=wait_random_exponential(
            multiplier=schedule.initial_backoff.total_seconds(),
            max=schedule.max_backoff.total_seconds(),
        ),
        retry=retry_if_exception(retry_if),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
