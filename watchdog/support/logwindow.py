"""One log line a window, not one an event: what keeps a flood (connections, accept failures, a client's
garbage) from turning into a log storm that fills the disk and buries the lines that matter."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

# How a window's end is scheduled: asyncio's call_later by default; a test hands in its own.
Later = Callable[[float, Callable[[], None]], Any]


class OncePerWindow:
    """`hit(key)` is True for the first occurrence when no window is open: the caller logs that one in full,
    and a window of `every` seconds opens. Later hits in the window are counted, and `summary(counts)` gets
    them when it ends; a window that counted something opens the next one, so a flood that goes on is one
    summary per window. `close` hands over what is still counted (at the stop nothing is lost)."""

    def __init__(self, summary: Callable[[Counter[str]], None], every: float, later: Later | None = None):
        self._summary = summary
        self._every = every
        self._later = later
        self._counts: Counter[str] = Counter()
        self._window = False  # open: hits are counted, not logged
        self._timer: Any = None  # its end, to cancel at close

    def hit(self, key: str) -> bool:
        if not self._window:
            self._open()
            return True
        self._counts[key] += 1
        return False

    def _open(self) -> None:
        later = self._later or asyncio.get_running_loop().call_later
        self._window = True
        self._timer = later(self._every, self._end)

    def _end(self) -> None:
        self._window, self._timer = False, None
        if self._counts:
            counts, self._counts = self._counts, Counter()
            self._open()
            self._summary(counts)

    def close(self) -> None:
        if self._timer is not None and hasattr(self._timer, "cancel"):
            self._timer.cancel()
        self._window, self._timer = False, None
        if self._counts:
            counts, self._counts = self._counts, Counter()
            self._summary(counts)
