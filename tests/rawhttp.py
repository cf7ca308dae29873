"""Raw TCP clients of an HTTP server, byte by byte, as a slow client or an attacker is: `Raw` is one
connection a test drives and watches; `Flood` holds many (idle, half-sent, malformed) and reopens each one
the server closes, recording how long every connection lived."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


def request(method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: watchdog", *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items())]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Raw:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.opened = self.started = time.monotonic()  # connected; a test sets `started` before its first byte

    @classmethod
    async def open(cls, port: int) -> Raw:
        asked = time.monotonic()  # before the SYN: the server cannot have accepted it earlier
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        raw = cls(reader, writer)
        raw.opened = raw.started = asked
        return raw

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def response(self, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        """One HTTP/1.1 answer with a Content-Length: status, headers (lower-case names), body."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines if ln)}
        body = await asyncio.wait_for(self.reader.readexactly(int(headers.get("content-length", "0"))), timeout)
        return int(status_line.split()[1]), headers, body

    async def closed_within(self, timeout: float) -> float:
        """When (time.monotonic()) the server closed the connection, EOF or reset, waiting at most `timeout`
        seconds from now; AssertionError if it did not."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except ConnectionError:
            pass
        except TimeoutError:
            raise AssertionError(f"the server did not close the connection within {timeout:g}s") from None
        return time.monotonic()

    async def open_after(self, wait: float = 0.3) -> bool:
        """Still open `wait` seconds from now (nothing read, no EOF)."""
        try:
            async with asyncio.timeout(wait):
                return bool(await self.reader.read(65536))
        except TimeoutError:
            return True
        except ConnectionError:
            return False

    def close(self) -> None:
        self.writer.close()


IDLE, HEAD, BAD = "idle", "head", "malformed"
# A request whose head never ends: one more header line every TRICKLE seconds (slowloris).
HEAD_START = b"GET /status HTTP/1.1\r\nHost: watchdog\r\n"
TRICKLE = 0.5
MALFORMED = b"GET /status HTTP/1.1\r\nHost: watchdog\r\nthis header line has no colon\r\n\r\n"


class _Slot(asyncio.Protocol):
    def __init__(self, kind: str):
        self.kind = kind
        self.transport: asyncio.Transport | None = None
        self.opened = self.first_byte = 0.0
        self.lost: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.kind == HEAD:
            self.first_byte = time.monotonic()
            transport.write(HEAD_START)
            asyncio.get_running_loop().call_later(TRICKLE, self._trickle)
        elif self.kind == BAD:
            transport.write(MALFORMED)

    def _trickle(self) -> None:
        if not self.lost.done() and self.transport is not None:
            self.transport.write(b"X-Slow: 1\r\n")
            asyncio.get_running_loop().call_later(TRICKLE, self._trickle)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(time.monotonic())


@dataclass
class Flood:
    """`counts` connections of each kind held open at once; every one the server closes is reopened after
    `reopen` seconds, until `stop`. `lived[kind]`: how long each closed connection lived, idle ones from their
    connect, half-sent ones from their first byte."""

    port: int
    counts: dict[str, int]
    reopen: float = 0.5
    lived: dict[str, list[float]] = field(default_factory=lambda: {IDLE: [], HEAD: [], BAD: []})
    opened: int = 0
    failed_connects: int = 0
    _stopping: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _open: list[_Slot] = field(default_factory=list)

    def start(self) -> None:
        for kind, n in self.counts.items():
            for _ in range(n):
                # Opened in waves of 64, 50 ms apart: a burst of 1 100 connects overflows a listen backlog,
                # and the kernel answers the overflow with SYN cookies. Such a connection is complete on this
                # side and does not exist on the server's (nothing held there), so it would not load the server.
                first = len(self._tasks) // 64 * 0.05
                self._tasks.append(asyncio.create_task(self._hold(kind, first)))

    async def _hold(self, kind: str, first: float) -> None:
        await asyncio.sleep(first)
        while not self._stopping:
            slot = _Slot(kind)
            slot.opened = time.monotonic()  # before the SYN: lifetimes are never under-estimated
            try:
                await asyncio.get_running_loop().create_connection(lambda: slot, "127.0.0.1", self.port)
            except OSError:
                self.failed_connects += 1
                await asyncio.sleep(self.reopen)
                continue
            self.opened += 1
            self._open.append(slot)
            ended = await slot.lost
            self._open.remove(slot)
            self.lived[kind].append(ended - (slot.first_byte if kind == HEAD else slot.opened))
            await asyncio.sleep(self.reopen)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def stop(self) -> None:
        """No more reopening: the connections open now stay until the server closes them."""
        self._stopping = True

    async def settle(self, timeout: float) -> list[int]:
        """Waits up to `timeout` for the server to close what the flood holds; the client ports of the
        connections still open then (aborted now, by this side)."""
        _, pending = await asyncio.wait(self._tasks, timeout=timeout) if self._tasks else (set(), set())
        left = [s.transport.get_extra_info("sockname")[1] for s in self._open if s.transport is not None]
        for slot in list(self._open):
            if slot.transport is not None:
                slot.transport.abort()
        for t in pending:
            t.cancel()
        return left


# /proc/net/tcp's states (include/net/tcp_states.h)
TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
              7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}


def server_side(port: int) -> dict[int, str]:
    """The kernel's sockets on this host whose local port is `port` (the server's ends), by the client's
    port: their TCP state. A client connection with no entry here is one the server never accepted: a
    connection the client completed against a SYN cookie while the accept queue was full, which holds
    nothing on the server (no socket, no descriptor)."""
    out: dict[int, str] = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            _, local, remote, st, *_ = line.split()
            if int(local.split(":")[1], 16) == port and int(st, 16) != 10:
                out[int(remote.split(":")[1], 16)] = TCP_STATES.get(int(st, 16), st)
    return out
