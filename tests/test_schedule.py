"""One schedule (watchdog/core/schedule.py) for the daemon and the replay: the ticks of a source, and the daemon
polling at the very ticks the replay computes (docs/deciding.md "When it polls": every `interval` from the start).

The live side runs the real App with its APScheduler scheduler and an injected clock that stands still at
T0 (tests/timing.py): APScheduler fires on the system clock, the polls must still be at T0, T0 + 200 ms, ...
on the injected one, which is what the recording (`watchdog.record`) says they were."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from configs import CLOSED, hybrid_routing, parsed
from timing import FakeClock, until
from watchdog.lifecycle.app import App
from watchdog.replay.engine import count_polls, schedule
from watchdog.core.schedule import catch_up, count, first_due, next_due, ticks

UTC = timezone.utc
T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)


@dataclass
class Every:
    interval: timedelta


def test_every_interval_from_the_start() -> None:
    s = Every(timedelta(seconds=30))
    assert first_due(s, T0) == T0
    assert next_due(s, T0) == T0 + timedelta(seconds=30)
    # 12:00:00 to 12:01:30, both ends included: 12:00:00, :30, 12:01:00, :30.
    assert list(ticks(s, T0, T0 + timedelta(seconds=90))) == [T0 + k * timedelta(seconds=30) for k in range(4)]
    assert count(s, T0, T0 + timedelta(seconds=90)) == 4
    assert count(s, T0, T0 + timedelta(seconds=89)) == 3
    assert count(s, T0, T0) == 1 and list(ticks(s, T0, T0)) == [T0]
    assert count(s, T0, T0 - MS) == 0 and list(ticks(s, T0, T0 - MS)) == []


def test_a_scheduler_run_stands_for_the_next_tick_or_the_newest_one_missed() -> None:
    s = Every(timedelta(seconds=10))
    assert catch_up(s, None, T0, T0) == T0  # the first run: the first tick
    assert catch_up(s, T0, T0, T0 + 3 * MS) == T0 + timedelta(seconds=10)  # on time (or early): the next
    # Runs at 12:00:10, :20 and :30 missed (a stalled loop), coalesced into one run at 12:00:45: it polls at
    # the newest tick that has come, 12:00:40, not at 12:00:10 and never at 12:00:45.
    assert catch_up(s, T0, T0, T0 + timedelta(seconds=45)) == T0 + timedelta(seconds=40)
    # Never a tick already polled, whatever the clock says.
    assert catch_up(s, T0 + timedelta(seconds=40), T0, T0) == T0 + timedelta(seconds=50)


def test_the_replay_polls_at_the_ticks_and_counts_them_without_making_them(tmp_path: Path) -> None:
    cfg = parsed(hybrid_routing(sources=[source("a", "200ms"), source("b", "300ms")], rules=[rule("a")]))
    end = T0 + timedelta(seconds=1)
    polls = list(schedule(cfg, T0, end, {}))
    # a: 0, 200, ..., 1000 ms (6); b: 0, 300, 600, 900 ms (4); in time order, a before b at the same time.
    a = [(T0 + k * 200 * MS, 0, "a") for k in range(6)]
    b = [(T0 + k * 300 * MS, 1, "b") for k in range(4)]
    assert polls == sorted(a + b)
    assert count_polls(cfg, T0, end, {}) == {"a": 6, "b": 4}
    # A recording's times win over the ticks.
    recorded = [T0 + 50 * MS, T0 + 700 * MS]
    assert [t for t, _, n in schedule(cfg, T0, end, {"b": recorded}) if n == "b"] == recorded


async def test_the_daemon_polls_at_the_ticks_the_replay_computes(tmp_path: Path) -> None:
    record = tmp_path / "polls.jsonl"
    cfg = parsed(hybrid_routing(state_path=tmp_path / "w.db", aws_endpoint=None, sources=[source("a", "200ms")],
                                rules=[rule("a")], watchdog={"record": str(record)}))
    clock = FakeClock(T0)  # stands still: only the schedule moves the ticks on
    app = await App.create(cfg, clock=clock, serve_http=False)
    await app.start()
    try:
        await until(lambda: len(recorded(record)) >= 5, timeout=20, what="five polls recorded")
        live = recorded(record)
        replayed = [t for t, _, _ in schedule(cfg, T0, live[-1], {})]
        assert live == replayed  # T0, T0 + 200 ms, ...: the replay's ticks, one for one

        # The scheduler falls behind (here: the clock jumps 10 s): its next run polls at the newest tick that
        # has come, which is one of the replay's ticks too, and then goes on from there.
        jumped = T0 + timedelta(seconds=10)
        clock.set(jumped + 50 * MS)
        await until(lambda: len([t for t in recorded(record) if t >= jumped]) >= 2, timeout=20,
                    what="two polls after the jump")
        after = [t for t in recorded(record) if t >= jumped][:2]
        assert after == [jumped, jumped + 200 * MS]
        assert set(recorded(record)) <= set(t for t, _, _ in schedule(cfg, T0, after[-1], {}))
    finally:
        await app.stop()


def recorded(path: Path) -> list[datetime]:
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
    return [datetime.fromisoformat(x["at"]) for x in lines]


def source(name: str, interval: str) -> dict[str, object]:
    # Nothing listens there: each poll fails at once, and is recorded with its tick all the same.
    return {"name": name, "type": "http_json", "url": f"{CLOSED}/{name}", "interval": interval, "timeout": "1s",
            "retry": {"attempts": 1}}


def rule(src: str) -> dict[str, object]:
    return {"name": "gdpr", "category": "security", "source": src, "field": "gdpr.compliant",
            "threshold": "== false"}


async def test_a_push_polls_the_alert_sources_with_its_own_time_as_the_tick(tmp_path: Path) -> None:
    """Alertmanager's webhook goes through the same entry as a scheduled poll (Runtime.poll(name, due)): the
    tick is the time of the push, read once from the runtime's clock."""
    import aiohttp

    record = tmp_path / "polls.jsonl"
    pushed_at = T0 + timedelta(minutes=7, milliseconds=321)
    cfg = parsed(hybrid_routing(
        state_path=tmp_path / "w.db", aws_endpoint=None, api_token="t0ken", watchdog={"record": str(record)},
        sources=[{"name": "am", "type": "alertmanager", "interval": "1h"}],
        rules=[{"name": "errors", "category": "performance", "source": "am", "alert": {"alertname": "High"}}]))
    app = await App.create(cfg, clock=FakeClock(pushed_at), schedule=False)  # only the push polls
    await app.start()
    try:
        payload = {"version": "4", "status": "firing", "alerts": [
            {"status": "firing", "labels": {"alertname": "High"}, "startsAt": pushed_at.isoformat(),
             "endsAt": "0001-01-01T00:00:00Z"}]}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{app.bound_port}/api/v1/alertmanager", json=payload,
                                 headers={"Authorization": "Bearer t0ken"}) as r:
                assert r.status == 200, await r.text()
        await until(lambda: recorded(record), timeout=10, what="the pushed poll recorded")
        assert recorded(record) == [pushed_at]
    finally:
        await app.stop()
