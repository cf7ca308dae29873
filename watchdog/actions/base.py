"""What a rollback action or a check provides, and what the kinds of both share."""

from __future__ import annotations

from typing import Protocol

import aiohttp

from watchdog.config.models import Action, Check

# What a runner is handed: an action of a level, or a check. The registry gives each runner its own kind.
Step = Action | Check


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
    """Runs the steps of one kind. Built by the kind's factory, started before the first level and closed at
    the stop (what it opens, an AWS client say, lives as long as the runtime)."""

    async def start(self) -> None: ...

    async def run(self, action: Step) -> str:
        """Run one attempt; return a short detail, or raise ActionFailed (TypeError for a step of another kind)."""
        ...

    async def close(self) -> None: ...


class NothingToOpen:
    """A runner that holds nothing of its own (the HTTP session is the runtime's)."""

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def probe_url(url: str, session: aiohttp.ClientSession) -> tuple[bool, str]:
    """`validate`'s look at an action's `probe` URL: any answer but a connection error passes."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=5), allow_redirects=False) as r:
            return True, f"probe answered HTTP {r.status}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return False, f"probe unreachable: {type(exc).__name__}"
