"""/metrics is sent as it is rendered, a few families at a time (http/web.py), never held whole (issue 22: the
daemon's memory at 5 000 rules). The page is prometheus_client's text exposition of the registry, unchanged.

An in-process App on loopback (no scheduled polls, so the registry holds still while it is compared), its
registry given 3 000 rules' series: a page of several hundred KiB."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from configs import CLOSED, http, hybrid_routing, level, parsed
from timing import until
from watchdog.lifecycle.app import App

RULES = 3000


IDLE_TIMEOUT = 0.5
SLACK = 5.0  # seconds on top of a timeout: a loaded 2-core machine fires timers late, never early


@pytest.fixture
async def app(tmp_path: Path, aws_env: dict[str, str]) -> AsyncIterator[App]:
    cfg = parsed(hybrid_routing(state_path=tmp_path / "w.db", aws_endpoint=CLOSED, retry={"attempts": 1},
                                levels=[level(1, "flags", http(f"{CLOSED}/x", method=None), deadline="1m")],
                                watchdog={"http_idle_timeout": f"{int(IDLE_TIMEOUT * 1000)}ms"}))
    app = await App.create(cfg, schedule=False)
    await app.start()
    judged = [(f"target-{i % 7}", f"rule-{i:05d}", "performance", i % 3 if i % 2 == 0 else 2,
               i * 1.5 if i % 2 == 0 else None) for i in range(RULES)]  # as a board of RULES rules would say
    app.runtime.metrics.rule_series.read_from(lambda: judged)
    try:
        yield app
    finally:
        await app.stop()


async def test_the_page_is_the_registrys_exposition_sent_in_parts(app: App) -> None:
    url = f"http://127.0.0.1:{app.bound_port}/metrics"
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 200 and r.headers["Content-Type"] == CONTENT_TYPE_LATEST
        assert r.headers.get("Transfer-Encoding") == "chunked"
        parts, body = 0, b""
        async for data, end_of_chunk in r.content.iter_chunks():
            body += data
            parts += end_of_chunk
        whole = generate_latest(app.runtime.metrics.registry)  # while the connection is open, as it was counted
    assert len(whole) > 300 * 1024
    assert body == whole
    assert parts >= len(whole) // (64 * 1024)  # 64 KiB or more at a time, no more than that held


async def test_a_scrape_holds_far_less_than_the_page(app: App) -> None:
    """Rendered whole, a page is held three times over (its lines, their join, its bytes): a scrape here then
    allocated about four times the page at its peak, the HTTP buffers of both ends included. Sent in parts, it
    stays under twice the page (the reader here drops each part as it comes)."""
    url = f"http://127.0.0.1:{app.bound_port}/metrics"
    size = len(generate_latest(app.runtime.metrics.registry))
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as r:  # the first scrape's one-time work (imports, buffers) is not a scrape's own
            await r.read()
        gc.collect()
        tracemalloc.start()
        try:
            async with s.get(url) as r:
                got = 0
                async for data, _ in r.content.iter_chunks():
                    got += len(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert got == size
    assert peak < 2 * size, (peak, size)


async def test_a_reader_that_stops_taking_the_page_is_cut_off_at_the_idle_timeout(app: App) -> None:
    """A scrape's handler waits on its reader while the page is sent: one that reads nothing (a receive buffer of
    4 KiB, never read) would keep its connection busy for good, and the guard never closes a busy one to make
    room. It is closed once a part has waited the idle timeout, as an answered connection would be. The page
    is made larger than what the kernel takes in on both ends (its send buffer grows to 4 MiB here)."""
    guard = app.http.guard
    big = [("big", f"rule-{i:05d}", "performance", 0, float(i)) for i in range(60_000)]
    app.runtime.metrics.rule_series.read_from(lambda: big)
    assert len(generate_latest(app.runtime.metrics.registry)) > 6 * 2**20
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", app.bound_port))
    try:
        await until(lambda: guard.held == 1, what="the connection held")
        asked = time.monotonic()
        sock.send(b"GET /metrics HTTP/1.1\r\nHost: watchdog\r\n\r\n")
        await until(lambda: guard.busy == 1, what="the scrape under way")
        await until(lambda: guard.held == 0, timeout=IDLE_TIMEOUT + SLACK, what="the stalled reader closed")
        assert time.monotonic() - asked >= IDLE_TIMEOUT
    finally:
        sock.close()
