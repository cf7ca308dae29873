"""Action kinds, keyed by the config `type`."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from watchdog.actions.base import ActionFailed, Runner
from watchdog.actions.command import CommandRunner
from watchdog.actions.http import HttpRunner


def build_runners(session: aiohttp.ClientSession, base_env: Mapping[str, str] | None = None) -> dict[str, Runner]:
    return {"http": HttpRunner(session), "command": CommandRunner(base_env)}


__all__ = ["ActionFailed", "Runner", "build_runners"]
