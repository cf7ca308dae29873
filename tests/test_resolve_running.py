"""At most one level runs per target, ever (issue 12, defect 3).

Before: `resolve` while level 1's request was in flight closed the incident under it. The still-alarming
rules opened a new incident and level 1's non-idempotent PUT went out a second time 0.99 s later; a
manual level 3 started beside the running level 1; the old incident stayed "resolved (running)".
Now resolve answers 409 while a level runs (and so does a manual rollback)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import aiohttp
import pytest

from tests.daemon import Daemon
from story import Publisher, render

pytestmark = pytest.mark.slow
TOKEN = "resolve-test-token"
API = {"WATCHDOG_API_TOKEN": TOKEN}
FLAGS = "/admin/feature-flags/hybrid-routing"


async def test_resolve_and_a_manual_level_wait_for_the_running_level(tmp_path, moto_url, aws_env, admin_api):
    ns = f"RESOLVE{time.monotonic_ns()}"
    path = render(tmp_path, moto_url, admin_api, ns, deadline="20s")
    admin_api.delay[FLAGS] = 3.0  # level 1's request is slow to answer
    pub = Publisher(moto_url, ns)
    pub.start()  # stays broken: the rules keep alarming
    d = await Daemon(path, env=API).start()
    try:
        base = f"http://127.0.0.1:{await d.port()}"
        started = await d.wait_for("action_started", timeout=30, level=1)
        incident = started["incident"]
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            async with http.post(f"{base}/api/v1/incidents/{incident}/resolve", json={"note": "looks fine"}) as r:
                assert r.status == 409, await r.text()
                assert "level 1 is running" in (await r.json())["error"]
            async with http.post(f"{base}/api/v1/targets/hybrid-routing/rollback",
                                 json={"level": 3, "reason": "now"}) as r:
                assert r.status == 409, await r.text()
        cli = subprocess.run([sys.executable, "-m", "watchdog", "resolve", incident, "--note", "x", "--url", base],
                             capture_output=True, text=True, timeout=30, env={**d.env})
        assert cli.returncode == 1 and "HTTP 409" in cli.stderr and "level 1 is running" in cli.stderr
        await d.wait_for("level_succeeded", timeout=30, level=1)
        assert admin_api.count(FLAGS) == 1 and admin_api.count("/admin/redeploy") == 0
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            async with http.post(f"{base}/api/v1/incidents/{incident}/resolve", json={"note": "verifying"}) as r:
                assert r.status == 200, await r.text()  # nothing runs now: a human may close it
        d.signal(signal.SIGTERM)
        assert await d.wait(30) == 0
    finally:
        await pub.stop()
        await d.stop()
    with sqlite3.connect(tmp_path / "watchdog.db") as db:
        phase, closed = db.execute("SELECT phase, closed_at FROM incidents WHERE id = ?", (incident,)).fetchone()
    assert closed is not None and phase != "running"  # never "resolved (running)"
