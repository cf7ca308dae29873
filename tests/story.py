"""The story the daemon tests play (SPEC 3.6): the router's latency breaches; level 1 (feature flags off)
does not cure it, level 2 (all traffic to the MCP-only route) does; level 3 (a redeploy) must not run.

`Publisher` writes the latency into moto; `config` is the watchdog's side, tuned to be quick: a poll every
500 ms, 1 s periods, 2 of 3 breaching to alarm, a 3 s verify window.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3

from configs import health_check, http, hybrid_routing, level, write

FLAGS, ROUTING, REDEPLOY = "/admin/feature-flags/hybrid-routing", "/admin/routing", "/admin/redeploy"
QUICK_RETRY = {"attempts": 2, "initial_backoff": "50ms", "max_backoff": "200ms"}


def dimensions(ns: str) -> dict[str, str]:
    """The router's dimensions, its own in each test: moto (5.2) drops the namespace from a GetMetricData
    query with dimensions, so datums of the same name and dimensions in two tests' namespaces would share
    a bucket (a previous test's seeded healthy tail once averaged a breach down to 1350 ms)."""
    return {"Service": f"router-{ns}"}  # one dimension: moto matches several only in the order they were put


def levels(admin: str, deadline: str = "5s", *, idempotent: bool = False, checks: bool = True,
           redeploy: bool = True) -> list[dict[str, Any]]:
    flags = http(f"{admin}{FLAGS}", json={"enabled": False}, timeout="5s", retry={"attempts": 1},
                 **({"idempotent": True} if idempotent else {}))
    health = [health_check(admin)] if checks else None
    out = [level(1, "feature-flags", flags, deadline=deadline, checks=health),
           level(2, "traffic-routing", http(f"{admin}{ROUTING}", json={"mode": "mcp_only"}), deadline="5s",
                 checks=health)]
    if redeploy:
        out.append(level(3, "full-system", http(f"{admin}{REDEPLOY}", method="POST"), deadline="5s"))
    return out


def config(tmp_path: Path, aws: str, admin: str, ns: str, *, grace: str = "10s", deadline: str = "5s",
           idempotent: bool = False, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = dict(
        state_path=tmp_path / "watchdog.db", shutdown_grace=grace, aws_endpoint=aws,
        interval="500ms", timeout="2s", retry=QUICK_RETRY,
        namespace=ns, dimensions=dimensions(ns), period="1s",
        rule={"datapoints_to_alarm": 2, "evaluation_periods": 3, "level": 1},
        verify_window="3s", max_rollbacks_per_hour=10, levels=levels(admin, deadline, idempotent=idempotent))
    return hybrid_routing(**{**settings, **overrides})


def render(tmp_path: Path, aws: str, admin: Any, ns: str, **overrides: Any) -> str:
    """The story's config file in tmp_path (`admin`: the admin API fixture); its path."""
    return write(tmp_path, config(tmp_path, aws, admin.url, ns, **overrides))


class Publisher:
    """Writes the service's latency into moto every 200ms; `healthy` flips what it writes."""

    def __init__(self, moto_url: str, ns: str):
        self.cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=moto_url)
        self.ns = ns
        self.dimensions = [{"Name": k, "Value": v} for k, v in dimensions(ns).items()]
        self.healthy = False
        self._task: asyncio.Task[None] | None = None

    def put(self, value: float) -> None:
        self.cw.put_metric_data(
            Namespace=self.ns,
            MetricData=[{"MetricName": "Latency", "Dimensions": self.dimensions,
                         "Value": value, "Timestamp": datetime.now(timezone.utc), "StorageResolution": 1}],
        )

    async def run(self, heal_when: Callable[[], bool] | None = None) -> None:
        while True:
            if heal_when is not None and heal_when():
                self.healthy = True
            await asyncio.to_thread(self.put, 200.0 if self.healthy else 2500.0)
            await asyncio.sleep(0.2)

    def start(self, heal_when: Callable[[], bool] | None = None) -> None:
        self._task = asyncio.create_task(self.run(heal_when))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
