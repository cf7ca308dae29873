"""Action kinds, keyed by the config `type`."""

from __future__ import annotations

import aiohttp

from watchdog.actions.base import ActionFailed, Runner
from watchdog.actions.command import CommandRunner
from watchdog.actions.http import HttpRunner


def build_runners(session: aiohttp.ClientSession) -> dict[str, Runner]:
    return {"http": HttpRunner(session), "command": CommandRunner()}


__all__ = ["ActionFailed", "Runner", "build_runners"]
