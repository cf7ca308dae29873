"""/healthz, /readyz, /status and /metrics on an in-process App with an injected clock."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import pytest

from configs import CLOSED, http, hybrid_routing, level, parsed
from timing import FakeClock, until
from watchdog.lifecycle.app import App
from watchdog.config import Config



def config(aws: str, state: Path) -> Config:
    return parsed(hybrid_routing(state_path=state, aws_endpoint=aws, retry={"attempts": 1}, namespace="WEB",
                                 levels=[level(1, "flags", http(f"{CLOSED}/x", method=None), deadline="1m")]))


async def _get(port: int, path: str) -> tuple[int, object]:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}{path}") as r:
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, body


@pytest.mark.parametrize("reachable", [True, False])
async def test_health_readiness_and_status(moto_url, aws_env, reachable, tmp_path):
    clock = FakeClock(datetime.now(timezone.utc))
    cfg = config(moto_url if reachable else CLOSED, tmp_path / "w.db")
    app = await App.create(cfg, clock=clock)
    await app.start()
    try:
        port = app.bound_port
        assert port
        await until(lambda: app.runtime.board is not None and app.runtime.board.sources["cloudwatch"].last_poll is not None
                    and not app.runtime.polling, what="the first poll and its evaluation")
        status, body = await _get(port, "/readyz")
        assert status == (200 if reachable else 503)
        if not reachable:
            assert "cloudwatch" in body["why"]

        status, body = await _get(port, "/healthz")
        assert status == 200, body
        # No poll for longer than its deadline and two steps of its schedule: the scheduler stopped. Unhealthy.
        # The source's `interval` is 1h, but a CloudWatch source polls on its rules' periods (60s here), so its
        # step is 1m (docs/deciding.md "When it polls") and the limit 22s + 2 x 1m.
        clock.advance(hours=2, seconds=30)
        status, body = await _get(port, "/healthz")
        assert status == 503 and "source cloudwatch: no poll for 7230s (every 1m, each try within 22s)" in body["why"], body

        status, doc = await _get(port, "/status")
        assert status == 200
        assert doc["targets"][0]["name"] == "hybrid-routing" and doc["targets"][0]["level"] == 0
        assert doc["targets"][0]["phase"] == "normal" and doc["targets"][0]["paused"] is False
        rule = doc["rules"][0]
        assert (rule["rule"], rule["threshold"], rule["state"]) == ("latency", "> 1500", "insufficient_data")
        src = doc["sources"][0]
        assert src["up"] is reachable
        assert (src["last_error"] is None) is reachable

        status, text = await _get(port, "/metrics")
        assert status == 200
        assert f'watchdog_source_up{{source="cloudwatch"}} {1.0 if reachable else 0.0}' in text
        assert 'watchdog_build_info{version="' in text
        assert "watchdog_last_evaluation_timestamp_seconds " in text
    finally:
        await app.stop()
    # After stop the scheduler is gone: a supervisor would see it unhealthy.
    assert app.runtime.health()[0] is False


async def test_health_is_503_before_the_scheduler_runs(moto_url, aws_env, tmp_path):
    cfg = config(moto_url, tmp_path / "w.db")
    app = await App.create(cfg, clock=FakeClock(datetime.now(timezone.utc)), schedule=False)
    await app.start()
    try:
        status, body = await _get(app.bound_port, "/healthz")
        assert status == 503 and body["why"] == "scheduler not running"
        status, _ = await _get(app.bound_port, "/readyz")
        assert status == 503
    finally:
        await app.stop()
