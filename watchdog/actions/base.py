"""What a rollback action or a check provides."""

from __future__ import annotations

from typing import Protocol

from watchdog.config.models import CommandAction, HttpAction, HttpCheck

# What a runner is handed: an action of a level, or a check. The registry gives each runner its own kind.
Step = HttpAction | CommandAction | HttpCheck


class ActionFailed(Exception):
    """One attempt failed. `retryable` says whether another attempt may help.

    `unknown` means the attempt may have taken effect (a timeout after the request
    went out, a command killed mid-run): it is retried only if the action is
    declared `idempotent`, so a step never runs twice by accident.
    """

    def __init__(self, detail: str, retryable: bool = True, unknown: bool = False):
        super().__init__(detail)
        self.detail = detail
        self.retryable = retryable
        self.unknown = unknown


class Runner(Protocol):
    async def run(self, action: Step) -> str:
        """Run one attempt; return a short detail, or raise ActionFailed (TypeError for a step of another kind)."""
        ...
