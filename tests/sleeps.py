"""An instant `sleep` for tenacity, shared by the source tests."""

from __future__ import annotations


class Sleeps:
    """Records the backoff delays it was asked for and returns at once.

    Not a list subclass on purpose: the sources test `if sleep`, and an empty list is falsy.
    """

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
