"""`rollback-watchdog validate`: the prerequisites check, one row per check.

Nothing here changes the protected system. `--send-test` sends one test message
through each notification channel (for PagerDuty, a trigger followed at once by
its resolve, so nobody is left with an open alert).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import aiohttp

from watchdog.config import Config
from watchdog.escalation import Event
from watchdog.notify import DeliveryFailed, Message, build_channels


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def state_path_check(cfg: Config) -> Check:
    path = Path(cfg.watchdog.state_path)
    name = f"state path {path}"
    if path.exists():
        if not path.is_file():
            return Check(name, False, "exists and is not a file")
        if not os.access(path, os.R_OK | os.W_OK):
            return Check(name, False, "exists but is not readable and writable by this user")
        if not os.access(path.parent, os.W_OK | os.X_OK):
            return Check(name, False, f"{path.parent} is not writable (SQLite needs it for the WAL files)")
        return Check(name, True, "exists and is writable")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return Check(name, False, f"{parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        return Check(name, False, f"cannot be created: {parent} is not writable by this user")
    return Check(name, True, "will be created" + ("" if parent == path.parent else f" (with the directories under {parent})"))


def channels_check(cfg: Config) -> Check:
    if not cfg.notifications:
        return Check("notification channels", False, "none configured: nobody would hear of a rollback")
    names = ", ".join(f"{n.channel_name} ({n.type})" for n in cfg.notifications)
    return Check("notification channels", True, names)


async def send_tests(cfg: Config, session: aiohttp.ClientSession, now: datetime) -> list[Check]:
    incident = f"validate-test-{now:%Y%m%dT%H%M%SZ}"
    test = Event("test", "info", "rollback-watchdog", incident, 0, now,
                 "a test message from `rollback-watchdog validate --send-test`", "nothing: this is only a test")
    out = []
    for cfg_ch, channel in build_channels(cfg.notifications, session):
        name = f"send test to {cfg_ch.channel_name} ({cfg_ch.type})"
        try:
            async with asyncio.timeout(cfg_ch.timeout.total_seconds()):
                await channel.send(Message(0, cfg_ch.channel_name, test, False))
                if cfg_ch.type == "pagerduty":
                    resolved = Event("resolved", "info", test.target, incident, 0, now, "test done", "nothing")
                    await channel.send(Message(0, cfg_ch.channel_name, resolved, False))
        except DeliveryFailed as exc:
            out.append(Check(name, False, exc.reason))
        except TimeoutError:
            out.append(Check(name, False, f"no answer within {cfg_ch.timeout.total_seconds():g}s"))
        except Exception as exc:  # the type only: a message may quote a URL with a token in it
            out.append(Check(name, False, f"unexpected {type(exc).__name__}"))
        else:
            out.append(Check(name, True, "delivered"))
        finally:
            await channel.close()
    return out


async def validate(cfg: Config, send_test: bool = False) -> list[Check]:
    checks = [state_path_check(cfg), channels_check(cfg)]
    if send_test and cfg.notifications:
        async with aiohttp.ClientSession() as session:
            checks += await send_tests(cfg, session, datetime.now(timezone.utc))
    return checks


def render(checks: list[Check]) -> str:
    rows = [("CHECK", "RESULT", "DETAIL")] + [(c.name, "pass" if c.ok else "FAIL", c.detail) for c in checks]
    w0, w1 = (max(len(r[i]) for r in rows) for i in range(2))
    lines = [f"{a.ljust(w0)}  {b.ljust(w1)}  {c}" for a, b, c in rows]
    failed = sum(not c.ok for c in checks)
    lines.append(f"{len(checks) - failed}/{len(checks)} checks passed" + (f"; {failed} failed" if failed else ""))
    return "\n".join(lines)
