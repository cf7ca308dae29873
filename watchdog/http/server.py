"""The listening HTTP server: its descriptors, its connection cap and timeouts (guard.py), and what it
logs under a flood (docs/operations.md "Exposure").

At start the soft RLIMIT_NOFILE is raised to the hard limit (one `descriptor_limit` line). Inbound
connections may hold at most `soft limit - OUTBOUND_RESERVE` descriptors, whatever
`http_max_connections` says: the rest is kept for the outbound side (sources, actions, channels, the state
file, a level-3 command's pipes), which a flood on the port must never starve.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from watchdog.config.models import WatchdogSection
from watchdog.http.guard import ConnectionGuard, HttpLimits
from watchdog.support.logwindow import OncePerWindow
from watchdog.support.metrics import Metrics

log = structlog.get_logger("watchdog.http")

# Descriptors inbound connections can never take. The outbound side holds at most: 100 connections in the
# one HTTP client pool (actions, channels, http_json and prometheus sources), 10 per AWS source's pool,
# the state file with its WAL and lock (4), the recording, stdio and the event loop's own (about 8), 6 pipes
# per running level-3 command. 512 leaves room for 30 AWS sources and more.
OUTBOUND_RESERVE = 512
# Below this the HTTP face could not even answer a probe and a scrape beside a few attackers; a soft
# limit that low starves the outbound side anyway, and the `descriptor_limit` line says so.
MIN_INBOUND = 16
# Connections the kernel completes before the daemon accepts them (they hold no descriptor yet). aiohttp's
# 128 overflowed under a burst of 1 100 connects: the overflow is answered with SYN cookies, and a probe's or
# a scraper's connect in that burst is dropped and retried a second later. asyncio accepts up to this many
# per wake-up, each one admitted or evicted at once.
LISTEN_BACKLOG = 1024
# aiohttp's own keep-alive, a backstop behind the guard's timers (all at most 10m: MAX_HTTP_TIMEOUT).
AIOHTTP_KEEPALIVE = 15 * 60.0
# asyncio's words for accept() failing with EMFILE/ENFILE/ENOBUFS/ENOMEM (selector_events.py), and those errnos.
ACCEPT_FAILED = "socket.accept() out of system resource"
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# asyncio retries a failed accept after 1 s; for half of that the listening socket has nothing to accept.
ACCEPT_PAUSE = 0.5
LOG_EVERY = 60.0


@dataclass(frozen=True)
class Descriptors:
    soft: int
    hard: int
    was: int  # the soft limit found at start
    why_not: str | None = None  # why it could not be raised


def raise_descriptor_limit() -> Descriptors:
    """The soft RLIMIT_NOFILE raised to the hard one (an unprivileged process may: no capability needed)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft >= hard:
        return Descriptors(soft, hard, soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as exc:  # a sandbox that forbids it: keep going on what there is
        return Descriptors(soft, hard, soft, why_not=f"{type(exc).__name__}: {exc}")
    return Descriptors(hard, hard, soft)


def inbound_cap(configured: int, soft: int, reserve: int = OUTBOUND_RESERVE) -> int:
    """Connections the HTTP port may hold: `configured`, but never into the outbound reserve."""
    if soft == resource.RLIM_INFINITY:
        return configured
    return min(configured, max(MIN_INBOUND, soft - reserve))


def limits_of(section: WatchdogSection, soft: int) -> HttpLimits:
    return HttpLimits(cap=inbound_cap(section.http_max_connections, soft),
                      header_timeout=section.http_header_timeout.total_seconds(),
                      body_timeout=section.http_body_timeout.total_seconds(),
                      idle_timeout=section.http_idle_timeout.total_seconds())


class HttpServer:
    """`build(guard)` makes the aiohttp application (web.build_web), with the guard's middleware in it.
    `settings` is read live: a reload's http_* values apply to the next connection."""

    def __init__(self, metrics: Metrics, settings: Callable[[], WatchdogSection],
                 build: Callable[[ConnectionGuard], web.Application]):
        self._settings = settings
        self._soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.guard = ConnectionGuard(metrics, self.limits)
        self.runner = web.AppRunner(build(self.guard), access_log=None, handle_signals=False,
                                    keepalive_timeout=AIOHTTP_KEEPALIVE)
        self._listeners: list[asyncio.Server] = []
        self._undo: list[Callable[[], None]] = []

    def limits(self) -> HttpLimits:
        return limits_of(self._settings(), self._soft)

    async def start(self, host: str, port: int) -> int:
        """Listening on host:port; the bound port (port 0 picks one)."""
        self._raise_limit()
        loop = asyncio.get_running_loop()
        self._quiet_accept_failures(loop)
        self._quiet_library_errors(loop)
        await self.runner.setup()
        server = self.runner.server
        if server is None:  # setup() sets it or raises: aiohttp's contract
            raise RuntimeError("the web runner has no server after setup")
        for sock in _bound(host, port):
            self._listeners.append(await loop.create_server(self.guard.protocol_factory(server), sock=sock,
                                                            backlog=LISTEN_BACKLOG))
        return int(self._listeners[0].sockets[0].getsockname()[1])

    async def stop(self) -> None:
        while self._listeners:
            self._listeners.pop().close()
        if self.runner.server is not None:  # set up, whether or not the bind then succeeded
            await self.runner.cleanup()
        self.guard.close()
        while self._undo:
            self._undo.pop()()

    def _raise_limit(self) -> None:
        d = raise_descriptor_limit()
        self._soft = d.soft
        configured = self._settings().http_max_connections
        cap = inbound_cap(configured, d.soft)
        fields: dict[str, Any] = dict(soft=d.soft, hard=d.hard, raised_from=d.was, outbound_reserve=OUTBOUND_RESERVE,
                                      http_max_connections=cap)
        if d.why_not is not None or cap < configured:
            why = [f"the soft limit stays {d.soft}: {d.why_not}"] if d.why_not else []
            if cap < configured:
                why.append(f"http_max_connections {configured} does not fit in {d.soft} descriptors beside the "
                           f"outbound reserve of {OUTBOUND_RESERVE}: the port holds at most {cap}")
            log.warning("descriptor_limit", **fields, why="; ".join(why),
                        next="raise LimitNOFILE (systemd) or `ulimit -n` for the daemon")
        else:
            log.info("descriptor_limit", **fields)

    def _quiet_accept_failures(self, loop: asyncio.AbstractEventLoop) -> None:
        """asyncio reports each failed accept() through the loop's exception handler: one critical line a
        minute with the count instead. Everything else goes where it went before."""
        previous = loop.get_exception_handler()
        window = OncePerWindow(lambda n: _accept_failed(sum(n.values()), None), LOG_EVERY, loop.call_later)

        def handler(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if str(context.get("message", "")).startswith(ACCEPT_FAILED):
                if window.hit("accept"):
                    _accept_failed(1, context.get("exception"))
                return
            if previous is not None:
                previous(lp, context)
            else:
                lp.default_exception_handler(context)

        loop.set_exception_handler(handler)

        def undo() -> None:
            loop.set_exception_handler(previous)
            window.close()

        self._undo.append(undo)

    def _quiet_library_errors(self, loop: asyncio.AbstractEventLoop) -> None:
        """aiohttp logs every request it cannot handle with a traceback (a malformed head from any client,
        no token needed): the first in a minute is kept whole, the rest are counted in one line."""
        server_log = logging.getLogger("aiohttp.server")
        window = OncePerWindow(
            lambda n: log.error("http_errors_suppressed", count=sum(n.values()), logger="aiohttp.server",
                                every_s=LOG_EVERY, why="requests aiohttp could not handle (malformed or failing); "
                                                       "the first of each minute is logged whole"),
            LOG_EVERY, loop.call_later)
        keep = _FirstPerWindow(window)
        server_log.addFilter(keep)

        def undo() -> None:
            server_log.removeFilter(keep)
            window.close()

        self._undo.append(undo)


class _ListeningSocket(socket.socket):
    """asyncio's accept loop goes on after an accept() that failed for want of descriptors: up to `backlog`
    more tries in the same wake-up, each failing, each reported, each scheduling a retry a second later, so
    the retries multiply (63 487 failures in 9 s at a backlog of 1 024; 213 613 log lines in 45 s before this
    issue). After one such failure this socket has "nothing to accept" for ACCEPT_PAUSE, which ends asyncio's
    batch: one failed accept and one retry a second, for as long as the shortage lasts."""

    _quiet_until = 0.0

    def accept(self) -> tuple[socket.socket, Any]:
        if time.monotonic() < self._quiet_until:
            raise BlockingIOError(errno.EAGAIN, "accept paused: out of descriptors")
        try:
            return super().accept()
        except OSError as exc:
            if exc.errno in OUT_OF_RESOURCES:
                self._quiet_until = time.monotonic() + ACCEPT_PAUSE
            raise


def _bound(host: str, port: int) -> list[socket.socket]:
    """One listening socket per address of `host` (as asyncio's create_server binds them), bound, not yet
    listening. OSError (in use, no such address) closes those made before it."""
    made: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = _ListeningSocket(family, kind, proto)
            made.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio does: an IPv6 address is not also every IPv4 one
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError:
        for done in made:
            done.close()
        raise
    return made


def _accept_failed(count: int, exc: object) -> None:
    log.critical("http_accept_failed", count=count, error=f"{type(exc).__name__}: {exc}" if exc else None,
                 every_s=LOG_EVERY,
                 why="the process is out of descriptors: new connections wait in the backlog, and outbound "
                     "connections (polls, actions, pages) may fail too",
                 next="lower watchdog.http_max_connections or raise LimitNOFILE")


class _FirstPerWindow(logging.Filter):
    def __init__(self, window: OncePerWindow):
        super().__init__()
        self._window = window

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR or self._window.hit(record.levelname)

