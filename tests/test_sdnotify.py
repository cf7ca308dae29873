"""systemd's notify protocol, heard on a real datagram socket (NOTIFY_SOCKET), from the real daemon."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aws_proxy import Reply, running_proxy
from tests.daemon import Daemon
from story import Publisher, render
from watchdog.lifecycle.sdnotify import SystemdNotifier


class Listener:
    """A bound AF_UNIX datagram socket, as systemd's; every message with its arrival time."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path if not path.startswith("@") else "\0" + path[1:])
        self.sock.setblocking(False)
        self.messages: list[tuple[float, list[str]]] = []
        self._task: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 4096)
            self.messages.append((time.monotonic(), data.decode().split("\n")))

    def start(self) -> None:
        self._task = asyncio.create_task(self._read())

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
        self.sock.close()

    def with_field(self, field: str) -> list[tuple[float, list[str]]]:
        return [(t, m) for t, m in self.messages if any(f == field or f.startswith(field) for f in m)]

    async def wait_for(self, field: str, timeout: float = 20.0, after: float = 0.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, m in self.with_field(field):
                if t >= after:
                    return m
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {field} within {timeout}s; got {self.messages[-5:]}")


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[Listener]:
    lst = Listener(str(tmp_path / "notify.sock"))
    lst.start()
    yield lst
    await lst.close()


async def test_the_notifier_speaks_the_protocol(tmp_path: Path) -> None:
    abstract = f"@rollback-watchdog-test-{time.monotonic_ns()}"
    lst = Listener(abstract)
    lst.start()
    try:
        sd = SystemdNotifier(abstract, 4_000_000)
        assert sd.enabled and sd.ping_every == 2.0
        sd.ready("web L0 normal; sources up 1/1; paused: none")
        sd.status("web L0 normal; sources up 1/1; paused: none")  # unchanged: not sent again
        sd.status("web L1 running; sources up 1/1; paused: none")
        sd.ping()
        sd.reloading()
        sd.stopping()
        await asyncio.sleep(0.1)
    finally:
        await lst.close()
    got = [m for _, m in lst.messages]
    assert got[0] == ["READY=1", "STATUS=web L0 normal; sources up 1/1; paused: none"]
    assert got[1] == ["STATUS=web L1 running; sources up 1/1; paused: none"]
    assert got[2] == ["WATCHDOG=1"]
    assert got[3][0] == "RELOADING=1" and got[3][1].startswith("MONOTONIC_USEC=") and got[3][1][15:].isdigit()
    assert got[4][0] == "STOPPING=1" and len(got) == 5


def test_without_systemd_or_with_a_dead_socket_nothing_breaks(tmp_path: Path) -> None:
    off = SystemdNotifier()
    assert not off.enabled and off.send("READY=1") is False and off.ping_every is None
    dead = SystemdNotifier(str(tmp_path / "nobody-listens.sock"))
    assert dead.send("READY=1") is False  # logged once, never raised
    dead.ping()


@pytest.mark.slow
async def test_the_daemon_is_ready_and_pings_while_it_decides_even_when_cloudwatch_hangs(
        tmp_path, moto_url, aws_env, admin_api, listener: Listener) -> None:
    ns = f"SDN{time.monotonic_ns()}"
    async with running_proxy(moto_url) as proxy:
        path = render(tmp_path, proxy.url, admin_api, ns, grace="2s")
        pub = Publisher(moto_url, ns)
        pub.healthy = True
        pub.start()
        env = {"NOTIFY_SOCKET": listener.sock.getsockname(), "WATCHDOG_USEC": "1000000"}  # ping every 0.5 s
        d = await Daemon(path, env=env).start()
        try:
            ready = await listener.wait_for("READY=1")
            assert any(f.startswith("STATUS=hybrid-routing L0 normal; sources up") for f in ready), ready
            started = time.monotonic()
            await asyncio.sleep(3.0)
            pings = [t for t, _ in listener.with_field("WATCHDOG=1") if t >= started]
            assert 4 <= len(pings) <= 8, pings  # every 0.5 s while healthy

            # CloudWatch stops answering: each poll ends at its deadline (2 tries of 2 s), failed. A restart
            # would not help, so systemd must not be made to do one: the pings go on, as for a CloudWatch
            # that answers 500 (test_health.py).
            proxy.script = [Reply(delay=30.0)]
            hung = time.monotonic()
            await d.wait_for("source_poll_failed", timeout=10)
            await asyncio.sleep(max(0.0, hung + 6.0 - time.monotonic()))
            during = [t for t, _ in listener.with_field("WATCHDOG=1") if t >= hung]
            assert len(during) >= 9, during
            assert d.events("watchdog_ping_withheld") == []
            proxy.script = []

            hup_at = time.monotonic()
            d.signal(signal.SIGHUP)
            reloading = await listener.wait_for("RELOADING=1", after=hup_at)
            assert reloading[0] == "RELOADING=1"
            await listener.wait_for("READY=1", after=hup_at)
            d.signal(signal.SIGTERM)
            stopping = await listener.wait_for("STOPPING=1")
            assert stopping[0] == "STOPPING=1"
            assert await d.wait(40) == 0
        finally:
            await pub.stop()
            await d.stop()


async def test_the_pings_stop_when_the_polls_stop_coming_round(tmp_path: Path, listener: Listener) -> None:
    """What a restart does fix: the scheduler or the loop has stopped. Shown with an injected clock that
    jumps past the polls' pace; the real loop goes on, so the withheld ping is the judgement's, not a hang's."""
    from datetime import datetime, timezone

    from configs import hybrid_routing, parsed
    from timing import FakeClock, until
    from watchdog.lifecycle.app import App

    cfg = parsed(hybrid_routing(state_path=tmp_path / "w.db", timeout="1s", retry={"attempts": 1}))
    clock = FakeClock(datetime.now(timezone.utc))
    app = await App.create(cfg, clock=clock, serve_http=False, sd=SystemdNotifier(listener.sock.getsockname(), 200_000))
    await app.start()
    try:
        await listener.wait_for("WATCHDOG=1")
        await until(lambda: app.runtime.board.sources["cloudwatch"].last_poll is not None and not app.runtime.polling,  # type: ignore[union-attr]
                    what="the first poll and its evaluation")
        clock.advance(hours=2, seconds=20)  # no poll for longer than one try (1 s + 10 s + 2 s) and 2 x 1 h
        jumped = time.monotonic() + 0.2  # a ping already on its way may still arrive
        assert not app.runtime.liveness()[0]
        await asyncio.sleep(0.6)  # several ping periods (100 ms each) on the real loop
        assert [t for t, _ in listener.with_field("WATCHDOG=1") if t >= jumped] == []
    finally:
        await app.stop()
