"""Retry schedules (config data) turned into tenacity policies.

Every try of every call a source makes starts here, so this is where a poll's deadline is pushed on
(`on_attempt`, see App._poll): a poll that keeps making calls is alive however many pages it reads, and
one whose try hangs past its timeout is cut off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from watchdog.config.models import RetrySchedule

Sleep = Callable[[float], Awaitable[None]]
_attempt_started: ContextVar[Callable[[], None] | None] = ContextVar("attempt_started", default=None)


@contextmanager
def on_attempt(callback: Callable[[], None]) -> Iterator[None]:
    """Call `callback` as each try starts, in this task and the tasks it starts."""
    token = _attempt_started.set(callback)
    try:
        yield
    finally:
        _attempt_started.reset(token)


def _starting(_: Any) -> None:
    callback = _attempt_started.get()
    if callback is not None:
        callback()


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
        before=_starting,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
