"""One writer at a time: the daemon and `rollback --offline` take the same exclusive lock.

An advisory `flock` on `<state file>.lock`, released by the kernel when the process
dies (kill -9 included), so a crash never leaves a stale lock behind. The lock is
named after the state file's real path: through a symlink (to the file or to a
directory on the way) a second writer would otherwise lock another name and act.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from watchdog.state.storage import LockHeld, StoreError, make_parent

__all__ = ["LockHeld", "StateLock"]


class StateLock:
    def __init__(self, state_path: str | Path):
        self.given = Path(state_path)
        # resolve() follows every symlink, a dangling one too (the state file may not exist yet).
        self.state = self.given.resolve()
        self.path = Path(f"{self.state}.lock")
        self._fd: int | None = None

    def acquire(self, who: str) -> None:
        """LockHeld when another process has it; StoreError (one line) when the lock file cannot be made."""
        make_parent(self.given, self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"state_path {self.given}: cannot create the lock {self.path}: "
                             f"{exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LockHeld(f"the state at {self._named()} is in use by {holder}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{who} (pid {os.getpid()})\n".encode(), 0)
        self._fd = fd

    def _named(self) -> str:
        # Both names when they differ: the operator knows the one in the config, the holder may use the other.
        return str(self.state) if self.given.absolute() == self.state else f"{self.state} (named {self.given} here)"

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
