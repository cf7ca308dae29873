"""The Slack channel against a real HTTP server on loopback posing as Slack.

One aiohttp server plays both an incoming webhook (POST /services/...) and the
Web API (POST /api/chat.postMessage); each test scripts its answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from watchdog.shared.events import Event
from watchdog.notify.base import DeliveryFailed, Message, render_text
from watchdog.notify.slack import SlackBot, SlackNotification, SlackWebhook, build_slack

HOOK_PATH = "/services/T000/B000/hooksecretXYZ"
TOKEN = "xoxb-1111-2222-tokensecretABC"
TS = "1700000000.000100"
AT = datetime(2024, 5, 1, 12, 0, 5, tzinfo=timezone.utc)
TRIGGER = {"latency": {"value": 2100.0, "threshold": "> 1500", "at": AT, "reason": "p99 above 1500ms"}}


@dataclass
class Answer:
    status: int = 200
    body: Any = None  # dict -> JSON; str -> that text
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    hang: bool = False
    drop: bool = False  # close the connection without answering


@dataclass
class FakeSlack:
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    answer: Answer = field(default_factory=Answer)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def hook_url(self) -> str:
        return self.url + HOOK_PATH

    @property
    def api_url(self) -> str:
        return self.url + "/api/"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        if request.content_type == "application/json":
            body = json.loads(raw)
        else:  # form-encoded: Slack's Web API accepts both, blocks then travel as a JSON string
            body = dict(parse_qsl(raw.decode()))
            if isinstance(body.get("blocks"), str):
                body["blocks"] = json.loads(body["blocks"])
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        self.arrived.set()
        a = self.answer
        if a.drop:
            assert request.transport is not None
            request.transport.close()
            await self.release.wait()
        if a.hang:
            await self.release.wait()
        if request.path == "/api/chat.postMessage" and a.body is None:
            payload: Any = {"ok": True, "ts": TS, "channel": "C1"}
        else:
            payload = "ok" if a.body is None else a.body
        if isinstance(payload, dict):
            return web.json_response(payload, status=a.status, headers=a.headers)
        return web.Response(text=payload, status=a.status, headers=a.headers, content_type=a.content_type)


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    app = web.Application()
    app.router.add_post("/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    fake.release.set()  # let hanging handlers finish so the server can stop
    await server.close()


def hook_cfg(url: str, **extra: Any) -> SlackNotification:
    return SlackNotification.model_validate({"type": "slack", "webhook_url": url, **extra})


def bot_cfg(api_url: str, **extra: Any) -> SlackNotification:
    return SlackNotification.model_validate(
        {"type": "slack", "name": "ops-slack", "token": TOKEN, "channel": "#ops", "api_url": api_url, **extra}
    )


def event(kind: str = "incident_opened", severity: str = "critical", details: dict | None = None, **kw: Any) -> Event:
    base: dict[str, Any] = dict(
        target="checkout", incident="inc-42", level=1, at=AT,
        why="latency breached 1500ms for 3 datapoints", next="run level 1 (rollback deploy)",
    )
    base.update(kw)
    return Event(kind, severity, base["target"], base["incident"], base["level"], base["at"], base["why"],
                 base["next"], details if details is not None else {})


def message(ev: Event, dry_run: bool = False, thread: str | None = None) -> Message:
    return Message(id=7, channel="slack", event=ev, dry_run=dry_run, thread=thread)


def section_texts(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]


def fields(blocks: list[dict[str, Any]]) -> dict[str, str]:
    out = {}
    for b in blocks:
        for f in b.get("fields", []):
            name, _, value = f["text"].partition("\n")
            out[name.strip("*")] = value
    return out


def assert_no_secret(failed: DeliveryFailed, *secrets: str) -> None:
    for s in secrets:
        assert s not in failed.reason and s not in str(failed)


# --- build_slack ---------------------------------------------------------------------------------------------


async def test_build_slack_picks_the_way_in_and_never_closes_the_shared_session(slack, session):
    hook = build_slack(hook_cfg(slack.hook_url), session)
    bot = build_slack(bot_cfg(slack.api_url), session)
    assert isinstance(hook, SlackWebhook) and hook.name == "slack"
    assert isinstance(bot, SlackBot) and bot.name == "ops-slack"
    await hook.close()
    await bot.close()
    assert not session.closed


# --- incoming webhook ----------------------------------------------------------------------------------------


async def test_webhook_message_has_header_fields_trigger_and_why_next(slack, session):
    ev = event(details={"trigger": TRIGGER})
    ch = build_slack(hook_cfg(slack.hook_url), session)
    assert await ch.send(message(ev)) is None  # a webhook cannot thread

    [req] = slack.requests
    assert req["path"] == HOOK_PATH
    body = req["body"]
    assert body["text"] == render_text(ev, False)
    blocks = body["blocks"]
    assert blocks[0]["type"] == "header"
    assert blocks[0]["text"]["type"] == "plain_text"
    assert blocks[0]["text"]["text"] == ":rotating_light: incident opened: checkout level 1"
    assert fields(blocks) == {"Target": "checkout", "Level": "1", "Incident": "inc-42", "Severity": "critical"}
    texts = section_texts(blocks)
    assert len(texts) == 2
    trigger, why = texts
    # `>` is escaped for mrkdwn; the datapoint's time is shown.
    assert "latency: value 2100, threshold &gt; 1500 at 12:00:05Z" in trigger
    assert why == "*Why*: latency breached 1500ms for 3 datapoints\n*Next*: run level 1 (rollback deploy)"


async def test_webhook_without_trigger_has_no_trigger_section_and_emoji_follows_severity(slack, session):
    ch = build_slack(hook_cfg(slack.hook_url), session)
    await ch.send(message(event("level_started", "warning")))
    await ch.send(message(event("resolved", "info")))
    warn, info = (r["body"]["blocks"] for r in slack.requests)
    assert [b["type"] for b in warn] == ["header", "section", "section"]
    assert warn[0]["text"]["text"].startswith(":warning: level started")
    assert info[0]["text"]["text"].startswith(":information_source: resolved")
    assert section_texts(warn) == ["*Why*: latency breached 1500ms for 3 datapoints\n*Next*: run level 1 (rollback deploy)"]


async def test_webhook_marks_a_dry_run(slack, session):
    ev = event()
    await build_slack(hook_cfg(slack.hook_url), session).send(message(ev, dry_run=True))
    body = slack.requests[0]["body"]
    assert body["text"].startswith("[DRY RUN] ")
    assert "[DRY RUN] incident opened: checkout" in body["blocks"][0]["text"]["text"]
    assert fields(body["blocks"])["Severity"] == "critical (dry run)"


async def test_webhook_header_is_capped_and_text_cannot_mention_the_channel(slack, session):
    ev = event(target="t" * 400, why="see <!channel> & <https://evil.example|here>")
    await build_slack(hook_cfg(slack.hook_url), session).send(message(ev))
    body = slack.requests[0]["body"]
    assert len(body["blocks"][0]["text"]["text"]) <= 150
    why = section_texts(body["blocks"])[-1]
    assert "<!channel>" not in why and "&lt;!channel&gt; &amp; &lt;https://evil.example|here&gt;" in why
    assert "<!channel>" not in body["text"]


@pytest.mark.parametrize(
    "status, permanent",
    [(500, False), (503, False), (408, False), (404, True), (403, True), (400, True), (410, True)],
)
async def test_webhook_status_maps_to_retryable_or_permanent(slack, session, status, permanent):
    # The body echoes the URL: it must not reach the reason.
    slack.answer = Answer(status=status, body=f"invalid_token {slack.hook_url}", content_type="text/plain")
    with pytest.raises(DeliveryFailed) as caught:
        await build_slack(hook_cfg(slack.hook_url), session).send(message(event()))
    assert caught.value.permanent is permanent
    assert caught.value.retry_after is None
    assert str(status) in caught.value.reason
    assert_no_secret(caught.value, slack.hook_url, "hooksecretXYZ", "invalid_token")


async def test_webhook_429_honours_retry_after(slack, session):
    slack.answer = Answer(status=429, body="rate_limited", headers={"Retry-After": "2"}, content_type="text/plain")
    with pytest.raises(DeliveryFailed) as caught:
        await build_slack(hook_cfg(slack.hook_url), session).send(message(event()))
    assert caught.value.retry_after == 2.0
    assert caught.value.permanent is False
    assert len(slack.requests) == 1  # no retry inside the channel: the outbox owns retries


async def test_webhook_connection_refused_is_retryable_and_names_only_the_type(session):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}{HOOK_PATH}"
    with pytest.raises(DeliveryFailed) as caught:
        await build_slack(hook_cfg(url), session).send(message(event()))
    assert caught.value.permanent is False
    assert caught.value.reason.startswith("Slack webhook request failed: ") and caught.value.reason.endswith("Error")
    assert_no_secret(caught.value, url, "hooksecretXYZ", str(port))


async def test_webhook_url_is_not_logged_even_at_debug(slack, session, caplog):
    caplog.set_level(logging.DEBUG)
    await build_slack(hook_cfg(slack.hook_url), session).send(message(event()))
    assert slack.requests
    # The fake server's own access log shows the path; only the client side counts.
    client_side = [r.getMessage() for r in caplog.records if not r.name.startswith("aiohttp.")]
    assert not [m for m in client_side if "hooksecretXYZ" in m]


# --- bot token -----------------------------------------------------------------------------------------------


async def test_bot_first_message_returns_ts_and_sends_bearer_token(slack, session):
    ev = event(details={"trigger": TRIGGER})
    ch = build_slack(bot_cfg(slack.api_url), session)
    assert await ch.send(message(ev)) == TS

    [req] = slack.requests
    assert req["path"] == "/api/chat.postMessage"
    assert req["headers"]["Authorization"] == f"Bearer {TOKEN}"
    body = req["body"]
    assert body["channel"] == "#ops"
    assert "thread_ts" not in body and "reply_broadcast" not in body
    assert body["text"] == render_text(ev, False)
    assert body["blocks"][0]["text"]["text"] == ":rotating_light: incident opened: checkout level 1"
    assert "latency: value 2100, threshold &gt; 1500" in section_texts(body["blocks"])[0]
    assert TOKEN not in json.dumps(body)  # the token travels in the header only


@pytest.mark.parametrize(
    "kind, severity, broadcast",
    [("mitigated", "info", True), ("resolved", "info", True), ("exhausted", "critical", True),
     ("level_started", "warning", False), ("level_succeeded", "info", False)],
)
async def test_bot_reply_joins_the_thread_and_broadcasts_outcomes(slack, session, kind, severity, broadcast):
    ch = build_slack(bot_cfg(slack.api_url), session)
    assert await ch.send(message(event(kind, severity), thread=TS)) is None  # the thread is already known

    body = slack.requests[0]["body"]
    assert body["thread_ts"] == TS
    if broadcast:
        assert body.get("reply_broadcast") in (True, "1", "true")
    else:
        assert "reply_broadcast" not in body


@pytest.mark.parametrize(
    "status, error, permanent",
    [
        (200, "channel_not_found", True),
        (200, "not_in_channel", True),
        (200, "invalid_auth", True),
        (200, "token_revoked", True),
        (200, "is_archived", True),
        (200, "invalid_blocks", True),
        (200, "msg_too_long", True),
        (200, "internal_error", False),
        (500, "fatal_error", False),
        (200, "some_new_error", False),
    ],
)
async def test_bot_ok_false_errors_map_to_permanent_or_retryable(slack, session, status, error, permanent):
    slack.answer = Answer(status=status, body={"ok": False, "error": error})
    with pytest.raises(DeliveryFailed) as caught:
        await build_slack(bot_cfg(slack.api_url), session).send(message(event()))
    assert caught.value.permanent is permanent
    assert error in caught.value.reason
    assert_no_secret(caught.value, TOKEN)


async def test_bot_http_429_honours_retry_after(slack, session):
    slack.answer = Answer(status=429, body={"ok": False, "error": "ratelimited"}, headers={"Retry-After": "2"})
    with pytest.raises(DeliveryFailed) as caught:
        await build_slack(bot_cfg(slack.api_url), session).send(message(event()))
    assert caught.value.retry_after == 2.0
    assert caught.value.permanent is False
    assert len(slack.requests) == 1  # slack-sdk's own retry handlers are off


async def test_bot_ratelimited_with_http_200_is_still_retryable_after_the_wait(slack, session):
    slack.answer = Answer(status=200, body={"ok": False, "error": "ratelimited"}, headers={"Retry-After": "7"})
    with pytest.raises(DeliveryFailed) as caught:
        await build_slack(bot_cfg(slack.api_url), session).send(message(event()))
    assert caught.value.retry_after == 7.0 and caught.value.permanent is False


@pytest.mark.parametrize("content_type", ["text/html", "application/json"])
async def test_bot_http_500_without_slack_body_is_retryable(slack, session, content_type):
    # A proxy's error page, or a body that claims JSON and is not.
    slack.answer = Answer(status=500, body=f"<h1>oops {TOKEN}</h1>", content_type=content_type)
    with pytest.raises(DeliveryFailed) as caught:
        await build_slack(bot_cfg(slack.api_url), session).send(message(event()))
    assert caught.value.permanent is False
    assert "500" in caught.value.reason
    assert_no_secret(caught.value, TOKEN, "oops")


async def test_bot_http_200_with_a_text_body_is_retryable(slack, session):
    slack.answer = Answer(status=200, body=f"ok {TOKEN}", content_type="text/plain")
    with pytest.raises(DeliveryFailed) as caught:
        await build_slack(bot_cfg(slack.api_url), session).send(message(event()))
    assert caught.value.permanent is False
    assert_no_secret(caught.value, TOKEN)


async def test_bot_wrong_api_url_404_is_permanent(slack, session):
    slack.answer = Answer(status=404, body="not found", content_type="text/html")
    with pytest.raises(DeliveryFailed) as caught:
        await build_slack(bot_cfg(slack.api_url), session).send(message(event()))
    assert caught.value.permanent is True


async def test_bot_error_text_that_is_not_a_slack_code_stays_out_of_the_reason(slack, session):
    slack.answer = Answer(status=200, body={"ok": False, "error": f"bad token {TOKEN}"})
    with pytest.raises(DeliveryFailed) as caught:
        await build_slack(bot_cfg(slack.api_url), session).send(message(event()))
    assert_no_secret(caught.value, TOKEN, "bad token")


async def test_bot_connection_refused_is_retryable_and_names_only_the_type(session):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DeliveryFailed) as caught:
        await build_slack(bot_cfg(f"http://127.0.0.1:{port}/api/"), session).send(message(event()))
    assert caught.value.permanent is False
    assert caught.value.reason.startswith("Slack API request failed: ")
    assert_no_secret(caught.value, TOKEN, str(port), "127.0.0.1")


@pytest.mark.parametrize("way", ["webhook", "bot"])
async def test_dropped_connection_is_retryable_and_not_retried_inside_the_channel(slack, session, way):
    slack.answer = Answer(drop=True)
    cfg = hook_cfg(slack.hook_url) if way == "webhook" else bot_cfg(slack.api_url)
    with pytest.raises(DeliveryFailed) as caught:
        await build_slack(cfg, session).send(message(event()))
    assert caught.value.permanent is False
    assert caught.value.reason.endswith(": ServerDisconnectedError")
    # slack-sdk's default handlers would resend once: the outbox owns retries (and their backoff).
    assert len(slack.requests) == 1
    assert_no_secret(caught.value, TOKEN, slack.hook_url)


# --- hanging servers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("way", ["webhook", "bot"])
async def test_hanging_server_is_cancellable_from_outside(slack, session, way):
    slack.answer = Answer(hang=True)
    cfg = hook_cfg(slack.hook_url) if way == "webhook" else bot_cfg(slack.api_url)
    ch = build_slack(cfg, session)  # its own timeout (10s default) is far longer than ours
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await ch.send(message(event()))
    assert time.monotonic() - started < 3
    assert slack.arrived.is_set()  # the request did reach the server: the wait was real


@pytest.mark.parametrize("way", ["webhook", "bot"])
async def test_hanging_server_hits_the_channel_timeout_as_retryable(slack, session, way):
    slack.answer = Answer(hang=True)
    cfg = hook_cfg(slack.hook_url, timeout="300ms") if way == "webhook" else bot_cfg(slack.api_url, timeout="300ms")
    started = time.monotonic()
    with pytest.raises(DeliveryFailed) as caught:
        async with asyncio.timeout(5):  # a bound for the test only: the channel's own must fire first
            await build_slack(cfg, session).send(message(event()))
    assert time.monotonic() - started < 3
    assert caught.value.permanent is False and "TimeoutError" in caught.value.reason
    assert_no_secret(caught.value, TOKEN, slack.hook_url)
