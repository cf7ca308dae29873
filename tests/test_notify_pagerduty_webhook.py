"""PagerDuty and webhook channels against real aiohttp receivers on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from watchdog import __version__
from watchdog.shared.events import Event
from watchdog.notify.base import DeliveryFailed, Message
from watchdog.notify.pagerduty import PagerDuty, PagerDutyNotification
from watchdog.notify.webhook import Webhook, WebhookNotification

ROUTING_KEY = "R0UTINGKEY0123456789abcdef012345"
SECRET = "whsec-s3cr3t-value"
TOKEN = "tok-9f8e7d6c5b4a"  # sits in the webhook URL, as real ones do
AT = datetime(2024, 5, 1, 12, 30, 5, tzinfo=timezone.utc)
TRIGGER = {"error_rate": {"value": 0.12, "threshold": "> 0.05", "at": datetime(2024, 5, 1, 12, 29, 0, tzinfo=timezone.utc)}}


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP endpoint; answers `status` with `headers`, echoing secrets in its body as a careless one might."""

    url: str = ""
    status: int = 202
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hold: asyncio.Event | None = None  # set: every answer waits for it (what a timeout must not wait for)
    answered: int = 0
    seen: list[Seen] = field(default_factory=list)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver()

    async def handle(request: web.Request) -> web.Response:
        recv.seen.append(Seen(request.path_qs, dict(request.headers), await request.read()))
        if recv.delay:
            await asyncio.sleep(recv.delay)
        if recv.hold is not None:
            await recv.hold.wait()
        recv.answered += 1
        echo = f"bad request to {request.url} key {ROUTING_KEY} secret {SECRET}"
        return web.Response(status=recv.status, headers=recv.headers, text=echo)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    recv.url = f"http://127.0.0.1:{server.port}"
    yield recv
    await server.close()


def refused_url() -> str:
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def event(kind: str = "incident_opened", severity: str = "critical", incident: str | None = "inc-42",
          details: dict[str, Any] | None = None, why: str = "error_rate breached") -> Event:
    return Event(kind, severity, "checkout", incident, 2, AT, why, "run level 3 in 5m", details or {})  # type: ignore[arg-type]


def msg(ev: Event, id: int = 7, dry_run: bool = False) -> Message:
    return Message(id=id, channel="x", event=ev, dry_run=dry_run)


def pd(url: str, **extra: Any) -> PagerDutyNotification:
    return PagerDutyNotification.model_validate({"type": "pagerduty", "routing_key": ROUTING_KEY, "url": url, **extra})


def hook(url: str, **extra: Any) -> WebhookNotification:
    return WebhookNotification.model_validate({"type": "webhook", "url": url, **extra})


async def failure(channel: PagerDuty | Webhook, m: Message) -> DeliveryFailed:
    with pytest.raises(DeliveryFailed) as info:
        await channel.send(m)
    return info.value


def assert_no_secrets(reason: str, *secrets: str) -> None:
    for s in secrets:
        assert s not in reason, f"{s!r} leaked into {reason!r}"


# ---- PagerDuty -------------------------------------------------------------------------------------------


async def test_pagerduty_trigger_then_resolve_share_one_dedup_key(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    ch = PagerDuty(pd(receiver.url + "/v2/enqueue"), session)
    await ch.send(msg(event("incident_opened", details={"trigger": TRIGGER})))
    await ch.send(msg(event("resolved", severity="info", why="recovered")))

    trigger, resolve = (s.json() for s in receiver.seen)
    assert [s.path for s in receiver.seen] == ["/v2/enqueue", "/v2/enqueue"]
    assert trigger["event_action"] == "trigger" and trigger["dedup_key"] == "inc-42"
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "inc-42"}


async def test_pagerduty_trigger_payload(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    ch = PagerDuty(pd(receiver.url), session)
    assert ch.name == "pagerduty"
    await ch.send(msg(event(details={"trigger": TRIGGER}), dry_run=True))

    (seen,) = receiver.seen
    assert seen.headers["Content-Type"].startswith("application/json")
    body = seen.json()
    assert body["routing_key"] == ROUTING_KEY and body["client"] == "rollback-watchdog"
    p = body["payload"]
    for part in ("checkout", "inc-42", "level 2", "error_rate breached", "[DRY RUN]"):
        assert part in p["summary"]
    assert (p["source"], p["severity"], p["component"], p["group"], p["class"]) == (
        "rollback-watchdog", "critical", "checkout", "rollback-watchdog", "incident_opened")
    assert datetime.fromisoformat(p["timestamp"]) == AT
    cd = p["custom_details"]
    assert {k: cd[k] for k in ("incident", "level", "why", "next", "dry_run")} == {
        "incident": "inc-42", "level": 2, "why": "error_rate breached", "next": "run level 3 in 5m", "dry_run": True}
    assert cd["trigger"] == ["error_rate: value 0.12, threshold > 0.05 at 12:29:00Z"]


@pytest.mark.parametrize("severity", ["info", "warning", "critical"])
async def test_pagerduty_severity_mapping(severity: str, receiver: Receiver, session: aiohttp.ClientSession) -> None:
    await PagerDuty(pd(receiver.url), session).send(msg(event("level_started", severity=severity)))
    p = receiver.seen[0].json()["payload"]
    assert p["severity"] == severity
    assert "trigger" not in p["custom_details"]  # no trigger details, no trigger lines


async def test_pagerduty_summary_is_capped_and_fallback_dedup_key(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    await PagerDuty(pd(receiver.url), session).send(msg(event("blind", severity="warning", incident=None, why="x" * 3000)))
    body = receiver.seen[0].json()
    assert len(body["payload"]["summary"]) == 1024
    assert body["dedup_key"] == "rollback-watchdog/checkout/blind"


@pytest.mark.parametrize("status", [200, 202, 204])
async def test_pagerduty_any_2xx_is_delivered(status: int, receiver: Receiver, session: aiohttp.ClientSession) -> None:
    receiver.status = status
    assert await PagerDuty(pd(receiver.url), session).send(msg(event())) is None
    assert len(receiver.seen) == 1


async def test_pagerduty_429_honours_retry_after(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    receiver.status, receiver.headers = 429, {"Retry-After": "2"}
    exc = await failure(PagerDuty(pd(receiver.url), session), msg(event()))
    assert exc.retry_after == 2.0 and not exc.permanent
    assert_no_secrets(exc.reason, ROUTING_KEY, receiver.url)


@pytest.mark.parametrize("status, permanent", [(500, False), (503, False), (400, True), (403, True)])
async def test_pagerduty_error_statuses(status: int, permanent: bool, receiver: Receiver, session: aiohttp.ClientSession) -> None:
    receiver.status = status
    exc = await failure(PagerDuty(pd(receiver.url), session), msg(event()))
    assert exc.permanent is permanent and exc.retry_after is None
    assert str(status) in exc.reason
    assert_no_secrets(exc.reason, ROUTING_KEY, receiver.url, "127.0.0.1")


async def test_pagerduty_redirect_is_not_followed(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    receiver.status, receiver.headers = 307, {"Location": "/elsewhere"}
    exc = await failure(PagerDuty(pd(receiver.url + "/v2/enqueue"), session), msg(event()))
    assert exc.permanent
    assert [s.path for s in receiver.seen] == ["/v2/enqueue"]  # the routing key went nowhere else


async def test_pagerduty_connection_refused_is_retryable(session: aiohttp.ClientSession) -> None:
    url = refused_url() + "/v2/enqueue"
    exc = await failure(PagerDuty(pd(url), session), msg(event()))
    assert not exc.permanent and exc.retry_after is None
    assert exc.reason == "PagerDuty request failed: ClientConnectorError"
    assert exc.__cause__ is None and exc.__suppress_context__  # a logged traceback cannot quote the URL either
    assert_no_secrets(exc.reason, ROUTING_KEY, url, "127.0.0.1")


async def test_pagerduty_timeout_is_retryable_and_close_keeps_the_session(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    receiver.hold = asyncio.Event()  # no answer until the test says so
    ch = PagerDuty(pd(receiver.url, timeout="100ms"), session)
    try:
        async with asyncio.timeout(30):  # a bound for the test only: the channel's 100 ms must end it
            exc = await failure(ch, msg(event()))
        # The request arrived and was never answered: the channel's own timeout ended the send.
        assert len(receiver.seen) == 1 and receiver.answered == 0
    finally:
        receiver.hold.set()
    assert not exc.permanent and "Timeout" in exc.reason
    assert_no_secrets(exc.reason, ROUTING_KEY, receiver.url)
    await ch.close()
    assert not session.closed


# ---- Webhook ---------------------------------------------------------------------------------------------

SCHEMA_KEYS = {"schema", "delivery_id", "event", "severity", "target", "incident", "level", "at", "why", "next",
               "dry_run", "details"}


def verify(secret: str, headers: dict[str, str], raw: bytes) -> bool:
    """What a receiver does (docs/configuration.md "Webhook payload")."""
    expected = hmac.new(secret.encode(), headers["X-Watchdog-Timestamp"].encode() + b"." + raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest("sha256=" + expected, headers["X-Watchdog-Signature"])


async def test_webhook_body_and_envelope_headers(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    ch = Webhook(hook(receiver.url + "/in"), session)
    assert ch.name == "webhook"
    before = int(time.time())
    await ch.send(msg(event(details={"trigger": TRIGGER}), id=1234, dry_run=True))
    after = int(time.time())

    (seen,) = receiver.seen
    body = seen.json()
    assert set(body) == SCHEMA_KEYS
    assert body == {
        "schema": "rollback-watchdog.event/v1", "delivery_id": 1234, "event": "incident_opened", "severity": "critical",
        "target": "checkout", "incident": "inc-42", "level": 2, "at": AT.isoformat(), "why": "error_rate breached",
        "next": "run level 3 in 5m", "dry_run": True,
        "details": {"trigger": {"error_rate": {"value": 0.12, "threshold": "> 0.05", "at": "2024-05-01T12:29:00+00:00"}}},
    }
    assert seen.body == json.dumps(body, separators=(",", ":")).encode()  # compact: the bytes that were signed
    h = seen.headers
    assert h["Content-Type"] == "application/json"
    assert h["User-Agent"] == f"rollback-watchdog/{__version__}"
    assert (h["X-Watchdog-Delivery"], h["X-Watchdog-Event"]) == ("1234", "incident_opened")
    assert before <= int(h["X-Watchdog-Timestamp"]) <= after
    assert "X-Watchdog-Signature" not in h  # no secret, no signature


async def test_webhook_signature_verifies_from_raw_body(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    await Webhook(hook(receiver.url, secret=SECRET), session).send(msg(event()))
    (seen,) = receiver.seen
    assert seen.headers["X-Watchdog-Signature"].startswith("sha256=")
    assert verify(SECRET, seen.headers, seen.body)
    assert not verify("not-the-secret", seen.headers, seen.body)
    assert not verify(SECRET, seen.headers, seen.body.replace(b'"level":2', b'"level":3'))
    stale = dict(seen.headers, **{"X-Watchdog-Timestamp": str(int(seen.headers["X-Watchdog-Timestamp"]) - 1)})
    assert not verify(SECRET, stale, seen.body)  # the timestamp is signed too


async def test_webhook_custom_headers_cannot_forge_the_envelope(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    cfg = hook(receiver.url, secret=SECRET, headers={
        "Authorization": "Bearer abc123", "X-Team": "payments",
        "x-watchdog-event": "forged", "X-Watchdog-Signature": "sha256=forged", "content-type": "text/plain",
    })
    await Webhook(cfg, session).send(msg(event("mitigated", severity="info")))
    h = receiver.seen[0].headers
    assert h["Authorization"] == "Bearer abc123" and h["X-Team"] == "payments"
    assert h["X-Watchdog-Event"] == "mitigated" and h["Content-Type"] == "application/json"
    assert verify(SECRET, h, receiver.seen[0].body)


async def test_webhook_no_signature_header_without_secret_even_if_configured(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    await Webhook(hook(receiver.url, headers={"X-Watchdog-Signature": "sha256=forged"}), session).send(msg(event()))
    assert "X-Watchdog-Signature" not in receiver.seen[0].headers


@pytest.mark.parametrize("status, permanent", [(404, True), (401, True), (503, False), (500, False), (408, False)])
async def test_webhook_error_statuses(status: int, permanent: bool, receiver: Receiver, session: aiohttp.ClientSession) -> None:
    receiver.status = status
    url = f"{receiver.url}/hooks/{TOKEN}?token={TOKEN}"
    exc = await failure(Webhook(hook(url, secret=SECRET, headers={"Authorization": "Bearer abc123"}), session), msg(event()))
    assert exc.permanent is permanent
    assert exc.reason == f"webhook answered HTTP {status}"
    assert_no_secrets(exc.reason, url, TOKEN, SECRET, "abc123", "127.0.0.1")


async def test_webhook_429_honours_retry_after(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    receiver.status, receiver.headers = 429, {"Retry-After": "2"}
    exc = await failure(Webhook(hook(f"{receiver.url}/{TOKEN}", secret=SECRET), session), msg(event()))
    assert exc.retry_after == 2.0 and not exc.permanent
    assert_no_secrets(exc.reason, TOKEN, SECRET)


async def test_webhook_connection_refused_is_retryable(session: aiohttp.ClientSession) -> None:
    url = f"{refused_url()}/hooks/{TOKEN}"
    exc = await failure(Webhook(hook(url, secret=SECRET), session), msg(event()))
    assert not exc.permanent
    assert exc.reason == "webhook request failed: ClientConnectorError"
    assert exc.__cause__ is None and exc.__suppress_context__
    assert_no_secrets(exc.reason, url, TOKEN, SECRET, "127.0.0.1")


async def test_webhook_timeout_is_retryable(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    receiver.delay = 1.0
    exc = await failure(Webhook(hook(f"{receiver.url}/{TOKEN}", timeout="100ms"), session), msg(event()))
    assert not exc.permanent and "Timeout" in exc.reason
    assert_no_secrets(exc.reason, TOKEN)


@pytest.mark.parametrize("url", [f"ftp://example.invalid/{TOKEN}", f"not a url {TOKEN}", f"https:///{TOKEN}"])
def test_webhook_url_that_is_not_http_is_a_config_error_that_does_not_quote_it(url: str) -> None:
    from configs import hybrid_routing, line_of, to_yaml
    from watchdog.config import ConfigError, parse_config

    text = to_yaml(hybrid_routing(notifications=[{"type": "webhook", "url": "${HOOK_URL}"}]))
    with pytest.raises(ConfigError) as err:
        parse_config(text, {"HOOK_URL": url})
    line = line_of(text, "HOOK_URL")
    assert err.value.problems == [f"notifications[0].url: must be an http:// or https:// URL (line {line})"]
    assert "http:// or https://" in str(err.value)
    assert_no_secrets(str(err.value), TOKEN)


@pytest.mark.parametrize("url", [f"http://[{TOKEN}"])
async def test_webhook_unusable_url_is_permanent_and_not_quoted(url: str, session: aiohttp.ClientSession) -> None:
    exc = await failure(Webhook(hook(url), session), msg(event()))
    assert exc.permanent
    assert_no_secrets(exc.reason, TOKEN, url)


async def test_webhook_redirect_is_not_followed(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    receiver.status, receiver.headers = 302, {"Location": "/elsewhere"}
    exc = await failure(Webhook(hook(receiver.url + "/in", headers={"Authorization": "Bearer abc123"}), session), msg(event()))
    assert exc.permanent
    assert [s.path for s in receiver.seen] == ["/in"]


def test_a_blind_spell_and_a_pause_have_their_own_alert_closed_when_they_end() -> None:
    from watchdog.notify.notifier import accepts
    from watchdog.notify.pagerduty import pd_event

    cfg = pd("http://127.0.0.1:9/enqueue")
    blind = pd_event("K", msg(event("blind", "critical", incident="inc-42")))
    seen = pd_event("K", msg(event("sight_restored", "info", incident="inc-42")))
    assert (blind["event_action"], blind["dedup_key"]) == ("trigger", "rollback-watchdog/checkout/blind")
    assert (seen["event_action"], seen["dedup_key"]) == ("resolve", "rollback-watchdog/checkout/blind")
    would = pd_event("K", msg(event("would_run", "warning", incident=None)))
    resumed = pd_event("K", msg(event("resumed", "info", incident=None)))
    assert would["dedup_key"] == resumed["dedup_key"] == "rollback-watchdog/checkout/would_run"
    assert resumed["event_action"] == "resolve"
    # The closing events pass PagerDuty's warning filter, or the alert would stay open and swallow the next.
    for kind in ("sight_restored", "resumed", "resolved"):
        assert accepts(cfg, event(kind, "info"))
    assert not accepts(cfg, event("level_succeeded", "info"))
