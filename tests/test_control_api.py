"""The control API on an in-process App: auth, pause (and its expiry), resume, rollback, resolve.

Datapoints are handed to the app's SignalBoard directly (the sources have their own
tests); everything else is real: the HTTP server, the admin API, the executor.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import aiohttp
import pytest

from configs import hybrid_routing, parsed
from timing import FakeClock, until
from watchdog.lifecycle.app import App
from watchdog.shared.events import Event

TOKEN = "s3cret-t0ken"


class Harness:
    def __init__(self, app: App, clock: FakeClock, events: list[Event]):
        self.app, self.clock, self.events = app, clock, events

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.app.bound_port}"

    async def call(self, method: str, path: str, body=None, token: str | None = TOKEN) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        async with aiohttp.ClientSession() as s:
            async with s.request(method, self.base + path, json=body, headers=headers) as r:
                return r.status, await r.json()

    async def breach(self) -> None:
        minute = self.clock.at.replace(second=0, microsecond=0)
        self.app.runtime.board.source_ok("cloudwatch", {"web/latency": [(minute - timedelta(minutes=1), 500.0)]}, self.clock.at)
        await self.app.runtime.evaluate("web", self.app.runtime.clock.now())

    async def settle(self) -> None:
        ex = self.app.runtime.executors["web"]
        await until(lambda: not ex.busy, what="the running level to finish")

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


@pytest.fixture
async def harness(admin_api, tmp_path):
    async def make(token: bool = True) -> Harness:
        clock, events = FakeClock(datetime(2026, 11, 28, 12, 0, 30, tzinfo=timezone.utc)), []
        cfg = parsed(hybrid_routing(state_path=tmp_path / f"state{len(made)}.db", api_token=TOKEN if token else None,
                                    target="web", threshold="> 100", verify_window="2m", admin=admin_api.url))
        app = await App.create(cfg, clock=clock, listeners=(lambda ev, dry: events.append(ev),), schedule=False)
        await app.start()
        made.append(app)
        return Harness(app, clock, events)

    made: list[App] = []
    yield make
    for app in made:
        await app.stop()


@pytest.mark.parametrize("path", ["/api/v1/pause", "/api/v1/resume", "/api/v1/targets/web/rollback",
                                  "/api/v1/incidents/x/resolve"])
async def test_control_needs_the_right_token(harness, path):
    h = await harness()
    assert (await h.call("POST", path, {}, token=None))[0] == 401
    assert (await h.call("POST", path, {}, token="wrong"))[0] == 401
    off = await harness(token=False)
    status, body = await off.call("POST", path, {}, token=TOKEN)
    assert status == 403 and "api_token" in body["error"]


async def test_a_paused_target_runs_nothing_and_says_so_until_the_pause_expires(harness, admin_api):
    h = await harness()
    status, body = await h.call("POST", "/api/v1/pause", {"target": "web", "duration": "30m", "reason": "freeze"})
    assert status == 200 and body["paused"] == "web"
    await h.breach()
    await h.settle()
    assert admin_api.calls == []
    would = [e for e in h.events if e.kind == "would_run"]
    assert len(would) == 1 and "would run level 1" in would[0].why and "freeze" in would[0].why
    status, doc = await h.call("GET", "/status", token=None)
    assert doc["targets"][0]["paused"] is True and doc["targets"][0]["pause"]["reason"] == "freeze"
    assert h.app.runtime.metrics.registry.get_sample_value(
        "watchdog_rollbacks_total", {"target": "web", "level": "1", "outcome": "skipped"}) == 1.0
    # The pause ends by itself: the next evaluation acts.
    h.clock.advance(minutes=31)
    await h.breach()
    await h.settle()
    assert admin_api.count("/l1") == 1
    assert "resumed" in h.kinds() and "level_started" in h.kinds()


async def test_global_pause_and_resume(harness, admin_api):
    h = await harness()
    assert (await h.call("POST", "/api/v1/pause", {"duration": "1h", "reason": "maintenance"}))[0] == 200
    assert h.app.runtime.metrics.registry.get_sample_value("watchdog_paused") == 1.0
    await h.breach()
    assert "would_run" in h.kinds() and admin_api.calls == []
    status, body = await h.call("POST", "/api/v1/resume", {"reason": "done"})
    assert status == 200 and body["was_paused"] is True
    await h.settle()
    assert admin_api.count("/l1") == 1  # resume re-evaluates at once
    assert h.app.runtime.metrics.registry.get_sample_value("watchdog_paused") == 0.0


async def test_manual_rollback_and_resolve(harness, admin_api):
    h = await harness()
    status, body = await h.call("POST", "/api/v1/targets/web/rollback", {"level": 2, "reason": "errors in logs"})
    assert status == 202 and body["level"] == 2
    await h.settle()
    assert admin_api.count("/l2") == 1 and admin_api.count("/l1") == 0
    incident = body["incident"]
    status, listed = await h.call("GET", "/api/v1/incidents")
    assert status == 200 and listed["incidents"][0]["id"] == incident
    status, one = await h.call("GET", f"/api/v1/incidents/{incident}")
    assert one["levels_run"][0]["reason"] == "manual rollback: errors in logs"
    status, body = await h.call("POST", f"/api/v1/incidents/{incident}/resolve", {"note": "fixed upstream"})
    assert status == 200
    status, doc = await h.call("GET", "/status", token=None)
    assert (doc["targets"][0]["phase"], doc["targets"][0]["level"]) == ("normal", 0)
    assert h.app.runtime.metrics.registry.get_sample_value("watchdog_target_level", {"target": "web"}) == 0.0


@pytest.mark.parametrize(
    "path, body, status, message",
    [
        ("/api/v1/pause", {"reason": "x"}, 400, "duration: required"),
        ("/api/v1/pause", {"duration": "soon", "reason": "x"}, 400, "duration: bad duration"),
        ("/api/v1/pause", {"duration": "5m"}, 400, "reason: required"),
        ("/api/v1/pause", {"duration": "5m", "reason": "x", "target": "nope"}, 404, "no target named 'nope'"),
        ("/api/v1/targets/web/rollback", {"level": 7, "reason": "x"}, 400, "level: must be 1..2 for target 'web'"),
        ("/api/v1/targets/web/rollback", {"level": 0, "reason": "x"}, 400, "level: must be 1..2 for target 'web'"),
        ("/api/v1/targets/web/rollback", {"level": -1, "reason": "x"}, 400, "level: must be 1..2 for target 'web'"),
        ("/api/v1/targets/web/rollback", {"level": 99, "reason": "x"}, 400, "level: must be 1..2 for target 'web'"),
        ("/api/v1/targets/web/rollback", {"level": 10**30, "reason": "x"}, 400, "level: must be 1..2 for target 'web'"),
        ("/api/v1/targets/web/rollback", {"level": "2", "reason": "x"}, 400, "level: required"),
        ("/api/v1/targets/nope/rollback", {"level": 1, "reason": "x"}, 404, "no target"),
        ("/api/v1/incidents/nope/resolve", {"note": "x"}, 404, "no open incident"),
        ("/api/v1/incidents/nope/resolve", {}, 400, "note: required"),
    ],
)
async def test_bad_input_gets_one_clear_line(harness, admin_api, path, body, status, message):
    h = await harness()
    got, answer = await h.call("POST", path, body)
    assert got == status and answer["error"].startswith(message)
    assert admin_api.calls == []


async def test_a_rollback_while_a_level_runs_is_409_and_a_missing_level_400(harness, admin_api):
    # 409 is "not now" (a level is running); a level the target does not have is bad input whatever runs.
    admin_api.delay["/l1"] = 1.0
    h = await harness()
    status, _ = await h.call("POST", "/api/v1/targets/web/rollback", {"level": 1, "reason": "first"})
    assert status == 202
    status, body = await h.call("POST", "/api/v1/targets/web/rollback", {"level": 2, "reason": "second"})
    assert status == 409 and "level 1 is running now" in body["error"]
    status, body = await h.call("POST", "/api/v1/targets/web/rollback", {"level": 3, "reason": "third"})
    assert status == 400 and body["error"] == "level: must be 1..2 for target 'web'"
    await h.settle()
    assert admin_api.count("/l1") == 1 and admin_api.count("/l2") == 0
