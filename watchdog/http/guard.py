"""What a connection to the HTTP port may hold, and for how long (docs/operations.md "Exposure").

Anyone who can reach the port can open connections, with a token or without. Each holds a descriptor of
the kind the polls, the levels and the pages need: at the process's limit every outbound connect fails,
and the watchdog is blind and cannot act. So every connection is in one phase:

* idle: open with no request (just connected, or between keep-alive requests); closed after
  `http_idle_timeout`;
* head: the first bytes of a request are in, its headers are not; closed `http_header_timeout` after the
  first byte, however slowly the rest trickles in;
* busy: a handler runs. A control API handler reads its body within `http_body_timeout` (`read_body`).

At most `cap` connections are held. A new one past the cap closes the least recently active connection that
is idle or in its head and has nothing left to write (a scraper's answered connection goes to the back);
only when every held connection is busy is the new one closed at once. Each close is counted in
watchdog_http_connections_rejected_total{reason} and summarised in one log line a minute.

aiohttp has a keep-alive timeout but neither a header timeout nor a cap. Its protocol factory is wrapped
(a plain asyncio.Protocol in front of aiohttp's own handler) and a middleware marks a connection busy while
its handler runs: public aiohttp and asyncio API only, no subclass of aiohttp's internals.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from watchdog.support.logwindow import Later, OncePerWindow
from watchdog.support.metrics import Metrics

log = structlog.get_logger("watchdog.http")

# watchdog_http_connections_rejected_total's `reason`, a fixed vocabulary.
REASONS = ("evicted", "limit", "header_timeout", "idle_timeout", "body_timeout")
SHED_LOG_EVERY = 60.0  # seconds: at most one http_connections_shed line per minute
IDLE, HEAD, BUSY = "idle", "head", "busy"


@dataclass(frozen=True)
class HttpLimits:
    cap: int  # connections held at once
    header_timeout: float  # seconds, each
    body_timeout: float
    idle_timeout: float


class BodyTimeout(Exception):
    def __init__(self, seconds: float):
        super().__init__(f"the body did not arrive within {seconds:g}s")


class _Conn:
    __slots__ = ("transport", "protocol", "phase", "timer", "handlers", "closing", "held")

    def __init__(self, transport: asyncio.Transport):
        self.transport = transport
        self.protocol: object = None  # aiohttp's handler, once admitted
        self.phase = IDLE
        self.timer: asyncio.TimerHandle | None = None
        self.handlers = 0
        self.closing = False  # its body timed out: closed after the answer
        self.held = True

    @property
    def evictable(self) -> bool:
        # An answer still being written is a request being served, even after its handler returned.
        return self.phase != BUSY and not self.transport.get_write_buffer_size()


class ConnectionGuard:
    """The phases, timers and cap above. `limits` is read at every decision, so a reload's new values apply
    to the next connection and the next timer."""

    def __init__(self, metrics: Metrics, limits: Callable[[], HttpLimits], *, later: Later | None = None):
        self._metrics = metrics
        self._limits = limits
        self._held: OrderedDict[_Conn, None] = OrderedDict()  # least recently active first
        self._by_protocol: dict[object, _Conn] = {}
        self._shed = OncePerWindow(self._summary, SHED_LOG_EVERY, later)
        for reason in REASONS:  # every series exists from the start, at 0
            metrics.http_connections_rejected.labels(reason)
        metrics.http_connections_open.set(0)

    @property
    def held(self) -> int:
        return len(self._held)

    @property
    def busy(self) -> int:
        """Held connections whose handler runs now."""
        return sum(1 for c in self._held if c.phase == BUSY)

    def protocol_factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """What the listening socket builds per connection: `inner` (aiohttp's) behind the guard."""
        return lambda: _Guarded(self, inner)

    def middleware(self) -> Middleware:
        @web.middleware
        async def busy_while_handled(request: web.Request, handler: Handler) -> web.StreamResponse:
            conn = self._by_protocol.get(request.protocol)
            if conn is None:
                return await handler(request)
            self._busy(conn)
            try:
                response = await handler(request)
            finally:
                self._done(conn)
            if conn.closing:  # the rest of a stalled body may still come: not on this connection
                response.force_close()
            return response

        return busy_while_handled

    async def read_body(self, request: web.Request) -> bytes:
        seconds = self._limits().body_timeout
        try:
            async with asyncio.timeout(seconds):
                return await request.read()
        except TimeoutError:
            conn = self._by_protocol.get(request.protocol)
            if conn is not None:
                conn.closing = True
            self._count("body_timeout")
            raise BodyTimeout(seconds) from None

    def close(self) -> None:
        """At the stop: timers cancelled, what the log still owes written."""
        for conn in list(self._held):
            self._drop(conn)
        self._shed.close()

    # --- the phases -----------------------------------------------------------------------

    def _admit(self, transport: asyncio.Transport) -> _Conn | None:
        cap = self._limits().cap
        while len(self._held) >= cap:
            victim = next((c for c in self._held if c.evictable), None)
            if victim is None:  # every held connection is serving a request: the new one waits its turn
                transport.abort()
                self._count("limit")
                return None
            self._close(victim, "evicted")
        conn = _Conn(transport)
        self._held[conn] = None
        self._metrics.http_connections_open.set(len(self._held))
        self._arm(conn, IDLE, self._limits().idle_timeout, "idle_timeout")
        return conn

    def _attach(self, conn: _Conn, protocol: object) -> None:
        conn.protocol = protocol
        self._by_protocol[protocol] = conn

    def _received(self, conn: _Conn) -> None:
        if conn.held and conn.phase == IDLE:  # the first byte of a request: its head has this long in all
            self._arm(conn, HEAD, self._limits().header_timeout, "header_timeout")

    def _busy(self, conn: _Conn) -> None:
        conn.handlers += 1
        conn.phase = BUSY
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None

    def _done(self, conn: _Conn) -> None:
        conn.handlers -= 1
        if conn.handlers == 0 and conn.held:
            self._held.move_to_end(conn)
            self._arm(conn, IDLE, self._limits().idle_timeout, "idle_timeout")

    def _arm(self, conn: _Conn, phase: str, seconds: float, reason: str) -> None:
        if conn.timer is not None:
            conn.timer.cancel()
        conn.phase = phase
        conn.timer = asyncio.get_running_loop().call_later(seconds, self._close, conn, reason)

    def _lost(self, conn: _Conn) -> None:
        self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        if not conn.held:
            return
        conn.held = False
        del self._held[conn]
        self._by_protocol.pop(conn.protocol, None)
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        self._metrics.http_connections_open.set(len(self._held))

    def _close(self, conn: _Conn, reason: str) -> None:
        if not conn.held:
            return
        self._drop(conn)
        conn.transport.abort()  # the descriptor is free now, whatever the peer has left unread
        self._count(reason)

    # --- what it tells ----------------------------------------------------------------------

    def _count(self, reason: str) -> None:
        self._metrics.http_connections_rejected.labels(reason).inc()
        if self._shed.hit(reason):
            self._summary(Counter({reason: 1}))

    def _summary(self, closed: Counter[str]) -> None:
        log.warning("http_connections_shed", closed=dict(sorted(closed.items())), open=len(self._held),
                    cap=self._limits().cap, every_s=SHED_LOG_EVERY,
                    why="more connections than the cap, or connections that sent nothing in time",
                    next="counted in watchdog_http_connections_rejected_total; keep the port on loopback "
                         "or behind a reverse proxy (docs/operations.md: Exposure)")


class _Guarded(asyncio.Protocol):
    """One connection: the guard sees it first; aiohttp's handler is made only for an admitted one."""

    __slots__ = ("_guard", "_make", "_conn", "_inner")

    def __init__(self, guard: ConnectionGuard, make: Callable[[], asyncio.Protocol]):
        self._guard = guard
        self._make = make
        self._conn: _Conn | None = None
        self._inner: asyncio.Protocol | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        conn = self._guard._admit(cast(asyncio.Transport, transport))  # a TCP server's transport
        if conn is None:
            return
        self._conn, self._inner = conn, self._make()
        self._guard._attach(conn, self._inner)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is None or self._conn is None:
            return
        self._guard._received(self._conn)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._guard._lost(self._conn)
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


GUARD_KEY: web.AppKey[ConnectionGuard] = web.AppKey("connection_guard", ConnectionGuard)


async def read_body(request: web.Request) -> bytes:
    """The request's body within the guard's body timeout (BodyTimeout); a plain read on an app without one."""
    guard: Any = request.config_dict.get(GUARD_KEY)
    if guard is None:
        return await request.read()
    return await guard.read_body(request)
