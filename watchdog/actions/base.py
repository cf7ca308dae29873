"""What a rollback action or a check provides."""

from __future__ import annotations

from typing import Any, Protocol


class ActionFailed(Exception):
    """One attempt failed. `retryable` says whether another attempt may help."""

    def __init__(self, detail: str, retryable: bool = True):
        super().__init__(detail)
        self.detail = detail
        self.retryable = retryable


class Runner(Protocol):
    async def run(self, action: Any) -> str:
        """Run one attempt; return a short detail, or raise ActionFailed."""
        ...
