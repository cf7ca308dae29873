"""Issue 19, defect 1: anyone who can reach the HTTP port, with no token, must not be able to switch the
watchdog off by opening connections.

The flood runs the real daemon at a 1 024-descriptor limit (prlimit, for the daemon only) against moto,
the admin API and a PagerDuty receiver on loopback. The limits one at a time run an in-process App (the real
web app, guard and config) driven with raw sockets. Injected: only the log window's timer, in its own test.
Modules new in issue 19 are imported inside the two tests that need them, so that this file collects on the
code before it and each test there fails on what it checks.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from binaries import cli
from configs import hybrid_routing, parsed, to_yaml, write
from rawhttp import HEAD, HEAD_START, IDLE, MALFORMED, Flood, Raw, request, server_side
from receivers import Receivers, receivers  # noqa: F401  (fixture)
from story import FLAGS, Publisher, render
from test_logs import lines, log_stream  # noqa: F401  (fixture: the daemon's logging into a buffer)
from tests.daemon import Daemon
from timing import until
from watchdog.lifecycle.app import App
from watchdog.support.logs import setup_logging
from watchdog.support.metrics import Metrics

# The daemon's limit in the flood, and what docs/operations.md (Exposure) derives from it: 1 024 - 512
# (the outbound reserve).
NOFILE, CAP_AT_1024 = 1024, 512
SLACK = 5.0  # seconds on top of a timeout: a loaded 2-core machine fires timers late, never early


def rejected(metrics: Metrics, reason: str) -> float:
    return metrics.registry.get_sample_value("watchdog_http_connections_rejected_total", {"reason": reason}) or 0.0


def scraped(text: str, name: str, **labels: str) -> float:
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{want} not in /metrics")


def own_soft_limit(at_least: int) -> tuple[int, int]:
    """This test process opens the flood's sockets: its own soft limit goes up (the daemon's stays 1 024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < at_least:
        if hard != resource.RLIM_INFINITY and hard < at_least:
            pytest.skip(f"the hard descriptor limit here is {hard}: the flood needs {at_least}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (at_least, hard))
    return soft, hard


# --- the flood, on the real daemon -------------------------------------------------------------------

@pytest.mark.slow
async def test_a_flood_of_idle_and_half_sent_connections_does_not_switch_the_watchdog_off(
        tmp_path, moto_url, aws_env, admin_api, receivers: Receivers):
    kept = own_soft_limit(4096)
    ns = f"FLOOD{time.monotonic_ns()}"
    pager = {"type": "pagerduty", "name": "pager", "routing_key": "R0UT1NGKEY", "timeout": "2s",
             "url": f"{receivers.url}/pagerduty/enqueue",
             "retry": {"attempts": 3, "initial_backoff": "100ms", "max_backoff": "500ms"}}
    # Short timeouts through the environment (the daemon reads WATCHDOG_<KEY>), and a cap asked for above the
    # limit, which the outbound reserve must bring down to 1 024 - 512.
    env = {"WATCHDOG_HTTP_IDLE_TIMEOUT": "3s", "WATCHDOG_HTTP_HEADER_TIMEOUT": "2s",
           "WATCHDOG_HTTP_MAX_CONNECTIONS": "4000"}
    d = Daemon(render(tmp_path, moto_url, admin_api, ns, notifications=[pager]), env=env,
               prefix=("prlimit", f"--nofile={NOFILE}:{NOFILE}", "--"))
    pub = Publisher(moto_url, ns)
    flood: Flood | None = None
    try:
        await d.start()
        port = await d.port()

        before = len(d.raw)
        flood = Flood(port, {IDLE: 550, HEAD: 550})
        flood.start()
        await until(lambda: flood.opened >= flood.total, 60, "1 100 connections opened")
        pub.start(heal_when=lambda: admin_api.count(FLAGS) > 0)

        # The breach is seen and level 1 runs, within its deadline (5s), while the flood goes on.
        opened = await d.wait_for("incident_opened", timeout=60)
        done = await d.wait_for("level_succeeded", timeout=30, level=1)
        took = _at(done) - _at(await d.wait_for("level_started", level=1))
        assert took <= 5.0, f"level 1 took {took:.1f}s, its deadline is 5s"
        assert admin_api.count(FLAGS, "PUT") == 1 and not d.events("level_failed")
        # The page is sent.
        await until(lambda: any(h.body.get("event_action") == "trigger" for h in receivers.ok("/pagerduty/enqueue")),
                    30, "the PagerDuty trigger")
        assert opened["incident"] in {h.body.get("dedup_key") for h in receivers.ok("/pagerduty/enqueue")}
        # /healthz and /metrics are answered beside the flood, which never holds more than the cap.
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as s:
            async with s.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200, await r.text()
            async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
                during = await r.text()
        assert 1 <= scraped(during, "watchdog_http_connections_open") <= CAP_AT_1024
        assert scraped(during, "watchdog_http_connections_rejected_total", reason="evicted") > 0
        assert flood.opened > flood.total, "the server closed connections and the flood reopened them"

        # The flood stops reopening: what it holds is closed by the server within the documented timeouts
        # (idle ones from their connect, half-sent ones from their first byte).
        flood.stop()
        left = await flood.settle(timeout=3 + SLACK + 1)
        assert max(flood.lived[IDLE]) <= 3 + SLACK and max(flood.lived[HEAD]) <= 2 + SLACK, \
            (max(flood.lived[IDLE]), max(flood.lived[HEAD]))
        # A connection still open on this side is one the server never accepted (a SYN cookie while its accept
        # queue was full): no socket on the server's side at all.
        held = server_side(port)
        assert [p for p in left if held.get(p) not in (None, "TIME_WAIT")] == [], "the server still holds some"
        # Then each kind alone, nothing competing for the cap: closed by its own timer (the reason says which),
        # no earlier than its timeout and within the slack after it.
        metrics_before = await _metrics(port)
        idle = [await Raw.open(port) for _ in range(20)]
        heads = [await Raw.open(port) for _ in range(20)]
        for c in heads:
            c.started = time.monotonic()
            c.send(HEAD_START)
        ends_idle = await asyncio.gather(*(c.closed_within(3 + SLACK) for c in idle))
        ends_head = await asyncio.gather(*(c.closed_within(2 + SLACK) for c in heads))
        assert min(end - c.opened for end, c in zip(ends_idle, idle)) >= 3.0
        assert min(end - c.started for end, c in zip(ends_head, heads)) >= 2.0
        after = await _metrics(port)
        for reason in ("idle_timeout", "header_timeout"):
            grew = _rejected(after, reason) - _rejected(metrics_before, reason)
            assert grew == 20, f"{reason}: {grew}"
        assert scraped(after, "watchdog_http_connections_open") == 1  # this scrape's own

        # The log: a bounded number of lines (the story's own and one shed line a minute), not a storm.
        grown = d.raw[before:]
        kinds = Counter(ln.get("event") for ln in d.lines[before:])
        assert kinds["http_connections_shed"] <= 2 and kinds["http_errors_suppressed"] <= 2, kinds
        assert not any("out of system resource" in ln for ln in d.raw), "asyncio's accept failures are not logged"
        assert sum(1 for ln in d.lines[before:] if ln.get("logger") == "aiohttp.server") <= 2, kinds
        assert len(grown) <= 200, f"{len(grown)} log lines during the flood: {kinds.most_common(8)}"

        # The limit it ran at, and the cap the reserve left of the 4 000 asked for.
        limit = await d.wait_for("descriptor_limit", timeout=5)
        assert (limit["soft"], limit["hard"], limit["http_max_connections"]) == (NOFILE, NOFILE, CAP_AT_1024), limit
        d.signal(signal.SIGTERM)
        assert await d.wait(30) == 0
    finally:
        if flood is not None:
            flood.stop()
        await pub.stop()
        await d.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, kept)


async def _metrics(port: int) -> str:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
            return await r.text()


def _rejected(text: str, reason: str) -> float:
    return scraped(text, "watchdog_http_connections_rejected_total", reason=reason)


def _at(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["ts"]).timestamp()


# --- the limits, one at a time, on an in-process App (the real web app, guard and config) ------------

TOKEN = "fl00d-t0ken"
# An Alertmanager push whose body the test sends in two parts: while it waits for the rest, its handler runs
# (reading the body), so its connection is busy.
PUSH = json.dumps({"version": "4", "status": "resolved", "alerts": []}).encode().ljust(120)


def push_head() -> bytes:
    return request("POST", "/api/v1/alertmanager", Authorization=f"Bearer {TOKEN}",
                   Content_Type="application/json", Content_Length=str(len(PUSH)))


@asynccontextmanager
async def serving(tmp_path, **http: Any) -> AsyncIterator[App]:
    """An App serving HTTP (no scheduler) with the given watchdog.http_* keys."""
    cfg = parsed(hybrid_routing(state_path=tmp_path / "w.db", api_token=TOKEN, watchdog=http))
    app = await App.create(cfg, schedule=False)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


def shed(app: App, reason: str) -> float:
    return rejected(app.runtime.metrics, reason)


async def test_past_the_cap_the_least_recently_active_idle_connection_makes_room(tmp_path):
    async with serving(tmp_path, http_max_connections=3, http_idle_timeout="1m", http_header_timeout="1m") as app:
        port = app.bound_port
        a, b, c = [await Raw.open(port) for _ in range(3)]
        await until(lambda: app.http.guard.held == 3, what="three connections held")
        d = await Raw.open(port)
        await a.closed_within(SLACK)  # the oldest
        assert await b.open_after() and await c.open_after() and await d.open_after()
        # b is used (a scrape on a kept-alive connection): it goes to the back, and c is now the oldest.
        b.send(request("GET", "/status"))
        assert (await b.response())[0] == 200
        e = await Raw.open(port)
        await c.closed_within(SLACK)
        assert await b.open_after() and await d.open_after() and await e.open_after()
        assert (shed(app, "evicted"), shed(app, "limit")) == (2, 0)
        assert app.runtime.metrics.registry.get_sample_value("watchdog_http_connections_open") == 3
        # A new connection's request is answered: it evicts one, it is not refused.
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/status") as r:
                assert r.status == 200


async def test_a_connection_being_served_is_never_evicted_and_with_all_busy_the_new_one_is_closed(tmp_path):
    async with serving(tmp_path, http_max_connections=2, http_body_timeout="1m", http_idle_timeout="1m") as app:
        port = app.bound_port
        busy = await Raw.open(port)
        busy.send(push_head() + PUSH[:10])  # its handler now waits for the rest of the body
        await until(lambda: app.http.guard.busy == 1, what="the push's handler reading its body")
        idle = await Raw.open(port)
        await until(lambda: app.http.guard.held == 2, what="two connections held")
        third = await Raw.open(port)
        await idle.closed_within(SLACK)  # evicted, though newer than the busy one
        assert await busy.open_after()
        third.send(push_head() + PUSH[:10])
        await until(lambda: app.http.guard.busy == 2, what="both handlers reading their bodies")
        refused = await Raw.open(port)
        await refused.closed_within(SLACK)  # every held connection is busy: closed at once
        assert (shed(app, "evicted"), shed(app, "limit")) == (1, 1)
        for c in (busy, third):
            c.send(PUSH[10:])
            status, _, body = await c.response()
            assert (status, json.loads(body)) == (200, {"received": 0})


async def test_a_half_sent_head_is_closed_at_the_header_timeout_however_slowly_it_trickles(tmp_path):
    async with serving(tmp_path, http_header_timeout="500ms", http_idle_timeout="30s") as app:
        c = await Raw.open(app.bound_port)
        c.started = time.monotonic()
        c.send(HEAD_START)

        async def trickle() -> None:
            while True:
                await asyncio.sleep(0.1)
                c.send(b"X-Slow: 1\r\n")

        dripping = asyncio.create_task(trickle())
        try:
            end = await c.closed_within(0.5 + SLACK)
        finally:
            dripping.cancel()
        assert end - c.started >= 0.5
        assert (shed(app, "header_timeout"), shed(app, "idle_timeout")) == (1, 0)


async def test_an_idle_connection_is_closed_at_the_idle_timeout_but_a_long_request_is_not(tmp_path):
    async with serving(tmp_path, http_idle_timeout="500ms", http_header_timeout="30s",
                       http_body_timeout="30s") as app:
        port = app.bound_port
        silent = await Raw.open(port)  # never sends a byte
        assert await silent.closed_within(0.5 + SLACK) - silent.opened >= 0.5
        kept = await Raw.open(port)  # one request, then kept alive and idle
        asked = time.monotonic()  # its idle time starts when its handler returns, after this
        kept.send(request("GET", "/status"))
        assert (await kept.response())[0] == 200
        assert await kept.closed_within(0.5 + SLACK) - asked >= 0.5
        assert shed(app, "idle_timeout") == 2
        # A handler that runs three idle timeouts long (a body that takes 1.5 s) is not cut short.
        slow = await Raw.open(port)
        slow.send(push_head() + PUSH[:10])
        await asyncio.sleep(1.5)
        slow.send(PUSH[10:])
        assert (await slow.response())[0] == 200
        assert shed(app, "idle_timeout") == 2


async def test_a_body_that_stalls_midway_is_answered_408_and_its_connection_closed(tmp_path):
    async with serving(tmp_path, http_body_timeout="300ms", http_idle_timeout="1s") as app:
        c = await Raw.open(app.bound_port)
        c.send(push_head() + PUSH[:10])
        status, headers, body = await c.response()
        assert status == 408 and json.loads(body) == {"error": "the body did not arrive within 0.3s"}
        assert headers.get("connection", "").lower() == "close"
        await c.closed_within(1 + SLACK)
        assert shed(app, "body_timeout") == 1
        assert app.runtime.alerts.last_received is None  # nothing of it applied


async def test_a_flood_is_one_log_line_and_the_rest_is_summed_up_not_a_line_each(tmp_path):
    with structlog.testing.capture_logs() as logs:
        async with serving(tmp_path, http_max_connections=1) as app:
            held = [await Raw.open(app.bound_port) for _ in range(30)]
            await until(lambda: shed(app, "evicted") == 29, what="29 evictions")
            during = [ln for ln in logs if ln["event"] == "http_connections_shed"]
            assert [ln["closed"] for ln in during] == [{"evicted": 1}]
        for c in held:
            c.close()
    # The rest of the minute, handed over when the server stops.
    assert [ln["closed"] for ln in logs if ln["event"] == "http_connections_shed"] == [{"evicted": 1}, {"evicted": 28}]


def test_one_line_a_window_counts_what_it_held_back():
    from watchdog.support.logwindow import OncePerWindow  # noqa: PLC0415 (new in issue 19: the file collects on older code)

    timers: list[tuple[float, Any]] = []
    summaries: list[dict[str, int]] = []
    w = OncePerWindow(lambda counts: summaries.append(dict(counts)), 60.0, lambda s, fn: timers.append((s, fn)))
    assert w.hit("evicted") is True  # the first is the caller's to log in full
    assert [w.hit(k) for k in ("evicted", "limit", "evicted")] == [False, False, False]
    assert summaries == [] and [s for s, _ in timers] == [60.0]
    timers.pop()[1]()  # the window ends: one summary, and a next window opens since the flood went on
    assert summaries == [{"evicted": 2, "limit": 1}] and len(timers) == 1
    timers.pop()[1]()  # a quiet window: no line, and the window closes
    assert summaries == [{"evicted": 2, "limit": 1}] and timers == []
    assert w.hit("idle_timeout") is True  # after a quiet window the first is logged at once again
    w.hit("idle_timeout")
    w.close()
    assert summaries[-1] == {"idle_timeout": 1}


async def test_malformed_requests_are_one_traceback_a_minute_and_a_count_not_a_line_each(tmp_path, log_stream):
    setup_logging("info", log_stream)
    async with serving(tmp_path) as app:
        for _ in range(30):  # no token needed: a head aiohttp cannot parse
            c = await Raw.open(app.bound_port)
            c.send(MALFORMED)
            assert (await c.response())[0] == 400
            await c.closed_within(SLACK)
        from_aiohttp = [ln for ln in lines(log_stream) if ln.get("logger") == "aiohttp.server"]
        assert len(from_aiohttp) == 1 and "Traceback" in from_aiohttp[0]["exception"]  # the first, whole
    summed = [ln for ln in lines(log_stream) if ln["event"] == "http_errors_suppressed"]
    assert [ln["count"] for ln in summed] == [29]


# The daemon's HTTP server in a child process that has used up its descriptors: accept() fails with EMFILE
# for each connection waiting in its backlog, and asyncio reports each failure, again every second.
EMFILE_CHILD = r"""
import asyncio, json, os, sys
from aiohttp import web
from watchdog.config.models import WatchdogSection
from watchdog.http.server import HttpServer
from watchdog.support.logs import setup_logging
from watchdog.support.metrics import Metrics

async def main():
    setup_logging("info")
    server = HttpServer(Metrics(), WatchdogSection, lambda guard: web.Application(middlewares=[guard.middleware()]))
    port = await server.start("127.0.0.1", 0)
    spare = []
    try:
        while True:
            spare.append(open(os.devnull))
    except OSError:
        pass
    print(json.dumps({"event": "ready", "port": port}), flush=True)
    await asyncio.sleep(float(sys.argv[1]))
    for f in spare:
        f.close()
    await server.stop()

asyncio.run(main())
"""


async def test_accept_failing_for_want_of_descriptors_is_one_critical_line_and_a_count(tmp_path):
    script = tmp_path / "emfile.py"
    script.write_text(EMFILE_CHILD)
    child = await asyncio.create_subprocess_exec(
        "prlimit", "--nofile=64:64", "--", sys.executable, str(script), "3", stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert child.stdout is not None
    before = []  # what it logged before it was ready (the descriptor_limit line)
    while b'"ready"' not in (line := await asyncio.wait_for(child.stdout.readline(), 30)):
        if not line:
            raise AssertionError(f"the child did not start: {(await child.communicate())[1][-2000:]!r}")
        before.append(line)
    port = json.loads(line)["port"]
    waiting = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]  # the kernel completes them
    out, err = await asyncio.wait_for(child.communicate(), 60)
    for _, w in waiting:
        w.close()
    text = b"".join(before).decode() + out.decode()
    assert "out of system resource" not in text + err.decode(), "asyncio's own line per failure"
    failed = [json.loads(ln) for ln in text.splitlines() if '"http_accept_failed"' in ln]
    assert [ln["log_level"] for ln in failed] == ["critical", "critical"], text[-3000:]
    assert failed[0]["count"] == 1 and "Too many open files" in failed[0]["error"]
    assert failed[1]["count"] >= 2, "the failures after the first are summed up at the stop"
    # asyncio retries a failed accept once a second; it used to try the whole backlog again at each wake-up,
    # and each failure scheduled its own retry: thousands a second. Now one a second, plus the first.
    span = _at(failed[1]) - _at(failed[0])
    assert failed[1]["count"] <= span + 2, (failed[1]["count"], span)
    assert child.returncode == 0, err.decode()[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("nofile, soft, cap, level", [
    # 4 096 - 512 (the outbound reserve) leaves room for the default 256.
    ("256:4096", 4096, 256, "info"),
    # 300 - 512 leaves none: the port still takes 16 (the floor), and the line says why.
    ("300:300", 300, 16, "warning"),
], ids=["raised-to-hard", "too-low-for-the-reserve"])
async def test_the_daemon_raises_its_soft_descriptor_limit_and_keeps_a_reserve(tmp_path, nofile, soft, cap, level):
    d = Daemon(write(tmp_path, hybrid_routing(state_path=tmp_path / "w.db")), prefix=("prlimit", f"--nofile={nofile}", "--"))
    try:
        await d.start()
        await d.port()
        line = await d.wait_for("descriptor_limit", timeout=5)
        assert (line["soft"], line["http_max_connections"], line["log_level"]) == (soft, cap, level), line
        assert line["raised_from"] == int(nofile.split(":")[0])
        limits = open(f"/proc/{d.proc.pid}/limits").read()  # the kernel's word, not the daemon's
        assert [ln.split()[3:5] for ln in limits.splitlines() if ln.startswith("Max open files")] == [[str(soft)] * 2]
        d.signal(signal.SIGTERM)
        assert await d.wait(30) == 0
    finally:
        await d.stop()


def test_the_http_limits_are_checked_like_every_other_key(tmp_path):
    cfg = hybrid_routing(state_path=tmp_path / "w.db", watchdog={
        "http_max_connections": 0, "http_header_timeout": "1h", "http_idle_timeout": "0s", "http_body_timeout": "10m"})
    r = cli("check-config", "-c", write(tmp_path, cfg))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    problems = sorted(r.stderr.strip().splitlines())
    assert len(problems) == 3, problems
    assert problems[0].startswith("watchdog.http_header_timeout: at most 10m: a longer wait no longer protects")
    assert problems[1].startswith("watchdog.http_idle_timeout: at least 100ms")
    assert problems[2].startswith("watchdog.http_max_connections: Input should be greater than or equal to 1")
    good = parsed(hybrid_routing(watchdog={"http_max_connections": 64, "http_header_timeout": "2s"})).watchdog
    assert (good.http_max_connections, good.http_header_timeout.total_seconds()) == (64, 2.0)
    assert (good.http_idle_timeout.total_seconds(), good.http_body_timeout.total_seconds()) == (30.0, 10.0)
