"""The real daemon process against moto server and a local admin API (issue 2 acceptance)."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time

import aiohttp
import pytest

from binaries import binary_or_skip
from story import FLAGS, Publisher, render
from tests.daemon import Daemon
from timing import until

pytestmark = pytest.mark.slow


async def test_latency_breach_escalates_to_level_2_and_is_mitigated(tmp_path, moto_url, aws_env, admin_api):
    ns = f"E2E{time.monotonic_ns()}"
    pub = Publisher(moto_url, ns)
    # Level 1 does not cure it; level 2 does: the service heals once routing is forced.
    pub.start(heal_when=lambda: admin_api.count("/admin/routing") > 0)
    d = await Daemon(render(tmp_path, moto_url, admin_api, ns)).start()
    try:
        port = await d.port()
        await d.wait_for("mitigated", timeout=60)
        assert admin_api.count("/admin/feature-flags/hybrid-routing", "PUT") == 1
        assert admin_api.count("/admin/routing", "PUT") == 1
        assert admin_api.count("/admin/redeploy") == 0
        assert [c[2] for c in admin_api.calls if c[1] == "/admin/routing"] == [{"mode": "mcp_only"}]
        # The order of decisions, from the JSON log.
        kinds = [ln["event"] for ln in d.lines if ln.get("event") in
                 ("incident_opened", "level_started", "level_succeeded", "verification_failed", "mitigated")]
        assert kinds == ["incident_opened", "level_started", "level_succeeded", "verification_failed",
                         "level_started", "level_succeeded", "mitigated"]
        assert all(ln.get("target") == "hybrid-routing" for ln in d.events("level_started"))
        assert [ln["level"] for ln in d.events("level_started")] == [1, 2]

        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
                assert r.status == 200
                metrics = await r.text()
            async with s.get(f"http://127.0.0.1:{port}/status") as r:
                status = await r.json()
            async with s.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200
            async with s.get(f"http://127.0.0.1:{port}/readyz") as r:
                assert r.status == 200
        assert 'watchdog_target_level{target="hybrid-routing"} 2.0' in metrics
        assert 'watchdog_rollbacks_total{level="1",outcome="succeeded",target="hybrid-routing"} 1.0' in metrics
        assert 'watchdog_incidents_open{target="hybrid-routing"} 1.0' in metrics
        target = status["targets"][0]
        assert (target["phase"], target["level"]) == ("mitigated", 2)
        assert [r["level"] for r in target["incident"]["levels_run"]] == [1, 2]
        assert status["sources"][0]["up"] is True

        promtool = binary_or_skip("promtool")
        check = subprocess.run([promtool, "check", "metrics"], input=metrics.encode(), capture_output=True)
        assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()

        d.signal(signal.SIGTERM)
        assert await d.wait(20) == 0
        assert d.events("stopped")
        assert all(ln["event"] != "<not json>" for ln in d.lines), "every stdout line is JSON"
    finally:
        await pub.stop()
        await d.stop()
    # Still no level 3 after everything settled.
    assert admin_api.count("/admin/redeploy") == 0


async def sigterm_while_level_1_runs(tmp_path, moto_url, admin_api, ns: str, action_takes: float,
                                     **config) -> tuple[Daemon, float]:
    """SIGTERM once level 1's request is at the admin API (which answers after `action_takes` seconds):
    the daemon, gone with exit 0, and how long it took to go."""
    admin_api.delay[FLAGS] = action_takes
    pub = Publisher(moto_url, ns)
    pub.start()
    d = await Daemon(render(tmp_path, moto_url, admin_api, ns, **config)).start()
    try:
        await d.wait_for("action_started", timeout=30, level=1)
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        assert await d.wait(20) == 0
        return d, time.monotonic() - t0
    finally:
        await pub.stop()
        await d.stop()


async def test_sigterm_lets_a_running_level_finish(tmp_path, moto_url, aws_env, admin_api):
    d, took = await sigterm_while_level_1_runs(tmp_path, moto_url, admin_api, f"TERM{time.monotonic_ns()}", 2.0,
                                               grace="10s")
    # The level finished (its outcome is logged) before the process left.
    assert d.events("action_succeeded") and d.events("level_succeeded")
    assert not d.events("level_interrupted")
    assert took < 10, f"shutdown took {took:.1f}s"


async def test_sigterm_past_the_grace_records_the_level_as_interrupted(tmp_path, moto_url, aws_env, admin_api):
    d, took = await sigterm_while_level_1_runs(tmp_path, moto_url, admin_api, f"GRACE{time.monotonic_ns()}", 8.0,
                                               grace="1s", deadline="30s")
    assert d.events("level_interrupted")
    assert [ln["attempt"] for ln in d.events("action_unknown")] == [1]
    assert took < 6, f"shutdown took {took:.1f}s with a 1s grace"


async def test_dry_run_runs_no_action_but_reports_what_it_would_do(tmp_path, moto_url, aws_env, admin_api):
    ns = f"DRY{time.monotonic_ns()}"
    pub = Publisher(moto_url, ns)
    pub.start()
    d = await Daemon(render(tmp_path, moto_url, admin_api, ns), "--dry-run").start()
    try:
        port = await d.port()
        started = await d.wait_for("level_started", timeout=30)
        assert started["dry_run"] is True
        await d.wait_for("action_skipped_dry_run", timeout=10)
        await d.wait_for("level_succeeded", timeout=10)
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
                metrics = await r.text()
            async with s.get(f"http://127.0.0.1:{port}/status") as r:
                status = await r.json()
        assert 'watchdog_rollbacks_total{level="1",outcome="dry_run",target="hybrid-routing"} 1.0' in metrics
        assert status["dry_run"] is True and status["targets"][0]["dry_run"] is True
        d.signal(signal.SIGTERM)
        assert await d.wait(20) == 0
    finally:
        await pub.stop()
        await d.stop()
    # Only the level's actions are skipped; the read-only health probe may run.
    assert [c for c in admin_api.calls if c[1] != "/health"] == []


async def test_cloudwatch_unreachable_never_triggers_a_rollback(tmp_path, admin_api, aws_env):
    # A closed port: every poll fails, the rule stays insufficient_data, nothing runs.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    d = await Daemon(render(tmp_path, dead, admin_api, "DEAD")).start()
    try:
        port = await d.port()
        await until(lambda: len(d.events("source_poll_failed")) >= 3, 20, "three failed polls")
        await asyncio.sleep(1.5)
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/status") as r:
                status = await r.json()
            async with s.get(f"http://127.0.0.1:{port}/readyz") as r:
                assert r.status == 503
            async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
                metrics = await r.text()
        assert status["sources"][0]["up"] is False
        assert status["rules"][0]["state"] == "insufficient_data"
        assert status["targets"][0]["level"] == 0
        assert 'watchdog_source_up{source="cloudwatch"} 0.0' in metrics
        assert 'watchdog_rule_state{category="performance",rule="latency",target="hybrid-routing"} 2.0' in metrics
        assert not d.events("incident_opened")
        d.signal(signal.SIGTERM)
        assert await d.wait(20) == 0
    finally:
        await d.stop()
    assert admin_api.calls == []
