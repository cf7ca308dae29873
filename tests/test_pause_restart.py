"""Pauses are maintenance windows: a restart inside one (kill -9, an upgrade, a reboot) keeps it (issue 12,
defect 4). Before, a 30-minute pause vanished on restart with no event, and levels 1 and 2 then ran inside
the window."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest

from tests.daemon import Daemon, polled
from story import Publisher, render

pytestmark = pytest.mark.slow
TOKEN = "pause-test-token"
API = {"WATCHDOG_API_TOKEN": TOKEN}
FLAGS = "/admin/feature-flags/hybrid-routing"


async def call(base: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        async with http.request(method, base + path, json=body) as r:
            return r.status, await r.json()


async def test_a_pause_survives_kill_9_and_holds_the_levels(tmp_path, moto_url, aws_env, admin_api):
    ns = f"PAUSE{time.monotonic_ns()}"
    path = render(tmp_path, moto_url, admin_api, ns)
    pub = Publisher(moto_url, ns)
    pub.healthy = True
    pub.start(heal_when=lambda: admin_api.count("/admin/routing") > 0)
    d = await Daemon(path, env=API).start()
    try:
        base = f"http://127.0.0.1:{await d.port()}"
        status, paused = await call(base, "POST", "/api/v1/pause", {"duration": "30m", "reason": "db maintenance"})
        assert status == 200 and paused["paused"] == "*"
        status, one = await call(base, "POST", "/api/v1/pause",
                                 {"duration": "2h", "reason": "router upgrade", "target": "hybrid-routing"})
        assert status == 200
        d.signal(signal.SIGKILL)
        await d.wait(10)

        d = await Daemon(path, env=API).start()
        restored = await d.wait_for("pauses_restored", timeout=20)
        assert {(p["scope"], p["until"], p["reason"]) for p in restored["pauses"]} == {
            ("*", paused["until"], "db maintenance"), ("hybrid-routing", one["until"], "router upgrade")}
        port = await d.port()
        base = f"http://127.0.0.1:{port}"
        status, doc = await call(base, "GET", "/status")
        [target] = doc["targets"]
        assert target["paused"] is True and target["pause"]["until"] == one["until"]  # the longer one holds it
        pub.healthy = False  # the alarm comes inside the window
        held = await d.wait_for("would_run", timeout=30, level=1)
        assert "paused until" in held["why"]
        await polled(port, 3)  # several polls on, with the rule alarming throughout
        assert admin_api.count(FLAGS) == 0 and admin_api.count("/admin/routing") == 0
        for body in ({"reason": "done"}, {"reason": "done", "target": "hybrid-routing"}):
            status, _ = await call(base, "POST", "/api/v1/resume", body)
            assert status == 200
        await d.wait_for("action_started", timeout=30, level=1)  # acting again once the window is over
        d.signal(signal.SIGTERM)
        assert await d.wait(20) == 0

        d = await Daemon(path, env=API).start()  # resumed pauses stay gone
        await d.port()
        await d.wait_for("recovered", timeout=20)
        assert d.events("pauses_restored") == []
        d.signal(signal.SIGTERM)
        assert await d.wait(20) == 0
    finally:
        await pub.stop()
        await d.stop()


async def test_a_pause_that_ended_while_stopped_is_dropped_not_restored(tmp_path, moto_url, aws_env, admin_api):
    path = render(tmp_path, moto_url, admin_api, f"PAUSEX{time.monotonic_ns()}")
    d = await Daemon(path, env=API).start()
    try:
        base = f"http://127.0.0.1:{await d.port()}"
        status, _ = await call(base, "POST", "/api/v1/pause", {"duration": "1s", "reason": "short"})
        assert status == 200
        d.signal(signal.SIGKILL)
        await d.wait(10)
        await asyncio.sleep(1.2)  # the pause ends while no daemon runs
        d = await Daemon(path, env=API).start()
        dropped = await d.wait_for("pause_dropped", timeout=20)
        assert dropped["scope"] == "*" and "ended while the watchdog was stopped" in dropped["why"]
        base = f"http://127.0.0.1:{await d.port()}"
        _, doc = await call(base, "GET", "/status")
        assert doc["targets"][0]["paused"] is False and d.events("pauses_restored") == []
    finally:
        await d.stop()


async def test_a_damaged_pause_row_is_said_and_does_not_stop_the_start(tmp_path, moto_url, aws_env, admin_api):
    import sqlite3

    from watchdog.state.sqlite.store import SqliteStore

    path = render(tmp_path, moto_url, admin_api, f"PAUSED{time.monotonic_ns()}")
    SqliteStore(tmp_path / "watchdog.db").close()
    with sqlite3.connect(tmp_path / "watchdog.db") as db:
        db.execute("INSERT INTO pauses (scope, pause) VALUES ('*', ?)", ('{"scope": "*", "until": "soon"}',))
    d = await Daemon(path, env=API).start()
    try:
        await d.port()  # started
        unreadable = await d.wait_for("pause_unreadable", timeout=10)
        assert unreadable["scope"] == "*" and unreadable["log_level"] == "critical"
    finally:
        await d.stop()
