"""Running the real daemon process (`python -m watchdog run`) in tests.

Its stdout is JSON logs, one object per line; the helpers read them to learn
the bound port and to wait for events. `status` and `polled` read its /status,
`assert_audit_log_intact` its state file through the CLI.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import aiohttp


class Daemon:
    def __init__(self, config_path: str, *args: str, env: dict[str, str] | None = None,
                 prefix: tuple[str, ...] = ()):
        self.config_path = config_path
        self.args = args
        self.prefix = prefix  # e.g. a command that sets up a mount namespace and execs the rest
        self.env = {**os.environ, **(env or {})}
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.stderr = b""
        self._reader: asyncio.Task[None] | None = None
        self._err_reader: asyncio.Task[None] | None = None

    async def start(self) -> "Daemon":
        self.proc = await asyncio.create_subprocess_exec(
            *self.prefix, sys.executable, "-m", "watchdog", "run", "-c", self.config_path, *self.args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=self.env,
        )
        self._reader = asyncio.create_task(self._read())
        self._err_reader = asyncio.create_task(self._read_stderr())
        return self

    async def _read_stderr(self) -> None:
        # Drained as it comes: a daemon writing more than a pipe holds (a long traceback) would block on it.
        assert self.proc and self.proc.stderr
        while chunk := await self.proc.stderr.read(65536):
            self.stderr += chunk

    async def _read(self) -> None:
        assert self.proc and self.proc.stdout
        async for raw in self.proc.stdout:
            line = raw.decode().rstrip("\n")
            self.raw.append(line)
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                self.lines.append({"event": "<not json>", "line": line})

    def events(self, name: str) -> list[dict[str, Any]]:
        return [ln for ln in self.lines if ln.get("event") == name]

    async def wait_for(self, name: str, timeout: float = 30.0, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ln in self.lines:
                if ln.get("event") == name and all(ln.get(k) == v for k, v in match.items()):
                    return ln
            if self.proc and self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {name!r} {match} within {timeout}s; log tail:\n" + "\n".join(self.raw[-30:])
                             + "\nstderr:\n" + (await self._stderr()).decode()[-3000:])

    async def port(self) -> int:
        started = await self.wait_for("started", timeout=20)
        return int(str(started["listen"]).rpartition(":")[2])

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 30.0) -> int:
        assert self.proc
        rc = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader:
            await asyncio.wait_for(self._reader, 5)
        return rc

    async def _stderr(self) -> bytes:
        if self._err_reader is not None and self.proc is not None and self.proc.returncode is not None:
            await asyncio.wait({self._err_reader}, timeout=5)
        return self.stderr

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        for task in (self._reader, self._err_reader):
            if task:
                task.cancel()


def assert_audit_log_intact(config_path: str) -> None:
    """`incidents verify-log` on the daemon's state file, as an operator runs it after the daemon is gone."""
    r = subprocess.run([sys.executable, "-m", "watchdog", "incidents", "verify-log", "-c", config_path],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("audit log intact"), r.stdout + r.stderr


async def status(port: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}/status") as r:
            assert r.status == 200, await r.text()
            return await r.json()


async def polled(port: int, times: int, source: int = 0, timeout: float = 30.0) -> dict[str, Any]:
    """The daemon's /status once its `source` (an index) has answered `times` more polls than when this
    was called: a quiet spell that proves the daemon kept polling, not that it was stuck."""
    deadline = time.monotonic() + timeout
    seen: list[str | None] = []
    while True:
        doc = await status(port)
        last = doc["sources"][source]["last_success"]
        if not seen or last != seen[-1]:
            seen.append(last)
        if len(seen) > times:
            return doc
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(seen) - 1} of {times} polls answered within {timeout:g}s: "
                                 f"{doc['sources'][source]}")
        await asyncio.sleep(0.1)
