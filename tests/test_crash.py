"""kill -9 at the dangerous instants; the restarted daemon must not repeat a step by accident.

The admin API stub counts calls; after each restart the incident must reach the
right end state and the audit chain must verify.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from story import FLAGS, REDEPLOY, ROUTING, Publisher, render
from tests.daemon import Daemon, assert_audit_log_intact
from timing import until

pytestmark = pytest.mark.slow


TOKEN = "crash-test-token"
API = {"WATCHDOG_API_TOKEN": TOKEN}  # WATCHDOG_* overrides the config's watchdog: section


async def reads_after_restart(d: Daemon, incident: str) -> None:
    """What an operator opens first after a crash: /status and the incidents API show the resumed incident."""
    base = f"http://127.0.0.1:{await d.port()}"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        async with http.get(f"{base}/status") as r:
            assert r.status == 200, await r.text()
            [target] = (await r.json())["targets"]
        async with http.get(f"{base}/api/v1/incidents") as r:
            assert r.status == 200, await r.text()
            listed = (await r.json())["incidents"]
        async with http.get(f"{base}/api/v1/incidents/{incident}") as r:
            assert r.status == 200, await r.text()
            one = await r.json()
    assert target["incident"]["id"] == incident
    assert incident in [i["id"] for i in listed]
    assert one["id"] == incident and one["trigger"], one
    for t in one["trigger"].values():  # restored as times, rendered as ISO 8601
        assert t["at"] is None or t["at"][:4].isdigit()


def stored_phase(state: Path) -> str | None:
    """The open incident's phase as the state file has it (read-only, beside the running daemon)."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=1) as db:
            row = db.execute("SELECT phase FROM incidents WHERE closed_at IS NULL").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


async def kill_9(d: Daemon) -> None:
    d.signal(signal.SIGKILL)
    await d.wait(10)


async def restarted(path: str, level: int | None = None) -> tuple[Daemon, dict]:
    """The daemon started again after a kill: it recovers the open incident (at `level`) and shows it."""
    d = await Daemon(path, env=API).start()
    recovered = await d.wait_for("recovered", timeout=20)
    if level is not None:
        assert recovered["level"] == level
    await reads_after_restart(d, recovered["incident"])
    return d, recovered


async def stops_mitigated(d: Daemon) -> dict:
    """The restarted daemon carries the incident on to mitigated, then stops cleanly."""
    mitigated = await d.wait_for("mitigated", timeout=60)
    d.signal(signal.SIGTERM)
    assert await d.wait(20) == 0
    return mitigated


def assert_level_2_cured_it(admin_api, path: str) -> None:
    """Level 2 ran once and cured it, level 3 never ran, and the audit chain verifies."""
    assert admin_api.count(ROUTING) == 1 and admin_api.count(REDEPLOY) == 0
    assert_audit_log_intact(path)


@pytest.mark.parametrize("idempotent, flag_calls", [(False, 1), (True, 2)])
async def test_kill_during_a_slow_action(tmp_path, moto_url, aws_env, admin_api, idempotent, flag_calls):
    ns = f"CRASH{time.monotonic_ns()}"
    path = render(tmp_path, moto_url, admin_api, ns, deadline="20s", idempotent=idempotent)
    admin_api.delay[FLAGS] = 2.0
    pub = Publisher(moto_url, ns)
    pub.start(heal_when=lambda: admin_api.count(ROUTING) > 0)
    d = await Daemon(path).start()
    try:
        await d.wait_for("action_started", timeout=30, level=1)
        await until(lambda: admin_api.count(FLAGS) == 1, 10, "the request at the admin API")
        await kill_9(d)
        assert admin_api.count(FLAGS) == 1
        admin_api.delay.pop(FLAGS)
        d, _ = await restarted(path, level=1)
        if not idempotent:
            await d.wait_for("outcome_unknown", timeout=10)
        await stops_mitigated(d)
    finally:
        await pub.stop()
        await d.stop()
    assert admin_api.count(FLAGS) == flag_calls  # repeated only when declared idempotent
    assert_level_2_cured_it(admin_api, path)


async def test_kill_during_the_verify_window(tmp_path, moto_url, aws_env, admin_api):
    ns = f"CRASHV{time.monotonic_ns()}"
    path = render(tmp_path, moto_url, admin_api, ns)
    pub = Publisher(moto_url, ns)
    pub.start(heal_when=lambda: admin_api.count(ROUTING) > 0)
    d = await Daemon(path).start()
    try:
        await d.wait_for("level_succeeded", timeout=30, level=1)
        # The log line comes as the decision is made; the snapshot lands in the state file a moment later
        # (the writer thread). Killed in between, the file still says "running" (also a valid crash, the one
        # test_kill_at_the_instants_around_an_action covers): wait until the verify window is on disk.
        await until(lambda: stored_phase(tmp_path / "watchdog.db") == "verifying", 10, "the verifying snapshot")
        await kill_9(d)
        d, recovered = await restarted(path)
        assert "phase verifying at level 1" in recovered["why"]
        await stops_mitigated(d)
    finally:
        await pub.stop()
        await d.stop()
    assert admin_api.count(FLAGS) == 1
    assert_level_2_cured_it(admin_api, path)


@pytest.mark.parametrize("failpoint, idempotent, flag_calls", [
    ("after_intent", False, 0),     # the request never left; unknown, so not sent after the restart either
    ("after_intent", True, 1),      # idempotent: sent once, by the restarted daemon
    ("before_outcome", False, 1),   # the request was done; its outcome was never written; not repeated
    ("before_outcome", True, 2),    # idempotent: repeated by the restarted daemon
])
async def test_kill_at_the_instants_around_an_action(tmp_path, moto_url, aws_env, admin_api, failpoint, idempotent,
                                                     flag_calls):
    """The daemon freezes at a failpoint (WATCHDOG_TEST_FAILPOINTS) and is killed there, at that exact instant."""
    ns = f"CRASHF{time.monotonic_ns()}"
    path = render(tmp_path, moto_url, admin_api, ns, deadline="20s", idempotent=idempotent)
    pub = Publisher(moto_url, ns)
    pub.start(heal_when=lambda: admin_api.count(ROUTING) > 0)
    d = await Daemon(path, env={"WATCHDOG_TEST_FAILPOINTS": failpoint}).start()
    try:
        await d.wait_for("failpoint_reached", timeout=30, failpoint=failpoint, level=1)
        await kill_9(d)
        assert admin_api.count(FLAGS) == (1 if failpoint == "before_outcome" else 0)
        d, _ = await restarted(path, level=1)
        if not idempotent:
            await d.wait_for("outcome_unknown", timeout=10)
        # The flags were never the cure here: verification fails and level 2 holds.
        assert (await stops_mitigated(d))["level"] == 2
    finally:
        await pub.stop()
        await d.stop()
    assert admin_api.count(FLAGS) == flag_calls
    assert_level_2_cured_it(admin_api, path)


def test_an_unknown_failpoint_is_a_usage_error(tmp_path, moto_url, aws_env, admin_api):
    path = render(tmp_path, moto_url, admin_api, "CRASHU")
    r = subprocess.run([sys.executable, "-m", "watchdog", "run", "-c", path], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "WATCHDOG_TEST_FAILPOINTS": "after_intnet"})
    assert r.returncode == 2
    problems = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith("warning: ")]  # config warnings
    assert problems == ["WATCHDOG_TEST_FAILPOINTS: unknown failpoint after_intnet (known: after_intent, after_receive, "
                        "before_outcome, before_request)"]


async def test_kill_with_undelivered_notifications_delivers_each_once_after_restart(tmp_path, moto_url, aws_env,
                                                                                     admin_api):
    import sqlite3

    from watchdog.notify import render_text
    from watchdog.state.outbox import event_from_json

    ns = f"CRASHN{time.monotonic_ns()}"
    hook = "/slack/hook-crash"
    path = render(tmp_path, moto_url, admin_api, ns, notifications=[
        {"type": "slack", "webhook_url": f"{admin_api.url}{hook}", "timeout": "1s",
         "retry": {"attempts": 100, "initial_backoff": "100ms", "max_backoff": "300ms"}}])
    admin_api.script[hook] = [500]  # Slack is down until after the crash
    pub = Publisher(moto_url, ns)
    pub.start(heal_when=lambda: admin_api.count(ROUTING) > 0)
    d = await Daemon(path).start()
    try:
        await d.wait_for("level_succeeded", timeout=30, level=1)
        await d.wait_for("notification_failed", timeout=10)
        # A failing channel shows in /status, in the operator's table and in the metrics.
        base = f"http://127.0.0.1:{await d.port()}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/status") as r:
                [slack] = (await r.json())["notifications"]
            async with http.get(f"{base}/metrics") as r:
                metrics = await r.text()
        assert (slack["name"], slack["up"], slack["last_error"]) == ("slack", False, "Slack answered HTTP 500")
        assert slack["pending"] >= 1 and slack["sent"] == 0
        assert 'watchdog_notifications_total{channel="slack",outcome="failed"}' in metrics
        table = subprocess.run([sys.executable, "-m", "watchdog", "status", "--url", base], capture_output=True,
                               text=True, timeout=30)
        [row] = [ln for ln in table.stdout.splitlines() if ln.startswith("slack ")]
        assert row.split()[:3] == ["slack", "slack", "NO"] and row.endswith("Slack answered HTTP 500")
        await kill_9(d)
        state = tmp_path / "watchdog.db"
        with sqlite3.connect(state) as db:
            waiting = [event_from_json(e) for (e,) in db.execute(
                "SELECT event FROM outbox WHERE state = 'pending' ORDER BY id")]
        assert len(waiting) >= 3, waiting  # opened, level started, level succeeded at least
        failed_before = len(admin_api.calls)  # every call so far; the hook ones all got 500
        admin_api.script[hook] = [200]
        d, _ = await restarted(path)
        await d.wait_for("mitigated", timeout=60)

        def pending() -> int:
            with sqlite3.connect(state) as db:
                return db.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()[0]

        await until(lambda: pending() == 0, 20, "every waiting message delivered")
        d.signal(signal.SIGTERM)
        assert await d.wait(20) == 0
    finally:
        await pub.stop()
        await d.stop()
    def slack(text: str) -> str:  # the text as the Slack channel escapes it
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    delivered = [body["text"] for m, p, body in admin_api.calls[failed_before:] if p == hook]
    assert len(delivered) == len(set(delivered)), "a message was delivered twice"
    for ev in waiting:
        assert delivered.count(slack(render_text(ev, False))) == 1, ev.kind
    assert delivered.index(slack(render_text(waiting[0], False))) == 0  # the oldest waiting message goes first
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT count(*) FROM outbox WHERE state != 'sent'").fetchone()[0] == 0
    assert_audit_log_intact(path)
