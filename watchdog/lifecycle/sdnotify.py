"""systemd's notify protocol (sd_notify(3)), spoken directly: one datagram per message.

READY=1 once the scheduler and the HTTP server are up, STATUS= a one-line
summary, WATCHDOG=1 at half of WatchdogSec but only while the evaluation loop is
healthy (a stalled loop stops the pings and systemd restarts the service),
RELOADING=1 / READY=1 around SIGHUP, STOPPING=1 at shutdown. Without
NOTIFY_SOCKET (not under systemd) every call is a no-op. A failed send is
logged once and never raised: systemd's absence must not stop a rollback.
"""

from __future__ import annotations

import socket
import time

import structlog

log = structlog.get_logger("watchdog.lifecycle.sdnotify")


class SystemdNotifier:
    def __init__(self, socket_path: str | None = None, watchdog_usec: int | None = None):
        self._address = ("\0" + socket_path[1:]) if socket_path and socket_path.startswith("@") else socket_path
        self.watchdog_usec = watchdog_usec
        self._warned = False
        self._last_status: str | None = None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def ping_every(self) -> float | None:
        """Seconds between WATCHDOG=1 pings: half the watchdog timeout, as sd_watchdog_enabled(3) advises."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def send(self, *fields: str) -> bool:
        if self._address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(fields).encode(), self._address)
            return True
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("sd_notify_failed", error=exc.strerror or type(exc).__name__)
            return False

    def ready(self, status: str) -> None:
        self._last_status = status
        self.send("READY=1", f"STATUS={status}")

    def status(self, text: str) -> None:
        if text != self._last_status:  # STATUS only when it changes: the journal need not see repeats
            self._last_status = text
            self.send(f"STATUS={text}")

    def ping(self) -> None:
        self.send("WATCHDOG=1")

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd (v253+) tell this reload from an older one.
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}", "STATUS=reloading the config")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping: draining a running level, then closing")
