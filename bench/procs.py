"""Child processes of the benchmark (the daemon, moto) and what /proc says about them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of the full line


def status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def daemon_python() -> str:
    """The interpreter the measured daemon runs on: BENCH_DAEMON_PYTHON (`make bench` sets it to .venv-daemon's,
    the package installed as an operator installs it, without the test tools), else the bench's own. The test
    tools' libraries change what the daemon loads: structlog loads `rich` when it is installed (import-linter
    brings it), about 3.4 MB of the daemon's RSS that no production install has."""
    return os.environ.get("BENCH_DAEMON_PYTHON") or sys.executable


@dataclass
class Daemon:
    """The daemon as a process; its JSON log lines are collected as they come."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    proc: asyncio.subprocess.Process | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None
    _err: asyncio.Task[bytes] | None = None

    @classmethod
    def shim(cls, config: str, poll_log: str, cwd: str, env: dict[str, str]) -> "Daemon":
        return cls([daemon_python(), "-m", "bench.shim", "run", "-c", config], {**env, "BENCH_POLL_LOG": poll_log},
                   cwd)

    @classmethod
    def plain(cls, config: str, cwd: str, env: dict[str, str]) -> "Daemon":
        return cls([daemon_python(), "-m", "watchdog", "run", "-c", config], dict(env), cwd)

    async def start(self) -> "Daemon":
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=self.env, cwd=self.cwd,
            limit=16 * 1024 * 1024,
        )
        self._reader = asyncio.create_task(self._read())
        self._err = asyncio.create_task(self.proc.stderr.read())  # type: ignore[union-attr]
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def _read(self) -> None:
        assert self.proc and self.proc.stdout
        async for raw in self.proc.stdout:
            try:
                self.lines.append(json.loads(raw))
            except ValueError:
                self.lines.append({"event": "<not json>", "line": raw.decode(errors="replace")})

    def events(self, name: str) -> list[dict[str, Any]]:
        return [ln for ln in self.lines if ln.get("event") == name]

    async def wait_for(self, name: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for ln in self.lines[seen:]:
                if ln.get("event") == name:
                    return ln
            seen = len(self.lines)
            if self.proc and self.proc.returncode is not None:
                break
            await asyncio.sleep(0.02)
        tail = "\n".join(json.dumps(x) for x in self.lines[-20:])
        err = b""
        if self.proc and self.proc.returncode is not None and self._err is not None:
            err = await self._err
        raise RuntimeError(f"daemon: no {name!r} within {timeout}s\n{tail}\n{err.decode(errors='replace')[-3000:]}")

    async def port(self) -> int:
        started = await self.wait_for("started", timeout=120)
        return int(str(started["listen"]).rpartition(":")[2])

    async def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        for task in (self._reader, self._err):
            if task is not None:
                try:
                    await asyncio.wait_for(task, 5)
                except (TimeoutError, asyncio.CancelledError):
                    task.cancel()
        return self.proc.returncode


def read_poll_log(path: str) -> list[tuple[float, float, float]]:
    """(start, end, thread CPU) per finished poll, from the shim's file."""
    try:
        with open(path) as fh:
            text = fh.read()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            out.append((float(parts[0]), float(parts[1]), float(parts[2])))
    return out
