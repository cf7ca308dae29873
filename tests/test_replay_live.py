"""Replay and `run` are one runtime: the daemon runs live against moto with `--record`, then `replay`
over the same span, with that recording and moto's history, decides the same: the same incident, the
same levels in the same order, at the same polls: the replay runs at the recorded poll times and judges
when the recorded read was over, so the times agree to a few milliseconds (the live level's own work).

One difference is by design (SPEC 4.4: replayed actions succeed at once): a live level's actions take
what they take, a replayed level's 1 ms, so the replayed verification falls due that much earlier. When a
poll lies between the two due times (a live action slowed down by a loaded machine), the replay verifies
at that poll, and `assert_same_levels` expects exactly that poll."""

from __future__ import annotations

import asyncio
import io
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest

from configs import parsed
from story import FLAGS, dimensions
from story import config as story_config
from timing import until
from watchdog.lifecycle.app import App
from watchdog.state.codec import decode_incident
from watchdog.core.escalation import Incident, Phase
from watchdog.shared.events import Event
from watchdog.replay.command import Options, run_replay

UTC = timezone.utc
SECOND = timedelta(seconds=1)
POLL = timedelta(milliseconds=100)  # a fifth of the story's interval


def seed(moto_url: str, ns: str, start: datetime, plan: list[tuple[int, float]]) -> None:
    """The whole trace in moto before the daemon starts (datapoints in the future are not returned until
    their time comes), so the live polls and the history later see the same datums: one per 1 s bucket."""
    cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=moto_url)
    data, k, dims = [], 0, dimensions(ns)
    for seconds, value in plan:
        for _ in range(seconds):
            data.append({"MetricName": "Latency", "Dimensions": [{"Name": n, "Value": v} for n, v in dims.items()],
                         "Value": value, "Timestamp": start + k * SECOND + timedelta(milliseconds=300),
                         "StorageResolution": 1})
            k += 1
    cw.put_metric_data(Namespace=ns, MetricData=data)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def read_ends(record: Path, source: str) -> list[datetime]:
    """When each recorded read of `source` was over: the times the daemon and the replay judge at."""
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    return sorted(_at(x["at"]) + timedelta(seconds=x["took"]) for x in lines if x["source"] == source)


def assert_same_levels(inc: Incident, got: dict[str, Any], reads: list[datetime], verify_window: timedelta) -> None:
    """The replayed levels are the live ones, each started at the poll the live one started at, or, where the
    live actions before it took long enough for a poll to fall between the two verifications' due times,
    at the first poll after the replay's own due time."""
    assert [r["level"] for r in got["levels"]] == [run.level for run in inc.runs]
    assert got["end"] == inc.phase.value
    assert abs(_at(got["opened"]) - inc.opened_at) < POLL
    for k, (run, again) in enumerate(zip(inc.runs, got["levels"])):
        expected = run.started
        if k > 0:
            previous = inc.runs[k - 1]
            assert previous.finished is not None
            due, live_due = _at(got["levels"][k - 1]["finished"]) + verify_window, previous.finished + verify_window
            if any(due <= r < live_due for r in reads):
                expected = next(r for r in reads if r >= due)
        assert abs(_at(again["started"]) - expected) < POLL, (run, again, expected)


@pytest.mark.parametrize("slow", [0.0, 0.45], ids=["quick-actions", "a-slow-live-action"])
async def test_the_replayed_decisions_are_the_live_ones(moto_url: str, aws_env: dict[str, str], admin_api,
                                                        tmp_path: Path, slow: float) -> None:
    """`slow`: the live level 1 action takes that long (the admin API answers late), which puts a poll
    between the live and the replayed verification's due times, as a loaded machine once did in CI."""
    admin_api.delay[FLAGS] = slow
    ns = f"LIVE{time.monotonic_ns()}"
    t0 = datetime.now(UTC).replace(microsecond=0) + 2 * SECOND
    # healthy 6 s, breaching 9 s (longer than two verify windows), healthy after
    seed(moto_url, ns, t0 - 10 * SECOND, [(16, 200.0), (9, 2500.0), (30, 200.0)])
    record = tmp_path / "polls.jsonl"
    # A verify window of whole intervals would end within milliseconds of a poll, and whether that poll
    # verifies would hang on how long the live action took (a replayed one takes 1 ms): 3.2 s does not.
    cfg = parsed(story_config(tmp_path, moto_url, admin_api.url, ns, verify_window="3200ms",
                              watchdog={"record": str(record)}))
    events: list[Event] = []
    app = await App.create(cfg, serve_http=False, listeners=(lambda ev, _dry: events.append(ev),))
    await app.start()
    started = datetime.now(UTC)
    try:
        await until(lambda: any(e.kind in ("mitigated", "exhausted") for e in events), timeout=40)
        await asyncio.sleep(1.0)
        await app.runtime.journal.flush()
        live = [decode_incident(r["snapshot"]) for r in app.runtime.journal.list_incidents()]
    finally:
        await app.stop()
    ended = datetime.now(UTC)
    assert [i.phase for i in live] in ([Phase.MITIGATED], [Phase.EXHAUSTED])
    assert len(live[0].runs) >= 2, "the trace must escalate at least once to compare something"

    out = io.StringIO()
    opt = Options(start=started - SECOND, end=ended + SECOND, now=ended + 2 * SECOND, cache=tmp_path / "cache.db",
                  recording=record, as_json=True, resolve_after=None)
    assert await run_replay(cfg, opt, out=out, err=io.StringIO()) == 0
    replayed = json.loads(out.getvalue())["incidents"]
    assert len(replayed) == 1, replayed
    inc = live[0]
    got = replayed[0]
    assert_same_levels(inc, got, read_ends(record, "cloudwatch"), timedelta(milliseconds=3200))
    assert set(got["trigger"]) == set(inc.trigger)


async def test_a_recorded_compliance_source_replays_as_it_ran(aws_env: dict[str, str], admin_api,
                                                              tmp_path: Path) -> None:
    """An http_json source has no history of its own: the daemon records what it read (and the poll that
    failed), and the replay of that recording decides the same incident at the same polls."""
    from aiohttp import web

    from configs import hybrid_routing
    from loopback import serving
    from story import levels

    doc: dict[str, object] = {"gdpr": {"compliant": True}}
    failing = {"on": False}

    async def handle(_request: web.Request) -> web.Response:
        if failing["on"]:
            return web.Response(status=500, text="down")
        return web.json_response(doc)

    app_ = web.Application()
    app_.router.add_get("/compliance", handle)
    record = tmp_path / "polls.jsonl"
    events: list[Event] = []
    async with serving(app_) as url:
        sources = [{"name": "compliance", "type": "http_json", "url": f"{url}/compliance", "interval": "500ms",
                    "timeout": "1s", "retry": {"attempts": 1}}]
        rules = [{"name": "gdpr", "category": "security", "source": "compliance", "field": "gdpr.compliant",
                  "threshold": "== false", "evaluation_periods": 2, "datapoints_to_alarm": 2, "level": 2}]
        cfg = parsed(hybrid_routing(state_path=tmp_path / "w.db", aws_endpoint=None, sources=sources, rules=rules,
                                    verify_window="2200ms", levels=levels(admin_api.url, checks=False),
                                    watchdog={"record": str(record)}))
        app = await App.create(cfg, serve_http=False, listeners=(lambda ev, _dry: events.append(ev),))
        await app.start()
        started = datetime.now(UTC)
        try:
            await asyncio.sleep(1.6)
            failing["on"] = True  # one failed poll or two: a gap in what was read, recorded as an error
            await asyncio.sleep(0.8)
            failing["on"] = False
            doc["gdpr"] = {"compliant": False}
            await until(lambda: any(e.kind == "level_started" for e in events), timeout=20)
            await asyncio.sleep(1.2)
            doc["gdpr"] = {"compliant": True}
            await until(lambda: any(e.kind in ("mitigated", "exhausted") for e in events), timeout=20)
            await app.runtime.journal.flush()
            live = [decode_incident(r["snapshot"]) for r in app.runtime.journal.list_incidents()]
        finally:
            await app.stop()
    ended = datetime.now(UTC)
    assert '"error"' in record.read_text()  # the failed polls are in the recording
    out = io.StringIO()
    opt = Options(start=started - SECOND, end=ended + SECOND, now=ended + 2 * SECOND, cache=tmp_path / "cache.db",
                  recording=record, as_json=True, resolve_after=None)
    assert await run_replay(cfg, opt, out=out, err=io.StringIO()) == 0
    replayed = json.loads(out.getvalue())
    assert replayed["notes"] == [] and len(replayed["incidents"]) == len(live) == 1
    got, inc = replayed["incidents"][0], live[0]
    assert_same_levels(inc, got, read_ends(record, "compliance"), timedelta(milliseconds=2200))
