"""Retry schedules (config data) turned into tenacity policies.

Every try of every call a source makes starts here, so this is where a poll's deadline is pushed on
(`on_attempt`, see Runtime._poll): a poll that keeps making calls is alive however many pages it reads, and
one whose try hangs past its timeout is cut off.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)
from tenacity.wait import wait_base

from watchdog.config.base import RetrySchedule

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


def backoff(initial: timedelta, cap: timedelta, failures: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after the `failures`-th failed try: doubling from `initial` up to `cap`, with equal
    jitter (half fixed, half random), so a retry never comes at once and a crowd of them spreads out. The
    one formula for every retry: a source's calls, an action's attempts, a notification's deliveries."""
    base = min(cap.total_seconds(), initial.total_seconds() * 2.0 ** min(failures - 1, 64))
    return base / 2 + (rng or random).uniform(0, base / 2)


class _Backoff(wait_base):
    def __init__(self, schedule: RetrySchedule):
        self._initial, self._cap = schedule.initial_backoff, schedule.max_backoff

    def __call__(self, retry_state: RetryCallState) -> float:
        return backoff(self._initial, self._cap, retry_state.attempt_number)


def retrying(
    schedule: RetrySchedule,
    retry_if: Callable[[BaseException], bool],
    sleep: Sleep = asyncio.sleep,
    before_sleep: Callable[..., None] | None = None,
) -> AsyncRetrying:
    """`backoff` between tries, at most `schedule.attempts` tries, the last error re-raised."""
    return AsyncRetrying(
        stop=stop_after_attempt(schedule.attempts),
        wait=_Backoff(schedule),
        retry=retry_if_exception(retry_if),
        before=_starting,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
