"""A kind's heavy dependency is loaded when a config uses that kind, not when any config is parsed (issue 22:
the daemon's memory). Parsing a config loads every kind's module (the config's unions are built from their
models); slack-sdk and aiosmtplib are imported by the Slack and email channels themselves.

Each case runs in a fresh interpreter (a test process has imported everything already): the shipped config.yaml
is loaded, with or without its Slack and email channels, and the process says which modules it holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {
    "WATCHDOG_API_TOKEN": "t0ken", "COMPLIANCE_URL": "http://127.0.0.1:9/compliance",
    "ADMIN_API_URL": "http://127.0.0.1:9", "ADMIN_TOKEN": "adm1n", "APP_URL": "http://127.0.0.1:9",
    "SLACK_WEBHOOK_URL": "http://127.0.0.1:9/slack", "PAGERDUTY_ROUTING_KEY": "r0ute", "SMTP_PASSWORD": "pw",
    "AUDIT_WEBHOOK_URL": "http://127.0.0.1:9/audit", "AUDIT_WEBHOOK_SECRET": "s3cret",
    "PROMETHEUS_URL": "http://127.0.0.1:9090",
}
HEAVY = ["slack_sdk", "aiosmtplib"]

# Loads the config, then (with "build") builds every configured channel on an HTTP session, as the runtime does.
PROBE = r"""
import asyncio, json, sys
import aiohttp
from watchdog.config import load_config
from watchdog.notify.base import channel_kind
cfg = load_config(sys.argv[1])
async def build():
    async with aiohttp.ClientSession() as session:
        return [type(channel_kind(n).build(n, session)).__name__ for n in cfg.notifications]
built = asyncio.run(build()) if sys.argv[2] == "build" else []
print(json.dumps({"built": built, "modules": sorted(sys.modules)}))
"""


def _without(text: str, first: str, until: str) -> str:
    """`text` without the lines from the one holding `first` up to (not including) the one holding `until`."""
    start, end = text.index(first), text.index(until)
    start, end = text.rindex("\n", 0, start) + 1, text.rindex("\n", 0, end) + 1
    return text[:start] + text[end:]


def _probe(config: Path, build: bool) -> dict[str, list[str]]:
    r = subprocess.run([sys.executable, "-c", PROBE, str(config), "build" if build else "load"], cwd=ROOT,
                       env={**os.environ, **ENV}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out: dict[str, list[str]] = json.loads(r.stdout)
    return out


def _heavy(modules: list[str]) -> list[str]:
    return sorted({m.split(".")[0] for m in modules} & set(HEAVY))


def test_a_config_without_slack_or_email_never_loads_their_libraries(tmp_path: Path) -> None:
    text = (ROOT / "config.yaml").read_text()
    text = _without(text, "  - type: slack", "  - type: pagerduty")
    text = _without(text, "  - type: email", "  - type: webhook")
    assert "type: slack" not in text and "type: email" not in text and "type: webhook" in text
    config = tmp_path / "config.yaml"
    config.write_text(text)
    got = _probe(config, build=True)
    assert got["built"] == ["PagerDuty", "Webhook"]
    # every kind's module was loaded (the config's unions need their models), their libraries were not
    assert {"watchdog.notify.slack", "watchdog.notify.email"} <= set(got["modules"])
    assert _heavy(got["modules"]) == []


def test_a_config_with_them_loads_each_when_its_channel_needs_it() -> None:
    loaded = _probe(ROOT / "config.yaml", build=False)
    assert _heavy(loaded["modules"]) == []  # parsed, no channel built yet
    built = _probe(ROOT / "config.yaml", build=True)
    assert built["built"] == ["SlackWebhook", "PagerDuty", "Email", "Webhook"]
    assert _heavy(built["modules"]) == ["slack_sdk"]  # aiosmtplib comes with the first mail (test_notify_email)
