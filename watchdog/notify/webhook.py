"""A generic webhook: one signed JSON POST per event (docs/configuration.md "Webhook payload").

The signature covers the timestamp and the exact body bytes, so a receiver
verifies before parsing and can reject replays by the timestamp's age.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from typing import Literal

import aiohttp
from multidict import CIMultiDict
from pydantic import SecretStr, field_validator
from yarl import URL

from watchdog import __version__
from watchdog.config.notifications import Notification
from watchdog.notify.base import ChannelKind, DeliveryFailed, Message, Posting, payload, post


class WebhookNotification(Notification):
    """A JSON POST of each event (docs/configuration.md "Webhook payload"), optionally signed with HMAC-SHA256."""

    type: Literal["webhook"]
    url: SecretStr  # a URL often carries a token in its path or query
    secret: SecretStr | None = None
    headers: dict[str, SecretStr] = {}

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: SecretStr) -> SecretStr:
        if not re.match(r"^https?://[^\s/]+", v.get_secret_value()):
            raise ValueError("must be an http:// or https:// URL")  # not echoed: it may hold a token
        return v


USER_AGENT = f"rollback-watchdog/{__version__}"
_BAD_URL = "webhook URL is not a valid http(s) URL"


def _http_url(raw: str) -> URL:
    """The config keeps the URL secret and so unvalidated; retrying a malformed one can never help."""
    try:
        url = URL(raw)
    except ValueError:
        raise DeliveryFailed(_BAD_URL, permanent=True) from None
    if url.scheme not in ("http", "https") or not url.host:
        raise DeliveryFailed(_BAD_URL, permanent=True)
    return url


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Watchdog-Signature value: HMAC-SHA256 over b"<timestamp>." + body."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


class Webhook(Posting):
    def __init__(self, cfg: WebhookNotification, session: aiohttp.ClientSession):
        super().__init__(cfg.channel_name, cfg.timeout, session)
        self._cfg = cfg

    def request(self, msg: Message, now: float | None = None) -> tuple[bytes, CIMultiDict[str]]:
        """The exact body bytes and headers of one delivery."""
        body = json.dumps(payload(msg), separators=(",", ":")).encode()
        ts = int(time.time() if now is None else now)
        headers: CIMultiDict[str] = CIMultiDict((k, v.get_secret_value()) for k, v in self._cfg.headers.items())
        # Ours are set last (replacing any case variant) so configured headers cannot forge the envelope.
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = USER_AGENT
        headers["X-Watchdog-Delivery"] = str(msg.id)
        headers["X-Watchdog-Event"] = msg.event.kind
        headers["X-Watchdog-Timestamp"] = str(ts)
        if "X-Watchdog-Signature" in headers:
            del headers["X-Watchdog-Signature"]
        if self._cfg.secret is not None:
            headers["X-Watchdog-Signature"] = sign(self._cfg.secret.get_secret_value(), ts, body)
        return body, headers

    async def send(self, msg: Message) -> None:
        url = _http_url(self._cfg.url.get_secret_value())
        body, headers = self.request(msg)
        await post(self._session, url, "webhook", self._timeout, data=body, headers=headers)


KIND = ChannelKind(type="webhook", config=WebhookNotification, build=Webhook)
