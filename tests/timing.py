"""Time in tests: one fake clock, one way to wait for a condition.

`FakeClock` is the watchdog's Clock with wall time set by the test. Its monotonic time is the real one
plus every jump the test made, so durations the code measures stay honest and a jump is seen by both.
`until` polls a condition (plain or async) and fails the test, saying what was waited for, when it does
not come true in time: a wait that gives up silently would let a test pass that should fail.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

T0 = datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)


class FakeClock:
    def __init__(self, now: datetime = T0):
        self.at = now
        self._jumped = 0.0

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return time.monotonic() + self._jumped

    def set(self, now: datetime) -> None:
        self._jumped += (now - self.at).total_seconds()
        self.at = now

    def advance(self, **delta: float) -> None:
        self.set(self.at + timedelta(**delta))


async def until(cond: Callable[[], Any] | Callable[[], Awaitable[Any]], timeout: float = 10.0,
                what: str = "the condition", every: float = 0.02) -> Any:
    """The condition's first true value; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g}s")
        await asyncio.sleep(every)
