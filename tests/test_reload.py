"""SIGHUP on the real daemon: a broken config is rejected and the old one runs on;
a valid one takes effect without losing the open incident."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from configs import CLOSED, http, hybrid_routing, level, make_target, parsed, write
from tests.daemon import Daemon

pytestmark = pytest.mark.slow
TOKEN = "reload-t0ken"


def config(tmp_path: Path, admin: str, aws_endpoint: str = CLOSED, threshold: str = "> 1500",
           interval: str = "1h", **overrides: Any) -> dict[str, Any]:
    return hybrid_routing(**{**dict(state_path=tmp_path / "w.db", api_token=TOKEN, aws_endpoint=aws_endpoint,
                                    interval=interval, target="web", namespace="RELOAD", threshold=threshold,
                                    verify_window="10m", admin=admin), **overrides})


def http_json_config(tmp_path: Path, targets: list[dict[str, Any]], interval: str = "1h") -> dict[str, Any]:
    """Targets judged on an http_json source `c` nobody answers: nothing alarms."""
    return hybrid_routing(state_path=tmp_path / "w.db", aws_endpoint=None, targets=targets,
                          sources=[{"name": "c", "type": "http_json", "url": f"{CLOSED}/c", "interval": interval}])


def field_rule(name: str, category: str = "security", **extra: Any) -> dict[str, Any]:
    return {"name": name, "category": category, "source": "c", "field": "ok", "threshold": "== false", **extra}


async def test_sighup_rejects_a_broken_config_and_applies_a_valid_one(tmp_path, moto_url, aws_env, admin_api):
    def write_config(threshold: str, interval: str = "1s") -> str:
        return write(tmp_path, config(tmp_path, admin_api.url, moto_url, threshold, interval))

    d = await Daemon(write_config("> 1500")).start()
    try:
        port = await d.port()
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{base}/api/v1/targets/web/rollback", json={"level": 1, "reason": "t"}, headers=auth) as r:
                assert r.status == 202
                incident = (await r.json())["incident"]
            await d.wait_for("level_succeeded", timeout=10)

            write_config("> 1500", interval="soon")
            d.signal(signal.SIGHUP)
            rejected = await d.wait_for("reload_rejected", timeout=10)
            assert any("sources[0].interval: bad duration 'soon'" in p for p in rejected["problems"])
            async with s.get(f"{base}/status") as r:
                doc = await r.json()
            assert doc["rules"][0]["threshold"] == "> 1500"

            write_config("> 999")
            d.signal(signal.SIGHUP)
            await d.wait_for("reloaded", timeout=10)
            async with s.get(f"{base}/status") as r:
                doc = await r.json()
            assert doc["rules"][0]["threshold"] == "> 999"
            target = doc["targets"][0]
            assert target["incident"]["id"] == incident and target["level"] == 1
            assert target["phase"] == "verifying"
            async with s.get(f"{base}/healthz") as r:
                assert r.status == 200  # polling goes on after the reload
        d.signal(signal.SIGTERM)
        assert await d.wait(20) == 0
    finally:
        await d.stop()
    assert admin_api.count("/l1") == 1 and admin_api.count("/l2") == 0


async def test_reload_refuses_to_drop_a_target_with_an_open_incident(tmp_path, admin_api):
    from watchdog.lifecycle.app import App
    from watchdog.runtime.reload import ReloadRefused

    def cfg(target: str):
        return parsed(config(tmp_path, admin_api.url, threshold="> 1", target=target))

    app = await App.create(cfg("web"), schedule=False)
    await app.start()
    try:
        await app.runtime.manual_rollback("web", 1, "t")
        with pytest.raises(ReloadRefused, match="open incident"):
            await app.reload(cfg("api"))
        assert list(app.runtime.executors) == ["web"] and app.runtime.executors["web"].machine.incident is not None
        notes = await app.reload(cfg("web").model_copy(update={}))
        assert notes == [] and app.runtime.executors["web"].machine.level == 1
    finally:
        await app.stop()


async def test_a_source_that_cannot_start_refuses_the_reload_and_the_old_sources_run_on(tmp_path, admin_api):
    from watchdog.lifecycle.app import App
    from watchdog.runtime.reload import ReloadRefused

    app = await App.create(parsed(config(tmp_path, admin_api.url, threshold="> 1")), schedule=False)
    await app.start()
    try:
        before = dict(app.runtime.sources)
        broken = parsed(config(tmp_path, admin_api.url, threshold="> 1", aws={"profile": "no-such-profile"}))
        with pytest.raises(ReloadRefused, match="source cloudwatch cannot start: ProfileNotFound"):
            await app.reload(broken)
        assert app.runtime.sources == before and app.runtime.cfg.aws.profile is None  # the old config runs on
        await app.runtime.poll("cloudwatch", app.runtime.clock.now())  # and still polls (its endpoint is down: a failed poll, no KeyError)
        assert app.runtime.board.sources["cloudwatch"].last_error
    finally:
        await app.stop()


async def test_a_new_source_interval_gives_its_sampled_rules_the_new_period(tmp_path, admin_api):
    from datetime import timedelta

    from watchdog.lifecycle.app import App

    def cfg(interval: str):
        flags = [level(1, "flags", http(f"{admin_api.url}/l1"))]
        web = make_target("web", [field_rule("gdpr", evaluation_periods=3)], flags)
        return parsed(http_json_config(tmp_path, [web], interval))

    app = await App.create(cfg("30s"), schedule=False)
    await app.start()
    try:
        assert app.runtime.board.slots["web/gdpr"].spec.period == timedelta(seconds=30)
        await app.reload(cfg("5m"))
        assert app.runtime.board.slots["web/gdpr"].spec.period == timedelta(minutes=5)
    finally:
        await app.stop()


async def test_reload_drops_the_series_of_removed_rules_and_targets(tmp_path, admin_api):
    """A rule or target the new config no longer has leaves /metrics (it would report its last state forever);
    a new one appears as insufficient_data; a rule that changed category is exported under the new one only."""
    from watchdog.lifecycle.app import App

    def cfg(*targets: tuple[str, list[dict[str, Any]]]):
        flags = [level(1, "flags", http(f"{admin_api.url}/l1"))]
        return parsed(http_json_config(tmp_path, [make_target(n, rs, flags) for n, rs in targets]))

    def series(app: App) -> set[tuple[str, ...]]:
        out = set()
        for family in app.runtime.metrics.registry.collect():
            for s in family.samples:
                if s.name in ("watchdog_rule_state", "watchdog_target_level", "watchdog_incidents_open"):
                    out.add((s.name, *sorted(s.labels.items())))
        return out

    app = await App.create(cfg(("web", [field_rule("gdpr"), field_rule("leak")]), ("api", [field_rule("cost", "cost")])),
                           schedule=False)
    await app.start()
    try:
        now = app.runtime.clock.now()
        app.runtime.board.source_ok("c", {"web/leak": [(now, False)]}, now)  # the leak breaches ("== false")
        app.runtime.board.evaluate("web", now)
        assert app.runtime.metrics.registry.get_sample_value(
            "watchdog_rule_state", {"target": "web", "rule": "leak", "category": "security"}) == 1
        assert app.runtime.metrics.registry.get_sample_value("watchdog_rule_value", {"target": "web", "rule": "leak"}) == 0.0
        await app.reload(cfg(("web", [field_rule("gdpr"), field_rule("fresh"), field_rule("cost2", "cost")]),
                             ("new", [field_rule("cost", "performance")])))
        got = series(app)
        names = {(s[0], dict(s[1:]).get("target"), dict(s[1:]).get("rule"), dict(s[1:]).get("category")) for s in got}
        assert names == {
            ("watchdog_rule_state", "web", "gdpr", "security"), ("watchdog_rule_state", "web", "fresh", "security"),
            ("watchdog_rule_state", "web", "cost2", "cost"), ("watchdog_rule_state", "new", "cost", "performance"),
            ("watchdog_target_level", "web", None, None), ("watchdog_target_level", "new", None, None),
            ("watchdog_incidents_open", "web", None, None), ("watchdog_incidents_open", "new", None, None),
        }
        assert app.runtime.metrics.registry.get_sample_value("watchdog_rule_state", {"target": "web", "rule": "fresh",
                                                                             "category": "security"}) == 2
        assert app.runtime.metrics.registry.get_sample_value("watchdog_rule_value", {"target": "web", "rule": "leak"}) is None
    finally:
        await app.stop()


async def test_a_reload_keeps_an_answering_source_up_in_the_metrics(tmp_path, admin_api):
    """watchdog_source_up follows the source's health across a reload: an unchanged source that answers stays 1
    (a reload used to set it to 0 until the next poll, a false "source down" for any scrape in between)."""
    from aiohttp import web

    from loopback import serving_get
    from watchdog.lifecycle.app import App

    async def ok(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async with serving_get("/c", ok) as url:
        def cfg(threshold: str) -> Any:
            flags = [level(1, "flags", http(f"{admin_api.url}/l1"))]
            web_target = make_target("web", [field_rule("gdpr", threshold=threshold)], flags)
            return parsed(hybrid_routing(state_path=tmp_path / "w.db", aws_endpoint=None, targets=[web_target],
                                         sources=[{"name": "c", "type": "http_json", "url": f"{url}/c",
                                                   "interval": "1h"}]))

        app = await App.create(cfg("== false"), schedule=False)
        await app.start()
        try:
            up = lambda: app.runtime.metrics.registry.get_sample_value("watchdog_source_up", {"source": "c"})  # noqa: E731
            assert up() == 0.0  # not polled yet
            await app.runtime.poll("c", app.runtime.clock.now())
            assert up() == 1.0
            await app.reload(cfg("!= true"))
            assert up() == 1.0 and app.runtime.board.sources["c"].up
        finally:
            await app.stop()


async def test_the_pause_of_a_target_a_reload_removed_ends_without_an_error(tmp_path, admin_api):
    """A target paused, then removed by a reload: its pause is dropped, as at start (it could not be resumed by
    name, and its expiry raised KeyError in the expiry job), and the other target's pause runs on and ends."""
    from datetime import timedelta

    from watchdog.lifecycle.app import App

    def cfg(*names: str):
        flags = [level(1, "flags", http(f"{admin_api.url}/l1"))]
        return parsed(http_json_config(tmp_path, [make_target(n, [field_rule("gdpr")], flags) for n in names]))

    app = await App.create(cfg("web", "api"), schedule=False)
    await app.start()
    try:
        await app.runtime.pause("api", timedelta(minutes=5), "maintenance")
        await app.runtime.pause("web", timedelta(minutes=5), "maintenance")
        await app.reload(cfg("web"))
        assert [p.scope for p in app.runtime.pausing.pauses.all(app.runtime.clock.now())] == ["web"]
        await app.runtime.journal.flush()
        assert [p.scope for p in app.runtime.journal.pauses()[0]] == ["web"]  # dropped from the store too
        app.runtime.pausing.expire(app.runtime.clock.now() + timedelta(minutes=6))  # web's pause runs out
        assert app.runtime.pausing.pauses.all(app.runtime.clock.now()) == []
    finally:
        await app.stop()


async def test_a_rule_kept_through_a_reload_is_judged_on_its_own_grid(tmp_path, admin_api):
    """A reload puts a rule of another shape (N = 1) before an unchanged one (N = M = 5) on the same source. The
    unchanged rule's slot goes on in the new board, and it is still judged on its own N + 2 buckets: five
    breaching readings alarm it. (Rules judged at one time share their edges by their shape; a shape numbered per
    board once let a kept slot carry the old board's number and take the N = 1 rule's three buckets: it could
    never alarm.)"""
    from datetime import timedelta

    from watchdog.core.rules import RuleState
    from watchdog.lifecycle.app import App

    def cfg(*rules: dict[str, Any]):
        flags = [level(1, "flags", http(f"{admin_api.url}/l1"))]
        return parsed(http_json_config(tmp_path, [make_target("web", list(rules), flags)], interval="30s"))

    lat = field_rule("lat", field="p99", threshold="> 100", evaluation_periods=5, datapoints_to_alarm=5)
    errs = field_rule("errs", field="errors", threshold="> 1", evaluation_periods=1)
    app = await App.create(cfg(lat), schedule=False)
    await app.start()
    try:
        await app.reload(cfg(errs, lat))
        board = app.runtime.board
        now = app.runtime.clock.now()
        board.source_ok("c", {"web/lat": [(now - timedelta(seconds=30 * k), 250.0) for k in range(9, -1, -1)]}, now)
        views = board.evaluate("web", now)
        assert len(views["errs"].evaluation.buckets) == 3  # N + 2, N = 1
        assert len(views["lat"].evaluation.buckets) == 7  # N + 2, N = 5
        assert views["lat"].evaluation.state is RuleState.ALARM, views["lat"].evaluation.reason
    finally:
        await app.stop()
