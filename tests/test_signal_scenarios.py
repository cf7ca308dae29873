"""Every signal category driving the real daemon: error-rate ratio, GDPR, Alertmanager, a flapping
compliance endpoint that must never act, and blindness after `blind_after`.

Prometheus, Security Hub and cost scenarios live with their sources' tests.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import aiohttp
import boto3
import pytest
from aiohttp import web

from aws_proxy import running_proxy
from configs import CLOSED, cloudwatch, http, hybrid_routing, level, write
from loopback import serving_get
from tests.daemon import Daemon, polled, status
from timing import until

pytestmark = pytest.mark.slow
FLAGS, ROUTING = "/admin/feature-flags/hybrid-routing", "/admin/routing"
TOKEN = "am-t0ken-3c1d"


def render(tmp_path: Any, admin: Any, sources: list[dict[str, Any]], rules: list[dict[str, Any]],
           aws: str = CLOSED) -> str:
    levels = [level(1, "feature-flags", http(f"{admin.url}{FLAGS}", retry={"attempts": 1}), deadline="5s"),
              level(2, "traffic-routing", http(f"{admin.url}{ROUTING}", retry={"attempts": 1}), deadline="5s")]
    return write(tmp_path, hybrid_routing(state_path=tmp_path / "watchdog.db", api_token=TOKEN, aws_endpoint=aws,
                                          sources=sources, rules=rules, verify_window="30s",
                                          max_rollbacks_per_hour=10, levels=levels))


async def rule_state(port: int, state: str) -> bool:
    return (await status(port))["rules"][0]["state"] == state


class Compliance:
    """The system's compliance endpoint; `mode` is what it answers now."""

    def __init__(self) -> None:
        self.mode = "compliant"
        self.url = ""
        self.hits = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.mode == "compliant":
            return web.json_response({"gdpr": {"compliant": True}})
        if self.mode == "violation":
            return web.json_response({"gdpr": {"compliant": False}})
        if self.mode == "invalid":
            return web.Response(text="{not json", content_type="application/json")
        if self.mode == "missing":
            return web.json_response({"gdpr": {}})
        if self.mode == "hang":
            await asyncio.sleep(5)
        return web.Response(status=500, text="boom")


@pytest.fixture
async def compliance() -> AsyncIterator[Compliance]:
    c = Compliance()
    async with serving_get("/compliance", c.handle, shutdown_timeout=0.5) as url:
        c.url = f"{url}/compliance"
        yield c


def gdpr_source(url: str, blind_after: str) -> dict[str, Any]:
    return {"name": "compliance", "type": "http_json", "url": url, "interval": "300ms", "timeout": "200ms",
            "blind_after": blind_after, "retry": {"attempts": 1}}


GDPR_RULE = {"name": "gdpr", "category": "security", "source": "compliance", "field": "gdpr.compliant",
             "threshold": "== false", "evaluation_periods": 2, "datapoints_to_alarm": 2, "level": 2}


async def test_a_gdpr_violation_starts_at_level_2(tmp_path, admin_api, compliance) -> None:
    path = render(tmp_path, admin_api, [gdpr_source(compliance.url, "1m")], [GDPR_RULE])
    d = await Daemon(path).start()
    try:
        port = await d.port()
        # Compliant: five polls answered, the rule judged ok on them, and nothing happens.
        doc = await polled(port, 5)
        assert compliance.hits >= 5 and doc["rules"][0]["state"] == "ok", doc["rules"]
        assert admin_api.calls == []
        compliance.mode = "violation"
        opened = await d.wait_for("incident_opened", timeout=10)
        assert opened["level"] == 2 and "gdpr = false" in opened["why"]
        await d.wait_for("level_succeeded", timeout=10, level=2)
        d.signal(signal.SIGTERM)
        assert await d.wait(20) == 0
    finally:
        await d.stop()
    assert admin_api.count(ROUTING) == 1 and admin_api.count(FLAGS) == 0  # level 2 directly, not 1 first


async def test_a_flapping_compliance_endpoint_never_acts_and_blinds_after_blind_after(tmp_path, admin_api,
                                                                                     compliance) -> None:
    path = render(tmp_path, admin_api, [gdpr_source(compliance.url, "2s")], [GDPR_RULE])
    d = await Daemon(path).start()
    try:
        base = f"http://127.0.0.1:{await d.port()}"
        for mode in ["invalid", "hang", "500", "missing"] * 2:  # garbage for 4.8 s: never a breach
            compliance.mode = mode
            hits = compliance.hits
            await asyncio.sleep(0.6)
            assert compliance.hits > hits, f"no poll while the endpoint answered {mode}"
        blind = await d.wait_for("blind", timeout=5)
        assert blind["severity"] == "critical" and "source compliance down since" in blind["why"]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/status") as r:
                status = await r.json()
            async with http.get(f"{base}/metrics") as r:
                metrics = await r.text()
        [target] = status["targets"]
        assert target["blind"] is True and target["blind_sources"][0]["source"] == "compliance"
        assert 'watchdog_target_blind{target="hybrid-routing"} 1.0' in metrics
        [rule] = status["rules"]
        assert rule["state"] == "insufficient_data"
        compliance.mode = "compliant"
        await d.wait_for("sight_restored", timeout=5)
        d.signal(signal.SIGTERM)
        assert await d.wait(20) == 0
    finally:
        await d.stop()
    assert admin_api.calls == []
    assert d.events("incident_opened") == [] and len(d.events("blind")) == 1


async def test_an_alertmanager_alert_acts_at_once_and_its_resolve_is_seen(tmp_path, admin_api) -> None:
    sources = [{"name": "am", "type": "alertmanager", "interval": "30s"}]
    rules = [{"name": "errors-alert", "category": "performance", "source": "am",
              "alert": {"alertname": "HighErrorRate", "service": "router"}, "level": 1}]
    d = await Daemon(render(tmp_path, admin_api, sources, rules)).start()
    try:
        await d.wait_for("started", timeout=20)
        url = f"http://127.0.0.1:{await d.port()}/api/v1/alertmanager"
        payload = {
            "version": "4", "groupKey": "{}:{alertname=\"HighErrorRate\"}", "truncatedAlerts": 0, "status": "firing",
            "receiver": "rollback-watchdog", "groupLabels": {"alertname": "HighErrorRate"},
            "commonLabels": {"alertname": "HighErrorRate"}, "commonAnnotations": {}, "externalURL": "http://am:9093",
            "alerts": [{"status": "firing", "labels": {"alertname": "HighErrorRate", "service": "router", "severity": "page"},
                        "annotations": {"summary": "5xx over 10%"}, "startsAt": datetime.now(timezone.utc).isoformat(),
                        "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom/graph", "fingerprint": "a1b2c3"}],
        }
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json=payload) as r:
                assert r.status == 401  # the control API's token guards it
            async with http.post(url, json={"version": "3"}, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 400 and "version" in (await r.json())["error"]
            started = time.monotonic()
            async with http.post(url, json=payload, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 200 and (await r.json()) == {"received": 1}
            await d.wait_for("level_started", timeout=10, level=1)
            assert time.monotonic() - started < 10  # acted on the push, not at the 30 s interval
        d.signal(signal.SIGTERM)
        assert await d.wait(20) == 0
    finally:
        await d.stop()
    assert admin_api.count(FLAGS) == 1


async def test_an_error_rate_over_10_percent_rolls_back(tmp_path, admin_api, moto_url, aws_env) -> None:
    ns = f"RATIOD{time.monotonic_ns()}"
    async with running_proxy(moto_url) as proxy:
        proxy.emulate_math = True
        sources = [cloudwatch("cw", interval="500ms", timeout="2s")]

        def metric(name: str) -> dict[str, Any]:
            return {"namespace": ns, "name": name, "dimensions": {"Service": "router"}, "stat": "Sum", "period": "1s"}

        rules = [{"name": "error_rate", "category": "performance", "source": "cw", "threshold": "> 10",
                  "expression": "100 * errors / requests",
                  "metrics": {"errors": metric("Errors"), "requests": metric("Requests")},
                  "min_samples": 10, "samples": "requests", "evaluation_periods": 3, "datapoints_to_alarm": 2,
                  "level": 1}]
        cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=moto_url)
        rate = {"errors": 2.0}

        async def publish() -> None:
            while True:
                now = datetime.now(timezone.utc)
                dims = [{"Name": "Service", "Value": "router"}]
                await asyncio.to_thread(cw.put_metric_data, Namespace=ns, MetricData=[
                    {"MetricName": "Errors", "Dimensions": dims, "Value": rate["errors"], "Timestamp": now, "StorageResolution": 1},
                    {"MetricName": "Requests", "Dimensions": dims, "Value": 100.0, "Timestamp": now, "StorageResolution": 1}])
                await asyncio.sleep(0.2)

        pub = asyncio.create_task(publish())
        d = await Daemon(render(tmp_path, admin_api, sources, rules, aws=proxy.url)).start()
        try:
            port = await d.port()
            # 2% errors: judged ok, and three polls on still nothing has happened.
            await until(lambda: rule_state(port, "ok"), 20, "the error rate judged ok")
            await polled(port, 3)
            assert await rule_state(port, "ok") and admin_api.calls == []
            rate["errors"] = 25.0
            opened = await d.wait_for("incident_opened", timeout=15)
            assert "error_rate" in opened["why"]
            await d.wait_for("level_started", timeout=5, level=1)
            d.signal(signal.SIGTERM)
            assert await d.wait(20) == 0
        finally:
            pub.cancel()
            await d.stop()
        assert any(q.get("MetricDataQueries.member.3.Expression") for q in proxy.calls)
    assert admin_api.count(FLAGS) == 1
