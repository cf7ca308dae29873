"""`rollback-watchdog replay` run as a user runs it (`python -m watchdog replay ...`), with the peak memory
of that process: its VmHWM (the high-water mark of its own address space since exec), read while it runs.
Not ru_maxrss from wait4: Linux carries the forking process's high-water mark over into the child's at
exec, so a child of a pytest process of 380 MB reported 380 MB whatever it used itself.

A guard kills the child when its resident memory passes GUARD_MB or it outlives its timeout, so a test of
an unbounded input fails in seconds on a build without the bound instead of taking the machine's memory.
With `tty=True` its stderr is a terminal (a pty), as the progress line needs; `until` stops the run (kill)
once stderr has shown that text.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

GUARD_MB = 600


@dataclass
class Run:
    code: int | None  # None: killed (see `killed`)
    out: str
    err: str
    peak_mb: float
    killed: str | None = None  # why the guard killed it, if it did

    def one_line(self) -> str:
        """The one line a bad input gets on stderr; fails on a traceback or a second line. The config's
        warnings and the replayed runtime's own log lines below error level (structlog JSON, stamped
        `replay: true`; its error and critical lines go into the outcome, not stderr) are not that line."""
        lines = [ln for ln in self.err.splitlines() if ln.strip() and not ln.startswith("warning: ") and not _logged(ln)]
        assert self.killed is None, self.killed
        assert "Traceback" not in self.err and len(lines) == 1, self.err[-3000:]
        return lines[0]


def _logged(line: str) -> bool:
    try:
        doc = json.loads(line)
    except ValueError:
        return False
    return isinstance(doc, dict) and "event" in doc


def _memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a running process in MB; zeros once it is gone."""
    rss = hwm = 0.0
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) / 1024
    except OSError:
        pass
    return rss, hwm


def replay_measured(*args: str, timeout: float = 120, tty: bool = False, until: str | None = None,
                    env: dict[str, str] | None = None) -> Run:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        master = slave = -1
        if tty:
            master, slave = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "watchdog", "replay", *args], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=slave if tty else err, env={**os.environ, **(env or {})})
        if tty:
            os.close(slave)
        seen = b""
        killed = None
        peak = 0.0
        deadline = time.monotonic() + timeout
        while True:
            rss, hwm = _memory_mb(proc.pid)  # before the reap: a zombie has no address space to read
            peak = max(peak, hwm, rss)
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if tty and select.select([master], [], [], 0)[0]:
                try:
                    seen += os.read(master, 65536)
                except OSError:  # the child closed its side
                    pass
            if killed is None:
                if rss > GUARD_MB:
                    killed = f"killed at {rss:.0f} MB resident (the guard's limit is {GUARD_MB} MB)"
                elif time.monotonic() > deadline:
                    killed = f"killed: still running after {timeout} s"
                elif until is not None and until.encode() in seen:
                    killed = f"stopped once stderr showed {until!r}"
                if killed is not None:
                    proc.kill()
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
        if tty:
            while select.select([master], [], [], 0)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
            os.close(master)
        else:
            err.seek(0)
            seen = err.read()
        # Python's start alone takes far longer than one 20 ms round: a run never ends unread.
        assert peak > 0, "the replay ended before its memory could be read"
        out.seek(0)
        stopped = killed is not None and killed.startswith("stopped")
        return Run(None if killed else proc.returncode, out.read().decode("utf-8", "replace"),
                   seen.decode("utf-8", "replace"), peak, None if stopped else killed)
