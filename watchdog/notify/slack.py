"""Slack through an incoming webhook (slack-sdk)."""

from __future__ import annotations

from slack_sdk.webhook.async_client import AsyncWebhookClient

from watchdog.config.models import SlackNotification
from watchdog.escalation import Event
from watchdog.notify.base import render_text

_EMOJI = {"info": ":large_green_circle:", "warning": ":warning:", "critical": ":rotating_light:"}


class SlackWebhook:
    def __init__(self, cfg: SlackNotification):
        self.name = cfg.name
        self.min_severity = cfg.min_severity
        self.timeout = cfg.timeout.total_seconds()
        self._client = AsyncWebhookClient(cfg.webhook_url.get_secret_value(), timeout=int(max(1, self.timeout)))

    async def send(self, event: Event, dry_run: bool) -> None:
        text = render_text(event, dry_run)
        blocks = [
            {"type": "header", "text": {"type": "plain_text", "text": f"{_EMOJI[event.severity]} {event.kind.replace('_', ' ')}: {event.target}"[:150]}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*Target*\n{event.target}"},
                    {"type": "mrkdwn", "text": f"*Level*\n{event.level}"},
                    {"type": "mrkdwn", "text": f"*Incident*\n{event.incident or '-'}"},
                    {"type": "mrkdwn", "text": f"*Severity*\n{event.severity}{' (dry run)' if dry_run else ''}"},
                ],
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Why*: {event.why}\n*Next*: {event.next}"[:3000]}},
        ]
        resp = await self._client.send(text=text, blocks=blocks)
        if resp.status_code >= 300:
            # Never echo the webhook URL: it is the secret.
            raise RuntimeError(f"Slack answered HTTP {resp.status_code}")

    async def close(self) -> None:
        return None
