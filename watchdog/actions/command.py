"""Command actions: argv without a shell, a timeout, the process killed past it."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Mapping

from watchdog.actions.base import ActionFailed, Step
from watchdog.config.models import CommandAction

_TAIL = 300


class CommandRunner:
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
