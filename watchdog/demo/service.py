"""A simulated hybrid-routing service: an admin API, a health probe, and a metric publisher.

Its latency reacts to the rollback actions: while a fault is injected in the
Bedrock path, turning the hybrid feature flags off does not help (the default
route still uses Bedrock); forcing all traffic to the MCP-only route does.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Say = Callable[[str], None]


@dataclass
class ServiceState:
    flags_enabled: bool = True
    routing_mode: str = "hybrid"
    fault: bool = False
    redeployed: bool = False
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    notifications: list[str] = field(default_factory=list)  # event kinds the watchdog's webhook delivered

    def latency_ms(self, rng: random.Random) -> float:
        if self.fault and self.routing_mode != "mcp_only" and not self.redeployed:
            return rng.uniform(2200, 2800)
        return rng.uniform(250, 400)

    def error_rate(self, rng: random.Random) -> float:
        if self.fault and self.routing_mode != "mcp_only" and not self.redeployed:
            return rng.uniform(4, 8)
        return rng.uniform(0.1, 0.6)


class HybridRoutingService:
    def __init__(self, state: ServiceState, say: Say):
        self.state = state
        self._say = say
        self._runner: web.AppRunner | None = None
        self.port = 0

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_put("/admin/feature-flags/hybrid-routing", self._flags)
        app.router.add_put("/admin/routing", self._routing)
        app.router.add_post("/admin/redeploy", self._redeploy)
        app.router.add_get("/health", self._health)
        app.router.add_get("/admin/state", self._get_state)
        app.router.add_post("/notify", self._notify)  # the demo's notification channel (a webhook)
        return app

    async def start(self) -> str:
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _flags(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.state.flags_enabled = bool(body.get("enabled"))
        self.state.calls.append(("PUT", request.path, body))
        self._say(f"service: hybrid-routing feature flags {'on' if self.state.flags_enabled else 'OFF'}")
        return web.json_response({"enabled": self.state.flags_enabled})

    async def _routing(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.state.routing_mode = str(body.get("mode"))
        self.state.calls.append(("PUT", request.path, body))
        self._say(f"service: routing mode -> {self.state.routing_mode}")
        return web.json_response({"mode": self.state.routing_mode})

    async def _redeploy(self, request: web.Request) -> web.Response:
        self.state.redeployed = True
        self.state.calls.append(("POST", request.path, None))
        self._say("service: redeployed the previous version")
        return web.json_response({"redeployed": True})

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _notify(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.state.notifications.append(str(body.get("event")))
        return web.json_response({"ok": True})

    async def _get_state(self, request: web.Request) -> web.Response:
        s = self.state
        return web.json_response({"flags_enabled": s.flags_enabled, "routing_mode": s.routing_mode, "fault": s.fault})


async def publish_metrics(client: Any, state: ServiceState, stop: asyncio.Event, every: float = 1.0,
                          on_sample: Callable[[float], None] | None = None, seed: int = 7) -> None:
    """Write Latency and ErrorRate every `every` seconds, as the real service's agent would."""
    rng = random.Random(seed)
    while not stop.is_set():
        latency, errors = state.latency_ms(rng), state.error_rate(rng)
        await client.put_metric_data(
            Namespace="HybridRouting",
            MetricData=[
                {"MetricName": "Latency", "Dimensions": [{"Name": "Service", "Value": "router"}],
                 "Value": latency, "Unit": "Milliseconds", "StorageResolution": 1},
                {"MetricName": "ErrorRate", "Dimensions": [{"Name": "Service", "Value": "router"}],
                 "Value": errors, "Unit": "Percent", "StorageResolution": 1},
            ],
        )
        if on_sample:
            on_sample(latency)
        try:
            await asyncio.wait_for(stop.wait(), every)
        except asyncio.TimeoutError:
            pass
