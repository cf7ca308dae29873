"""Command actions: argv without a shell, a timeout, the process killed past it."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from watchdog.actions.base import ActionFailed, NothingToOpen, Step, probe_url
from watchdog.actions.kind import ActionKind, Probing, RunnerDeps, Verdict
from watchdog.config.base import RetrySchedule
from watchdog.config.models import Action
from watchdog.config.types import HttpUrl, Timeout

_TAIL = 300


class CommandAction(Action):
    type: Literal["command"]
    argv: list[str] = Field(min_length=1)
    timeout: Timeout = timedelta(seconds=60)
    env: dict[str, SecretStr] = {}
    cwd: Path | None = None
    retry: RetrySchedule = RetrySchedule(attempts=1)
    idempotent: bool = False
    probe: HttpUrl | None = None  # `validate` runs nothing; it checks argv[0] is executable (or GETs this URL)

    @field_validator("argv")
    @classmethod
    def _argv(cls, v: list[str]) -> list[str]:
        if not v[0].strip():
            raise ValueError("argv[0] is empty: it must name the program to run")
        if any("\0" in arg for arg in v):
            raise ValueError("an argument contains a NUL byte, which no program can receive")
        return v

    def describe(self) -> str:
        return self.name or " ".join(self.argv)


class CommandRunner(NothingToOpen):
    def __init__(self, base_env: Mapping[str, str] | None = None):
        # The few variables every command gets (config.process_environment: PATH, HOME, locale, TZ),
        # handed in by the composition root; never the daemon's whole environment, which holds its secrets.
        self._base_env = dict(base_env or {})

    def environment(self, action: CommandAction) -> dict[str, str]:
        """The child's whole environment: the base, then what the action's `env` names (which wins)."""
        return {**self._base_env, **{k: v.get_secret_value() for k, v in action.env.items()}}

    async def run(self, action: Step) -> str:
        if not isinstance(action, CommandAction):
            raise TypeError(f"the command runner cannot run a {action.type} step")
        env = self.environment(action)
        try:
            proc = await asyncio.create_subprocess_exec(
                *action.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=action.cwd,
                env=env,
                start_new_session=True,  # its own process group, so a timeout kills the whole tree
            )
        except OSError as exc:
            raise ActionFailed(f"cannot start {action.argv[0]}: {exc.strerror or exc}", retryable=False) from None
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), action.timeout.total_seconds())
        except asyncio.TimeoutError:
            _kill(proc)
            await proc.wait()
            raise ActionFailed(f"timed out after {action.timeout.total_seconds():g}s; killed", unknown=True) from None
        except asyncio.CancelledError:
            _kill(proc)
            await proc.wait()
            raise
        tail = out.decode(errors="replace").strip()[-_TAIL:]
        if proc.returncode != 0:
            raise ActionFailed(f"exit {proc.returncode}" + (f": {tail}" if tail else ""))
        return "exit 0"


def _kill(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except PermissionError:  # not its own group after all: at least the child itself
        proc.kill()


async def _reach(action: CommandAction, probing: Probing) -> Verdict:
    """Its `probe` URL answers, or else argv[0] is a file this user can execute: nothing is run."""
    if action.probe:
        return await probe_url(action.probe, probing.session)
    exe = action.argv[0]
    path = exe if "/" in exe else shutil.which(exe)
    if path and os.path.isfile(path) and os.access(path, os.X_OK):
        return True, f"{path} is executable"
    return False, f"{exe}: not found or not executable"


def _runner(deps: RunnerDeps) -> CommandRunner:
    return CommandRunner(deps.environment)


KIND = ActionKind(type="command", config=CommandAction, factory=_runner, probe=_reach)
