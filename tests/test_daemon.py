"""The real daemon process against moto server and a local admin API (issue 2 acceptance)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from datetime import datetime, timezone

import aiohttp
import boto3
import pytest

from tests.daemon import Daemon

pytestmark = pytest.mark.slow

CONFIG = """
watchdog:
  listen: 127.0.0.1:0
  state_path: {tmp}/watchdog.db
  shutdown_grace: {grace}
aws:
  region: us-east-1
  endpoint_url: {aws}
sources:
  - {{name: cloudwatch, type: cloudwatch, interval: 500ms, timeout: 2s, retry: {{attempts: 2, initial_backoff: 50ms, max_backoff: 200ms}}}}
targets:
  - name: hybrid-routing
    rules:
      - name: latency
        category: performance
        source: cloudwatch
        metric: {{namespace: {ns}, name: Latency, dimensions: {{Service: router}}, stat: Average, period: 1s}}
        threshold: "> 1500"
        datapoints_to_alarm: 2
        evaluation_periods: 3
        level: 1
    escalation:
      verify_window: 3s
      max_rollbacks_per_hour: 10
    levels:
      - level: 1
        name: feature-flags
        deadline: {deadline}
        actions:
          - {{type: http, method: PUT, url: "{admin}/admin/feature-flags/hybrid-routing", json: {{enabled: false}}, timeout: 5s, retry: {{attempts: 1}}}}
        checks:
          - {{type: http, url: "{admin}/health", expect_status: 200}}
      - level: 2
        name: traffic-routing
        deadline: 5s
        actions:
          - {{type: http, method: PUT, url: "{admin}/admin/routing", json: {{mode: mcp_only}}}}
        checks:
          - {{type: http, url: "{admin}/health", expect_status: 200}}
      - level: 3
        name: full-system
        deadline: 5s
        actions:
          - {{type: http, method: POST, url: "{admin}/admin/redeploy"}}
"""


def render(tmp_path, moto_url, admin, ns, grace="10s", deadline="5s") -> str:
    text = CONFIG.format(tmp=tmp_path, aws=moto_url, admin=admin.url, ns=ns, grace=grace, deadline=deadline)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


class Publisher:
    """Writes the service's latency into moto every 200ms; `healthy` flips what it writes."""

    def __init__(self, moto_url: str, ns: str):
        self.cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=moto_url)
        self.ns = ns
        self.healthy = False
        self._task: asyncio.Task[None] | None = None

    def put(self, value: float) -> None:
        self.cw.put_metric_data(
            Namespace=self.ns,
            MetricData=[{"MetricName": "Latency", "Dimensions": [{"Name": "Service", "Value": "router"}],
                         "Value": value, "Timestamp": datetime.now(timezone.utc), "StorageResolution": 1}],
        )

    async def run(self, heal_when=None) -> None:
        while True:
            if heal_when is not None and heal_when():
                self.healthy = True
            await asyncio.to_thread(self.put, 200.0 if self.healthy else 2500.0)
            await asyncio.sleep(0.2)

    def start(self, heal_when=None) -> None:
        self._task = asyncio.create_task(self.run(heal_when))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()


def promtool_or_skip() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool not installed (CI installs it)")
    return path


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

        promtool = promtool_or_skip()
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


async def test_sigterm_lets_a_running_level_finish(tmp_path, moto_url, aws_env, admin_api):
    ns = f"TERM{time.monotonic_ns()}"
    admin_api.delay["/admin/feature-flags/hybrid-routing"] = 2.0
    pub = Publisher(moto_url, ns)
    pub.start()
    d = await Daemon(render(tmp_path, moto_url, admin_api, ns, grace="10s")).start()
    try:
        await d.wait_for("action_started", timeout=30, level=1)
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        assert await d.wait(20) == 0
        took = time.monotonic() - t0
        # The level finished (its outcome is logged) before the process left.
        assert d.events("action_succeeded") and d.events("level_succeeded")
        assert not d.events("level_interrupted")
        assert took < 10, f"shutdown took {took:.1f}s"
    finally:
        await pub.stop()
        await d.stop()


async def test_sigterm_past_the_grace_records_the_level_as_interrupted(tmp_path, moto_url, aws_env, admin_api):
    ns = f"GRACE{time.monotonic_ns()}"
    admin_api.delay["/admin/feature-flags/hybrid-routing"] = 8.0
    pub = Publisher(moto_url, ns)
    pub.start()
    d = await Daemon(render(tmp_path, moto_url, admin_api, ns, grace="1s", deadline="30s")).start()
    try:
        await d.wait_for("action_started", timeout=30, level=1)
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        assert await d.wait(20) == 0
        took = time.monotonic() - t0
        assert d.events("level_interrupted")
        assert [ln["attempt"] for ln in d.events("action_unknown")] == [1]
        assert took < 6, f"shutdown took {took:.1f}s with a 1s grace"
    finally:
        await pub.stop()
        await d.stop()


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
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    d = await Daemon(render(tmp_path, dead, admin_api, "DEAD")).start()
    try:
        port = await d.port()
        for _ in range(3):
            await d.wait_for("source_poll_failed", timeout=20)
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
