"""Slack through an incoming webhook or a bot token (slack-sdk).

An incoming webhook posts to its own channel and cannot thread. A bot token
posts with chat.postMessage: the first message of an incident opens a thread,
later ones reply in it, and the outcome is broadcast back to the channel.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from typing import Any, Literal

import aiohttp
from pydantic import SecretStr, model_validator

from watchdog.config.notifications import Notification
from watchdog.config.types import HttpUrl
from watchdog.shared.events import Event
from watchdog.notify.base import (
    Channel,
    ChannelKind,
    DeliveryFailed,
    Message,
    check_status,
    render_text,
    retry_after,
    title,
    trigger_lines,
)


class SlackNotification(Notification):
    """An incoming webhook (`webhook_url`), or a bot token with `channel` (threads one incident together)."""

    type: Literal["slack"]
    webhook_url: SecretStr | None = None
    token: SecretStr | None = None
    channel: str | None = None
    api_url: HttpUrl = "https://slack.com/api/"

    @model_validator(mode="after")
    def _one_way_in(self) -> "SlackNotification":
        if (self.webhook_url is None) == (self.token is None):
            raise ValueError("set exactly one of webhook_url or token")
        if self.token is not None and not self.channel:
            raise ValueError("a bot token needs `channel` (e.g. '#ops' or a channel id)")
        if self.webhook_url is not None and self.channel:
            raise ValueError("`channel` is for a bot token; an incoming webhook posts to its own channel")
        return self


EMOJI = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}
# The outcome of an incident (and anything critical) is broadcast from its thread so the channel sees it.
BROADCAST_KINDS = frozenset({"mitigated", "resolved"})
# chat.postMessage errors that no retry can fix: dead-letter at once.
PERMANENT_ERRORS = frozenset({
    "invalid_auth", "not_authed", "account_inactive", "token_revoked", "channel_not_found", "not_in_channel",
    "is_archived", "invalid_blocks", "msg_too_long",
    "missing_scope", "restricted_action", "no_text", "invalid_arguments", "team_access_not_granted",
})
_ERROR_CODE = re.compile(r"^[a-z0-9_]{1,64}$")  # Slack's codes; anything else stays out of the reason

# slack-sdk logs a webhook's URL (the secret) at DEBUG: keep its loggers above that whatever the root level.
_sdk_log = logging.getLogger("watchdog.notify.slack.sdk")
_sdk_log.setLevel(logging.INFO)


def _esc(text: str) -> str:
    # mrkdwn: an event's text must not become a link or an @channel mention.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def blocks(event: Event, dry_run: bool) -> list[dict[str, Any]]:
    """The Block Kit message, within Slack's limits (header 150, field 2000, section 3000 characters)."""
    severity = event.severity + (" (dry run)" if dry_run else "")
    fields = [("Target", event.target), ("Level", str(event.level)), ("Incident", event.incident or "-"),
              ("Severity", severity)]
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                    "text": _cut(f"{EMOJI.get(event.severity, '')} {title(event, dry_run)}", 150)}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": _cut(f"*{k}*\n{_esc(v)}", 2000)} for k, v in fields]},
    ]
    if lines := trigger_lines(event):
        text = "*Triggering values*\n" + "\n".join(f"• {_esc(line)}" for line in lines)
        out.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, 3000)}})
    why = f"*Why*: {_esc(event.why)}\n*Next*: {_esc(event.next)}"
    out.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(why, 3000)}})
    return out


def _fallback(msg: Message) -> str:
    # The notification and screen-reader text; Slack caps `text` at 40,000 characters.
    return _cut(_esc(render_text(msg.event, msg.dry_run)), 3000)


def _sdk_timeout(cfg: SlackNotification) -> int:
    # slack-sdk only applies its (integer) timeout to a session it creates itself; `send` enforces ours.
    return max(1, math.ceil(cfg.timeout.total_seconds()))


class SlackWebhook:
    def __init__(self, cfg: SlackNotification, session: aiohttp.ClientSession):
        if cfg.webhook_url is None:  # the config's model refuses this; never a bare AttributeError later
            raise ValueError(f"{cfg.channel_name}: a Slack webhook channel needs webhook_url")
        self.name = cfg.channel_name
        self._timeout = cfg.timeout.total_seconds()
        # slack-sdk is imported by the channel, not the module: a config without Slack never loads it (the
        # config loads every kind's module; 5 000 rules, the daemon's peak RSS 117.8 -> 115.0 MB, bench/README.md)
        from slack_sdk.webhook.async_client import AsyncWebhookClient

        # No retry handlers: the outbox owns retries, and the SDK would otherwise sleep inside `send`.
        self._client = AsyncWebhookClient(cfg.webhook_url.get_secret_value(), session=session,
                                          timeout=_sdk_timeout(cfg), retry_handlers=[], logger=_sdk_log)

    async def send(self, msg: Message) -> None:
        text, body = _fallback(msg), blocks(msg.event, msg.dry_run)
        try:
            async with asyncio.timeout(self._timeout):
                resp = await self._client.send(text=text, blocks=body)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # Only the type: aiohttp messages quote the URL, and the webhook URL is the secret.
            raise DeliveryFailed(f"Slack webhook request failed: {type(exc).__name__}") from None
        # Only the status: Slack's body ("no_service", "invalid_token") adds nothing an operator can act on.
        check_status(resp.status_code, resp.headers, "Slack")
        return None

    async def close(self) -> None:
        return None  # the session belongs to the caller


class SlackBot:
    def __init__(self, cfg: SlackNotification, session: aiohttp.ClientSession):
        if cfg.token is None or not cfg.channel:  # the config's model refuses this
            raise ValueError(f"{cfg.channel_name}: a Slack bot channel needs token and channel")
        self.name = cfg.channel_name
        self._channel = cfg.channel
        self._timeout = cfg.timeout.total_seconds()
        from slack_sdk.web.async_client import AsyncWebClient  # imported by the channel (SlackWebhook says why)

        self._client = AsyncWebClient(token=cfg.token.get_secret_value(), base_url=cfg.api_url, session=session,
                                      timeout=_sdk_timeout(cfg), retry_handlers=[], logger=_sdk_log)

    async def send(self, msg: Message) -> str | None:
        from slack_sdk.errors import SlackApiError  # loaded with the client already

        ev = msg.event
        broadcast = msg.thread is not None and (ev.severity == "critical" or ev.kind in BROADCAST_KINDS)
        text, body = _fallback(msg), blocks(ev, msg.dry_run)
        try:
            async with asyncio.timeout(self._timeout):
                resp = await self._client.chat_postMessage(
                    channel=self._channel, text=text, blocks=body,
                    thread_ts=msg.thread, reply_broadcast=True if broadcast else None,
                )
        except SlackApiError as exc:
            raise _api_failure(exc.response) from None
        except (AttributeError, TypeError):
            # slack-sdk trips over a 200 whose body is text/plain (a proxy, a wrong api_url), not Slack's answer.
            raise DeliveryFailed("Slack API answered HTTP 200 with a body that is not Slack's") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # Only the type: exception messages can quote the URL, and we never risk quoting the token.
            raise DeliveryFailed(f"Slack API request failed: {type(exc).__name__}") from None
        if msg.thread is not None:
            return None
        ts = resp.get("ts")
        return ts if isinstance(ts, str) and ts else None

    async def close(self) -> None:
        return None  # the session belongs to the caller


def _api_failure(resp: Any) -> DeliveryFailed:
    """Map a failed chat.postMessage (HTTP error or `ok: false`) to retryable or permanent."""
    # slack-sdk hands over its own response, or aiohttp's when the body was not JSON.
    status = getattr(resp, "status_code", None) or getattr(resp, "status", None) or 0
    headers = getattr(resp, "headers", None) or {}
    data = getattr(resp, "data", None)
    error = data.get("error") if isinstance(data, dict) else None
    code = error if isinstance(error, str) and _ERROR_CODE.match(error) else None
    if status == 429 or code == "ratelimited":
        return DeliveryFailed("Slack API rate limited (ratelimited)", retry_after=retry_after(headers.get("Retry-After")))
    if code in PERMANENT_ERRORS:
        return DeliveryFailed(f"Slack API error {code} (HTTP {status})", permanent=True)
    if code is not None:  # internal_error, fatal_error, service_unavailable, ...: Slack's side, try again
        return DeliveryFailed(f"Slack API error {code} (HTTP {status})")
    try:  # not Slack's answer (a proxy, a wrong api_url): judge by the status alone
        check_status(status, headers, "Slack API")
    except DeliveryFailed as failed:
        return failed
    return DeliveryFailed(f"Slack API answered HTTP {status} without ok")


def build_slack(cfg: SlackNotification, session: aiohttp.ClientSession) -> Channel:
    """The channel for a `slack` config: an incoming webhook, or a bot token posting to `channel`."""
    return SlackWebhook(cfg, session) if cfg.webhook_url is not None else SlackBot(cfg, session)


__all__ = ["SlackBot", "SlackWebhook", "blocks", "build_slack"]


KIND = ChannelKind(type="slack", config=SlackNotification, build=build_slack)
