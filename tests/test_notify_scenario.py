"""One scripted incident through every real channel, against local servers.

opened -> level 1 -> verification failed -> level 2 -> mitigated -> resolved,
with the real executor, notifier and channels; Slack (webhook and Web API),
PagerDuty and a webhook receiver are a local aiohttp server, email a local
aiosmtpd server.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import time
from datetime import timedelta
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from pydantic import TypeAdapter

from executor_support import BAD, GOOD, MIN, TARGET, Harness, build_target, default_levels, http_session  # noqa: F401
from receivers import Receivers, receivers  # noqa: F401  (fixture)
from watchdog.shared.clock import SystemClock
from watchdog.config.notifications import Notification
from watchdog.config.schema import schema
from watchdog.core.escalation import Phase
from watchdog.support.metrics import Metrics
from watchdog.notify import Notifier, build_channels
from watchdog.core.rules import align

SCENARIO = ["incident_opened", "level_started", "level_succeeded", "verification_failed", "level_started",
            "level_succeeded", "mitigated", "resolved"]
FAST = {"attempts": 100, "initial_backoff": "50ms", "max_backoff": "200ms"}
SECRET = "whsec-test-7f3a"


class Inbox:
    def __init__(self) -> None:
        self.mails: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Any:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    inbox.port = port  # type: ignore[attr-defined]
    yield inbox
    controller.stop()


def channels(url: str, smtp_port: int | None = None, only: tuple[str, ...] = ()) -> list[Notification]:
    docs = [
        {"type": "slack", "name": "slack-hook", "webhook_url": f"{url}/slack/hook", "retry": FAST, "timeout": "1s"},
        {"type": "slack", "name": "slack-bot", "token": "xoxb-test-token", "channel": "#ops",
         "api_url": f"{url}/slack/api/", "retry": FAST, "timeout": "1s"},
        {"type": "pagerduty", "name": "pager", "routing_key": "R0UT1NGKEY", "url": f"{url}/pagerduty/enqueue",
         "retry": FAST, "timeout": "1s"},
        {"type": "webhook", "name": "hook", "url": f"{url}/hook", "secret": SECRET, "retry": FAST, "timeout": "1s"},
    ]
    if smtp_port is not None:
        docs.append({"type": "email", "name": "mail", "host": "127.0.0.1", "port": smtp_port, "security": "none",
                     "sender": "watchdog@example.com", "to": ["oncall@example.com"], "retry": FAST, "timeout": "2s"})
    if only:
        docs = [d for d in docs if d["name"] in only]
    return TypeAdapter(schema().config.model_fields["notifications"].annotation).validate_python(docs)  # every kind's


async def run_scenario(admin_api: Any, session: Any, cfgs: list[Notification]) -> tuple[Harness, Notifier, dict[str, float]]:
    """The incident, driven on a fake clock; returns the real time of each admin API call from the start."""
    notifier = Notifier(Metrics(), SystemClock())
    notifier.set_channels(build_channels(cfgs, session))
    notifier.start()  # its workers end with notifier.close()
    h = Harness(build_target(default_levels(admin_api.url)), session, notifier=notifier)
    t0 = time.monotonic()
    await h.open()
    h.clock.advance(minutes=3)
    current = align(h.clock.now(), MIN)
    h.point(BAD, current - 2 * MIN + timedelta(seconds=5))
    h.point(BAD, current - MIN + timedelta(seconds=5))
    await h.observe()
    h.clock.advance(minutes=3)
    current = align(h.clock.now(), MIN)
    h.point(GOOD, current - 2 * MIN + timedelta(seconds=5))
    h.point(GOOD, current - MIN + timedelta(seconds=5))
    await h.observe()
    assert (h.machine.phase, h.machine.level) == (Phase.MITIGATED, 2)
    await h.executor.resolve("fixed by deploying 1.4.3")
    times = {path: at - t0 for path, at in admin_api.times.items()}
    return h, notifier, times


async def close(h: Harness, notifier: Notifier) -> None:
    for t in h.tasks:
        t.cancel()
    await notifier.close()


async def delivered(notifier: Notifier, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while any(ch["pending"] for ch in notifier.status().values()):
            await asyncio.sleep(0.02)


@pytest.fixture
def timed_admin(admin_api: Any) -> Any:
    """admin_api, plus the real time of the first call to each path."""
    admin_api.times = {}
    calls = admin_api.calls

    class Timed(list):  # type: ignore[type-arg]
        def append(self, item: Any) -> None:
            admin_api.times.setdefault(item[1], time.monotonic())
            super().append(item)

    admin_api.calls = Timed(calls)
    return admin_api


async def test_every_channel_tells_the_incident_in_order(timed_admin, http_session, receivers: Receivers, smtp) -> None:
    h, notifier, _ = await run_scenario(timed_admin, http_session, channels(receivers.url, smtp.port))
    try:
        await delivered(notifier)
    finally:
        await close(h, notifier)
    inc = h.machine.last_closed.id

    # Slack incoming webhook: every event, in order, with Block Kit fields and the triggering values.
    hook = receivers.ok("/slack/hook")
    assert [m.body["text"].split(":")[0] for m in hook] == [k.replace("_", " ") for k in SCENARIO]
    opened = hook[0].body
    assert inc in opened["text"] and "level 1" in opened["text"]
    blocks = str(opened["blocks"])
    assert "latency: value 900, threshold &gt; 100" in blocks and f"*Incident*\\n{inc}" in blocks
    assert "*Next*: running level 1" in blocks

    # Slack Web API: one thread per incident; the outcome is broadcast to the channel.
    bot = receivers.ok("/slack/api/chat.postMessage")
    assert len(bot) == len(SCENARIO)
    assert all(m.headers["Authorization"] == "Bearer xoxb-test-token" for m in bot)
    first_ts = "1700000000.000001"
    assert "thread_ts" not in bot[0].body and bot[0].body["channel"] == "#ops"
    assert all(m.body["thread_ts"] == first_ts for m in bot[1:])
    broadcast = [m.body["text"].split(":")[0] for m in bot if m.body.get("reply_broadcast") in (True, "true", "1")]
    assert broadcast == ["mitigated", "resolved"]

    # PagerDuty: warning and above trigger one alert (dedup key = incident), resolve closes it.
    pd = [m.body for m in receivers.ok("/pagerduty/enqueue")]
    assert [(e["event_action"], e.get("payload", {}).get("class")) for e in pd] == [
        ("trigger", "incident_opened"), ("trigger", "level_started"), ("trigger", "verification_failed"),
        ("trigger", "level_started"), ("resolve", None)]
    assert {e["dedup_key"] for e in pd} == {inc}
    assert all(e["routing_key"] == "R0UT1NGKEY" for e in pd)
    assert pd[0]["payload"]["severity"] == "warning" and pd[0]["payload"]["component"] == TARGET

    # Webhook: the documented payload, signed over timestamp and raw body.
    wh = receivers.ok("/hook")
    assert [m.body["event"] for m in wh] == SCENARIO
    for m in wh:
        ts = m.headers["X-Watchdog-Timestamp"]
        expected = "sha256=" + hmac.new(SECRET.encode(), ts.encode() + b"." + m.raw, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(m.headers["X-Watchdog-Signature"], expected)
        assert m.body["schema"] == "rollback-watchdog.event/v1" and m.body["incident"] == inc
    assert wh[0].body["details"]["trigger"]["latency"]["value"] == BAD
    assert len({m.headers["X-Watchdog-Delivery"] for m in wh}) == len(SCENARIO)

    # Email (min_severity warning by default): the warnings, threaded by Message-ID.
    subjects = [m["Subject"] for m in smtp.mails]
    assert [s.split(": ")[0] for s in subjects] == [
        "[rollback-watchdog] WARNING incident opened", "[rollback-watchdog] WARNING level started",
        "[rollback-watchdog] WARNING verification failed", "[rollback-watchdog] WARNING level started"]
    assert f"({inc})" in subjects[0]
    root = smtp.mails[0]["Message-ID"]
    assert all(m["In-Reply-To"] == root for m in smtp.mails[1:])
    assert "latency: value 900, threshold > 100" in smtp.mails[0].get_payload()


@pytest.mark.parametrize("failure", ["500", "hanging"])
async def test_a_broken_slack_does_not_move_the_rollback_and_gets_every_message_once_it_recovers(
        timed_admin, http_session, receivers: Receivers, failure) -> None:
    only = ("slack-hook", "slack-bot")
    h, notifier, healthy = await run_scenario(timed_admin, http_session, channels(receivers.url, only=only))
    await delivered(notifier)
    await close(h, notifier)
    timed_admin.calls.clear()
    timed_admin.times.clear()
    receivers.hits.clear()

    for path in ("/slack/hook", "/slack/api/chat.postMessage"):
        if failure == "500":
            receivers.answer(path, 500)
        else:
            receivers.delay[path] = 3.0  # longer than the channel timeout (1 s): every attempt hangs
    h, notifier, broken = await run_scenario(timed_admin, http_session, channels(receivers.url, only=only))
    try:
        assert set(broken) == set(healthy) == {"/l1", "/l2", "/health"}
        for path in healthy:  # the rollback happens at the same moments, Slack or no Slack
            assert abs(broken[path] - healthy[path]) < 0.5, (path, healthy, broken)
        assert receivers.ok("/slack/hook") == []
        async with asyncio.timeout(5):  # a hanging attempt is known failed at its timeout
            while not all(ch["up"] is False for ch in notifier.status().values()):
                await asyncio.sleep(0.02)
        for path in ("/slack/hook", "/slack/api/chat.postMessage"):
            receivers.script.pop(path, None)
            receivers.delay.pop(path, None)
        await delivered(notifier)
    finally:
        await close(h, notifier)
    texts = [m.body["text"] for m in receivers.ok("/slack/hook")]
    assert [t.split(":")[0] for t in texts] == [k.replace("_", " ") for k in SCENARIO]  # each once, in order
    bot = receivers.ok("/slack/api/chat.postMessage")
    assert len(bot) == len(SCENARIO) and "thread_ts" not in bot[0].body


async def test_a_429_is_retried_no_sooner_than_its_retry_after(http_session, receivers: Receivers) -> None:
    receivers.answer("/slack/hook", (429, {"Retry-After": "2"}), 200)
    notifier = Notifier(Metrics(), SystemClock())
    notifier.set_channels(build_channels(channels(receivers.url, only=("slack-hook",)), http_session))
    notifier.start()
    try:
        from executor_support import T0
        from watchdog.shared.events import Event
        notifier.publish(Event("exhausted", "critical", TARGET, "inc-9", 3, T0, "no level left", "page a human"))
        await delivered(notifier, timeout=10)
    finally:
        await notifier.close()
    first, second = receivers.all("/slack/hook")
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 2.0  # the backoff alone (50 ms) would have been far sooner
