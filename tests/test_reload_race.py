"""A reload is atomic against the operators' commands and the polls in flight (issue 19: 3).

Before, `apply_reload` checked for open incidents, then awaited the new sources' start and the old ones'
close before it swapped the executors, and nothing held the control API or a poll in between: a rollback
80 ms after a SIGHUP that removed its target got 202 and left an incident open for ever on a target /status
no longer listed, a poll in flight read from a source already closed (source_poll_failed), and its
evaluation asked for a removed target (evaluation_crashed KeyError).

The gate (watchdog/runtime/reloadgate.py) first, with orderings the test sets; then an in-process App whose
sources the test holds at chosen points (its start, its read); then the real daemon: a sweep of rollbacks
0-200 ms after the SIGHUP, and a burst of 20 reloads while polls run.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from configs import cloudwatch, http, hybrid_routing, level, make_target, metric_rule, parsed, write
from loopback import serving
from tests.daemon import Daemon, status
from timing import until

TOKEN = "race-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


# --- the gate, with the ordering set by the test ------------------------------------------------------


async def test_polls_and_commands_pass_together_and_the_swap_waits_for_both_then_runs_alone():
    from watchdog.runtime.reloadgate import ReloadGate

    gate, seen = ReloadGate(), []
    poll_may_end, command_may_end = asyncio.Event(), asyncio.Event()

    async def poll(name: str, hold: asyncio.Event | None = None) -> None:
        async with gate.polling():
            seen.append(f"{name} in")
            if hold is not None:
                await hold.wait()
            seen.append(f"{name} out")

    async def command(name: str, hold: asyncio.Event | None = None) -> None:
        with gate.commanding():
            seen.append(f"{name} in")
            if hold is not None:
                await hold.wait()
            seen.append(f"{name} out")

    first = asyncio.create_task(poll("poll1", poll_may_end))
    held = asyncio.create_task(command("cmd1", command_may_end))
    await until(lambda: gate.inside == 2, what="a poll and a command inside together")
    swap = asyncio.create_task(gate.alone(lambda: seen.append("swap") or "swapped", within=30))
    await until(lambda: gate.reloading, what="the reload at the gate")
    late_poll = asyncio.create_task(poll("poll2"))
    await command("cmd2")  # a command is never held: it runs at once, before the swap
    await asyncio.sleep(0.05)
    assert seen == ["poll1 in", "cmd1 in", "cmd2 in", "cmd2 out"]  # the new poll waits, the swap too
    poll_may_end.set()
    await first
    await asyncio.sleep(0.05)
    assert "swap" not in seen  # the command still inside holds it
    command_may_end.set()
    assert await swap == "swapped"
    await late_poll
    assert seen == ["poll1 in", "cmd1 in", "cmd2 in", "cmd2 out", "poll1 out", "cmd1 out", "swap",
                    "poll2 in", "poll2 out"]
    await held


async def test_a_swap_that_waits_past_its_bound_never_runs_and_the_gate_opens_again():
    from watchdog.runtime.reloadgate import ReloadGate

    gate, stuck = ReloadGate(), asyncio.Event()

    async def stuck_poll() -> None:
        async with gate.polling():
            await stuck.wait()

    task = asyncio.create_task(stuck_poll())
    await until(lambda: gate.inside == 1, what="the poll inside")
    swapped = []
    with pytest.raises(TimeoutError):
        await gate.alone(lambda: swapped.append(1), within=0.2)
    assert swapped == [] and not gate.reloading
    async with gate.polling():  # polls come in again at once
        pass
    task.cancel()  # a cancelled holder still leaves
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gate.inside == 0
    assert await gate.alone(lambda: "now", within=0.2) == "now"


async def test_two_reloads_swap_one_after_the_other():
    from watchdog.runtime.reloadgate import ReloadGate

    gate, order, hold = ReloadGate(), [], asyncio.Event()

    async def poll() -> None:
        async with gate.polling():
            await hold.wait()

    p = asyncio.create_task(poll())
    await until(lambda: gate.inside == 1, what="the poll inside")
    a = asyncio.create_task(gate.alone(lambda: order.append("a"), within=30))
    b = asyncio.create_task(gate.alone(lambda: order.append("b"), within=30))
    await asyncio.sleep(0.05)
    assert order == []
    hold.set()
    await asyncio.gather(a, b, p)
    assert order == ["a", "b"] and not gate.reloading


ACTOR = st.tuples(st.sampled_from(["poll", "command", "reload"]), st.integers(0, 6), st.integers(0, 6))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ACTOR, min_size=1, max_size=12))
def test_any_interleaving_swaps_only_with_nothing_inside_and_every_actor_finishes(actors):
    """Generated polls, commands and reloads, each starting after some loop steps and holding for some
    more: a swap never runs with a poll or a command inside, no poll enters between a reload closing the
    gate and its swap, reloads swap one at a time, and everyone gets through (no deadlock)."""
    from watchdog.runtime.reloadgate import ReloadGate

    async def play() -> None:
        gate, trace = ReloadGate(), []
        state = {"inside": 0, "closing": 0}

        async def steps(n: int) -> None:
            for _ in range(n):
                await asyncio.sleep(0)

        async def actor(kind: str, start: int, hold: int) -> None:
            await steps(start)
            if kind == "reload":
                def swap() -> None:
                    assert state["inside"] == 0, trace
                    trace.append("swap")

                state["closing"] += 1
                await gate.alone(swap, within=30)
                state["closing"] -= 1
                return
            if kind == "poll":
                async with gate.polling():
                    assert not gate.reloading, trace
                    state["inside"] += 1
                    trace.append("poll in")
                    await steps(hold)
                    state["inside"] -= 1
            else:
                with gate.commanding():
                    state["inside"] += 1
                    trace.append("command in")
                    await steps(hold)
                    state["inside"] -= 1

        await asyncio.wait_for(asyncio.gather(*(actor(*a) for a in actors)), 10)
        assert trace.count("swap") == sum(1 for a in actors if a[0] == "reload")
        assert gate.inside == 0 and not gate.reloading

    asyncio.run(play())


# --- an in-process App whose sources the test holds ----------------------------------------------


class Hold:
    """Where the test holds the sources: a start (`start_gate`), a read (`poll_gate`); what happened, in order."""

    def __init__(self) -> None:
        self.start_gate: asyncio.Event | None = None
        self.poll_gate: asyncio.Event | None = None
        self.starting, self.polling = asyncio.Event(), asyncio.Event()
        self.log: list[str] = []
        self.built: list[HeldSource] = []
        self._serial = itertools.count(1)

    def factory(self) -> Any:
        from watchdog.sources import build_source

        def build(cfg: Any, queries: Any, deps: Any) -> HeldSource:
            src = HeldSource(build_source(cfg, queries, deps), self, f"{cfg.name}#{next(self._serial)}")
            self.built.append(src)
            return src

        return build


class HeldSource:
    """A real source, held where the test says. A read after its close fails as a closed AWS client does."""

    def __init__(self, inner: Any, hold: Hold, label: str):
        self._inner, self._hold, self.label, self.closed = inner, hold, label, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def start(self) -> None:
        if self._hold.start_gate is not None:
            self._hold.starting.set()
            await self._hold.start_gate.wait()
        await self._inner.start()

    async def poll(self, now: datetime) -> Any:
        self._hold.log.append(f"{self.label} read")
        if self._hold.poll_gate is not None:
            self._hold.polling.set()
            await self._hold.poll_gate.wait()
        if self.closed:
            raise AttributeError("'NoneType' object has no attribute 'get_metric_data'")
        data = await self._inner.poll(now)
        self._hold.log.append(f"{self.label} answered")
        return data

    async def close(self) -> None:
        self.closed = True
        self._hold.log.append(f"{self.label} closed")
        await self._inner.close()


def field_rule(name: str = "gdpr") -> dict[str, Any]:
    return {"name": name, "category": "security", "source": "c", "field": "ok", "threshold": "== false"}


def targets_config(tmp_path: Path, source_url: str, admin: str, *names: str) -> Any:
    """Targets judged on one http_json source `c` that answers ok (nothing alarms); each target's level 1
    is a PUT to `admin`/NAME/l1."""
    targets = [make_target(n, [field_rule()], [level(1, "flags", http(f"{admin}/{n}/l1"))]) for n in names]
    return parsed(hybrid_routing(state_path=tmp_path / "w.db", api_token=TOKEN, aws_endpoint=None,
                                 targets=targets,
                                 sources=[{"name": "c", "type": "http_json", "url": f"{source_url}/c",
                                           "interval": "1h"}]))


@pytest.fixture
async def ok_source():
    async def ok(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    wa = web.Application()
    wa.router.add_get("/c", ok)
    async with serving(wa) as url:
        yield url


async def post(port: int, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"http://127.0.0.1:{port}{path}", json=body, headers=AUTH) as r:
            return r.status, await r.json()


async def started_app(tmp_path: Path, ok_source: str, admin: str, hold: Hold, *names: str) -> Any:
    from watchdog.lifecycle.app import App

    app = await App.create(targets_config(tmp_path, ok_source, admin, *names), schedule=False,
                           sources=hold.factory())
    await app.start()
    return app


async def test_a_rollback_while_the_new_sources_start_opens_its_incident_and_the_reload_is_refused(
        tmp_path, ok_source, admin_api):
    """The rollback lands between the reload's first look at the incidents and the swap (the old code
    checked only there, then removed the target under the incident it had just opened)."""
    from watchdog.runtime.reload import ReloadRefused

    hold = Hold()
    app = await started_app(tmp_path, ok_source, admin_api.url, hold, "web", "app")
    try:
        hold.start_gate = asyncio.Event()
        reload = asyncio.create_task(app.reload(targets_config(tmp_path, ok_source, admin_api.url, "web")))
        await until(hold.starting.is_set, what="the reload starting its new source")
        code, body = await post(app.bound_port, "/api/v1/targets/app/rollback", {"level": 1, "reason": "race"})
        assert code == 202
        hold.start_gate.set()
        with pytest.raises(ReloadRefused, match=f"target 'app' has open incident {body['incident']}"):
            await reload
        assert list(app.runtime.executors) == ["web", "app"]
        assert app.runtime.executors["app"].machine.incident.id == body["incident"]
        assert [t["name"] for t in app.runtime.status()["targets"]] == ["web", "app"]
        assert hold.built[-1].closed  # the source started for the refused config is closed again
        await until(lambda: admin_api.count("/app/l1") == 1, what="app's level 1 request")
    finally:
        await app.stop()


async def test_a_poll_in_flight_ends_on_its_own_source_which_closes_after_it_and_no_target_is_lost(
        tmp_path, ok_source, admin_api):
    """The reload removes target `app` while a poll of its source is reading: the reload waits at the gate,
    the poll answers from the source it started on and judges the targets it started with, and only then
    is that source closed; a poll that arrives meanwhile waits and reads from the new source."""
    hold = Hold()
    app = await started_app(tmp_path, ok_source, admin_api.url, hold, "web", "app")
    try:
        hold.poll_gate = asyncio.Event()
        with structlog.testing.capture_logs() as logs:
            first = asyncio.create_task(app.runtime.poll("c", app.runtime.clock.now()))
            await until(hold.polling.is_set, what="the poll reading")
            reload = asyncio.create_task(app.reload(targets_config(tmp_path, ok_source, admin_api.url, "web")))
            await until(lambda: app.runtime.gate.reloading, what="the reload waiting at the gate")
            second = asyncio.create_task(app.runtime.poll("c", app.runtime.clock.now()))
            # A command does not wait for the reload: pausing `web` answers while the poll still reads.
            code, _ = await post(app.bound_port, "/api/v1/pause", {"duration": "5m", "reason": "t", "target": "web"})
            assert code == 200 and not hold.poll_gate.is_set()
            await asyncio.sleep(0.1)
            assert not reload.done() and hold.log == ["c#1 read"]  # nothing swapped or closed under the read
            hold.poll_gate.set()
            assert await reload == []
            await asyncio.gather(first, second)
        assert hold.log == ["c#1 read", "c#1 answered", "c#1 closed", "c#2 read", "c#2 answered"]
        failures = [e for e in logs if e["event"] in ("source_poll_failed", "evaluation_crashed")]
        assert failures == []
        assert list(app.runtime.executors) == ["web"] and app.runtime.board.sources["c"].up
    finally:
        await app.stop()


async def test_a_rollback_while_the_reload_waits_for_a_poll_refuses_the_reload(tmp_path, ok_source, admin_api):
    """The command is not held at the gate: it opens its incident at once, and the reload, swapping only
    once the poll has ended, finds it and is refused; the level goes on."""
    from watchdog.runtime.reload import ReloadRefused

    hold = Hold()
    app = await started_app(tmp_path, ok_source, admin_api.url, hold, "web", "app")
    try:
        hold.poll_gate = asyncio.Event()
        poll = asyncio.create_task(app.runtime.poll("c", app.runtime.clock.now()))
        await until(hold.polling.is_set, what="the poll reading")
        reload = asyncio.create_task(app.reload(targets_config(tmp_path, ok_source, admin_api.url, "web")))
        await until(lambda: app.runtime.gate.reloading, what="the reload waiting at the gate")
        code, body = await post(app.bound_port, "/api/v1/targets/app/rollback", {"level": 1, "reason": "race"})
        assert code == 202
        hold.poll_gate.set()
        with pytest.raises(ReloadRefused, match="target 'app' has open incident"):
            await reload
        await poll
        assert app.runtime.executors["app"].machine.incident.id == body["incident"]
        assert not app.runtime.sources["c"].closed  # the old sources run on
        await until(lambda: admin_api.count("/app/l1") == 1, what="app's level 1 request")
    finally:
        await app.stop()


async def test_a_rollback_suspended_after_its_target_check_holds_the_swap_until_its_incident_is_open(
        tmp_path, ok_source, admin_api):
    """The rollback has found its target and waits (here for the target's executor lock, which the test
    holds) when the reload comes: the swap waits for it, so it opens its incident on a target still
    configured and the reload is refused. Without the hold across check and command, the reload would
    remove the target in between and the level would start on a target no longer configured."""
    from watchdog.runtime.reload import ReloadRefused

    hold = Hold()
    app = await started_app(tmp_path, ok_source, admin_api.url, hold, "web", "app")
    try:
        lock = app.runtime.executors["app"]._lock
        await lock.acquire()
        rollback = asyncio.create_task(post(app.bound_port, "/api/v1/targets/app/rollback",
                                            {"level": 1, "reason": "race"}))
        await until(lambda: app.runtime.gate.inside == 1, what="the rollback inside, waiting for the lock")
        reload = asyncio.create_task(app.reload(targets_config(tmp_path, ok_source, admin_api.url, "web")))
        await asyncio.sleep(0.2)
        assert not reload.done() and list(app.runtime.executors) == ["web", "app"]
        lock.release()
        code, body = await rollback
        assert code == 202
        with pytest.raises(ReloadRefused, match=f"target 'app' has open incident {body['incident']}"):
            await reload
        await until(lambda: admin_api.count("/app/l1") == 1, what="app's level 1 request")
    finally:
        await app.stop()


async def test_a_poll_that_outlasts_its_bound_refuses_the_reload_and_the_old_config_runs_on(
        tmp_path, ok_source, admin_api):
    from watchdog.runtime.reload import ReloadRefused

    hold = Hold()
    app = await started_app(tmp_path, ok_source, admin_api.url, hold, "web", "app")
    try:
        hold.poll_gate = asyncio.Event()
        poll = asyncio.create_task(app.runtime.poll("c", app.runtime.clock.now()))
        await until(hold.polling.is_set, what="the poll reading")
        app.runtime.drain_bound = lambda: 0.3  # as if the poll's deadline had passed
        with pytest.raises(ReloadRefused, match=r"a poll still ran 0.3s after the reload began waiting for it \(c\)"):
            await app.reload(targets_config(tmp_path, ok_source, admin_api.url, "web"))
        assert list(app.runtime.executors) == ["web", "app"] and not app.runtime.gate.reloading
        assert hold.built[-1].closed and not hold.built[0].closed
        hold.poll_gate.set()
        await poll
        assert hold.log[-1] == "c#1 answered"
    finally:
        await app.stop()


# --- the real daemon -------------------------------------------------------------------------


class Receiver:
    """The protected system's admin API: every request with its wall-clock arrival (the daemon's log
    times are wall clock too)."""

    def __init__(self) -> None:
        self.url = ""
        self.hits: list[tuple[str, float]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.hits.append((request.path, time.time()))
        return web.json_response({"ok": True})


@pytest.fixture
async def receiver():
    rec = Receiver()
    wa = web.Application()
    wa.router.add_route("*", "/{tail:.*}", rec.handle)
    async with serving(wa) as rec.url:
        yield rec


def logged_at(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["ts"]).timestamp()


async def new_line(d: Daemon, names: tuple[str, ...], after: int, timeout: float = 30.0) -> dict[str, Any]:
    """The first of `names` logged after the first `after` lines."""
    async def found() -> dict[str, Any] | None:
        return next((ln for ln in d.lines[after:] if ln.get("event") in names), None)

    return await until(found, timeout, f"one of {names} after line {after}")


@pytest.mark.slow
async def test_a_sweep_of_rollbacks_after_a_sighup_never_orphans_a_level(tmp_path, ok_source, receiver, moto_url,
                                                                         aws_env):
    """SIGHUP with a config without target `app`, then POST its rollback 0-200 ms later. Whichever comes
    first, never both: the rollback is 404 after a `reloaded` line (and no level request follows it), or it
    opened its incident and the reload is `reload_rejected`, `app` still listed with that open incident.
    A CloudWatch source (on moto) makes the reload's source start take as long as it does in production:
    that is the window the old code left open."""
    def config(*names: str) -> str:
        rules = [field_rule(), metric_rule(namespace="SWEEP", source="cw", threshold="> 1000000")]
        targets = [make_target(n, rules, [level(1, "flags", http(f"{receiver.url}/{n}/l1"))]) for n in names]
        return write(tmp_path, hybrid_routing(
            state_path=tmp_path / "w.db", api_token=TOKEN, aws_endpoint=moto_url, targets=targets,
            sources=[{"name": "c", "type": "http_json", "url": f"{ok_source}/c", "interval": "200ms"},
                     cloudwatch("cw", interval="1s", timeout="2s", retry={"attempts": 1})]))

    path = config("web", "app")
    d = await Daemon(path).start()
    outcomes = []
    try:
        port = await d.port()
        for offset in (0, 25, 50, 75, 100, 125, 150, 175, 200):
            if "app" not in [t["name"] for t in (await status(port))["targets"]]:  # put it back
                config("web", "app")
                mark = len(d.lines)
                d.signal(signal.SIGHUP)
                assert (await new_line(d, ("reloaded", "reload_rejected"), mark))["event"] == "reloaded"
            config("web")
            mark, hits = len(d.lines), len(receiver.hits)
            d.signal(signal.SIGHUP)
            await asyncio.sleep(offset / 1000)
            code, body = await post(port, "/api/v1/targets/app/rollback", {"level": 1, "reason": f"+{offset}ms"})
            outcome = await new_line(d, ("reloaded", "reload_rejected"), mark)
            doc = await status(port)
            listed = [t["name"] for t in doc["targets"]]
            async with aiohttp.ClientSession() as s:
                async with s.get(f"http://127.0.0.1:{port}/api/v1/incidents", headers=AUTH) as r:
                    incidents = (await r.json())["incidents"]
            open_app = [i for i in incidents if i["target"] == "app" and i.get("closed_at") is None]
            if outcome["event"] == "reloaded":
                assert code == 404, (offset, code, body)
                assert "app" not in listed and open_app == []
                await asyncio.sleep(0.5)  # a level started in the race would send its request by now
                after = [(p, t) for p, t in receiver.hits[hits:] if p == "/app/l1" and t >= logged_at(outcome)]
                assert after == [], (offset, after)
                outcomes.append("404")
            else:
                assert code == 202 and "has open incident" in outcome["why"], (offset, code, body, outcome)
                assert "app" in listed and [i["id"] for i in open_app] == [body["incident"]]
                await d.wait_for("level_succeeded", timeout=20, incident=body["incident"])
                code, _ = await post(port, f"/api/v1/incidents/{body['incident']}/resolve", {"note": "sweep"})
                assert code == 200
                outcomes.append("refused")
        d.signal(signal.SIGTERM)
        assert await d.wait(30) == 0
    finally:
        await d.stop()
    print("sweep outcomes by offset:", outcomes)
    # The reload won at least once (else the sweep proved only that an early rollback refuses it).
    assert "404" in outcomes, outcomes
    assert [e for e in d.lines if e.get("event") in ("evaluation_crashed", "source_poll_failed")] == []


@pytest.mark.slow
async def test_a_burst_of_20_reloads_while_polls_run_fails_no_poll_and_crashes_no_evaluation(
        tmp_path, moto_url, aws_env, receiver):
    """Reloads that each remove (or bring back) target `app` and the two sources it is judged on, while
    their polls are in flight: a CloudWatch answer held 150 ms by a proxy, an HTTP source answering in 100 ms,
    the HTTP source polled every 200 ms, the CloudWatch ones every second (their rules' 1 s period: a CloudWatch
    source polls on its rules' periods, issue 22) and at once after each reload. Before, a reload closed the CloudWatch client under a poll (AttributeError:
    'NoneType' ... get_metric_data) and a poll judged a target the reload had just removed (KeyError)."""
    from aws_proxy import Reply, running_proxy

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(0.1)
        return web.json_response({"ok": True})

    wa = web.Application()
    wa.router.add_get("/c", slow)
    async with running_proxy(moto_url) as proxy, serving(wa) as slow_url:
        proxy.script = [Reply(delay=0.15)]  # forwarded to moto after the delay

        def config(with_app: bool) -> str:
            web_target = make_target("web", [metric_rule(namespace="RACE", source="cw", threshold="> 1000000",
                                                         period="1s")],
                                     [level(1, "flags", http(f"{receiver.url}/web/l1"))])
            sources = [cloudwatch("cw", interval="200ms", timeout="2s", retry={"attempts": 1})]
            targets = [web_target]
            if with_app:
                sources += [cloudwatch("cw2", interval="200ms", timeout="2s", retry={"attempts": 1}),
                            {"name": "c", "type": "http_json", "url": f"{slow_url}/c", "interval": "200ms"}]
                targets.append(make_target("app", [metric_rule(namespace="RACE", source="cw2", threshold="> 1000000",
                                                               period="1s"),
                                                   field_rule()],
                                           [level(1, "flags", http(f"{receiver.url}/app/l1"))]))
            return write(tmp_path, hybrid_routing(state_path=tmp_path / "w.db", api_token=TOKEN,
                                                  aws_endpoint=proxy.url, sources=sources, targets=targets))

        d = await Daemon(config(True)).start()
        try:
            port = await d.port()
            await until(lambda: len(proxy.calls) >= 4, 20, "the CloudWatch polls running")
            reloads, took = 0, []
            for i in range(20):
                config(with_app=i % 2 == 1)
                mark = len(d.lines)
                await asyncio.sleep(0.05)
                sent = time.time()
                d.signal(signal.SIGHUP)
                done = await new_line(d, ("reloaded", "reload_rejected"), mark)
                assert done["event"] == "reloaded", done
                took.append(logged_at(done) - sent)
                reloads += 1
            took.sort()
            print(f"SIGHUP to reloaded: median {took[10] * 1000:.0f} ms, longest {took[-1] * 1000:.0f} ms")
            calls = len(proxy.calls)
            await until(lambda: len(proxy.calls) >= calls + 3, 20, "polls going on after the burst")
            async with aiohttp.ClientSession() as s:
                async with s.get(f"http://127.0.0.1:{port}/healthz") as r:
                    assert r.status == 200, await r.text()
            d.signal(signal.SIGTERM)
            assert await d.wait(30) == 0
        finally:
            await d.stop()
    assert reloads == 20
    bad = [e for e in d.lines if e.get("event") in ("source_poll_failed", "evaluation_crashed")]
    assert bad == [], bad[:3]
    assert receiver.hits == []  # nothing alarmed
