"""`rollback-watchdog validate`: the prerequisites check, one row per check.

Nothing here changes the protected system: the state is probed by its backend (the
SQLite file: writable, or can be made), sources get one real read each (unless
their kind checks them otherwise: a billed one only with `--include-cost`, a pushed
one by the API token its pushes need), actions are only reached (their kind's
`probe`: a TCP connect, an executable file, or a GET of their `probe` URL), never run.
`--send-test` sends one test message through each notification channel (for
PagerDuty, a trigger followed at once by its resolve, so nobody is left with an
open alert).

The sources, the HTTP session and the action runners are the runtime's: `validate` builds it with the one
composition function (runtime/wiring.py), as `run` does, with the state in memory (the configured state is
only probed), no recording, and each source built on its first rule (one read, one metric billed). A source
that cannot even start (an unknown AWS profile) is that source's failed row, not the end of the check.
Below the table, what the config's polling will cost a month (`projected`), as `run --once` prints it too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import aiohttp

from watchdog.actions import Probing, Runners, action_kind
from watchdog.config import Config
from watchdog.config.models import Source as SourceConfig
from watchdog.core.rules import Datapoint
from watchdog.notify import DeliveryFailed, Message, build_channels
from watchdog.runtime.runtime import Runtime
from watchdog.runtime.wiring import build_runtime, close_runtime
from watchdog.shared.events import Event
from watchdog.shared.redact import redactor_for
from watchdog.sources import Query, SourceDeps, SourceError, Validating, build_source, source_kind
from watchdog.sources.base import Source
from watchdog.sources.cost import project
from watchdog.core.cost import total
from watchdog.state.backend import configured
from watchdog.state.memory import in_memory


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


async def state_check(cfg: Config) -> Check:
    """The configured state backend's own probe (the SQLite file: can it be written or made)."""
    kind, state = configured(cfg)
    name = kind.describe(state)
    try:
        return Check(name, *await kind.probe(state, cfg.aws))
    except Exception as exc:  # a backend's probe that broke is a failed check, never a traceback
        return Check(name, False, f"the probe failed: {type(exc).__name__}")


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
                if "resolved" in cfg_ch.always_events:  # a channel that keeps alerts open until resolved
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


class _StartsWhenPolled:
    """A source whose start is tried at its first poll: one that cannot start fails its own row of the check,
    where the daemon's composition would refuse to start at all."""

    def __init__(self, inner: Source):
        self._inner = inner
        self.name, self.interval, self.sampled = inner.name, inner.interval, inner.sampled
        self._started = False

    async def start(self) -> None:
        return None

    async def poll(self, now: datetime) -> Mapping[str, Sequence[Datapoint]]:
        if not self._started:
            await self._inner.start()
            self._started = True
        return await self._inner.poll(now)

    async def close(self) -> None:
        if self._started:
            await self._inner.close()


def _first_rule_only(c: SourceConfig, queries: Sequence[Query], deps: SourceDeps) -> Source:
    return _StartsWhenPolled(build_source(c, queries[:1], deps))


async def source_checks(rt: Runtime, include_cost: bool) -> list[Check]:
    """One real read per source, through the runtime's own source (the daemon's code), on its first rule."""
    cfg = rt.cfg
    told = Validating(include_cost=include_cost, api_token=cfg.watchdog.api_token is not None)
    out = []
    for s in cfg.sources:
        name = f"source {s.name} ({s.type})"
        rules = [r for t in cfg.targets for r in t.rules if r.source == s.name]
        kind = source_kind(s)
        verdict = kind.validation(kind.of(s), told)
        if verdict is not None:  # checked without a read
            out.append(Check(name, *verdict))
            continue
        if not rules:
            out.append(Check(name, True, "no rule reads it"))
            continue
        try:
            async with asyncio.timeout(s.timeout.total_seconds() * (s.retry.attempts + 1) + 5):
                await rt.sources[s.name].poll(datetime.now(timezone.utc))
        except SourceError as exc:
            out.append(Check(name, False, str(exc)))
        except TimeoutError:
            out.append(Check(name, False, "no answer in time"))
        except Exception as exc:  # e.g. an unknown AWS profile, missing credentials
            out.append(Check(name, False, f"{type(exc).__name__}: {exc}"))
        else:
            out.append(Check(name, True, f"answered ({rules[0].name})"))
    return out


async def action_checks(cfg: Config, session: aiohttp.ClientSession, runners: Runners) -> list[Check]:
    """Each action can be reached; none is run (an AWS action's resource is read by its kind's runner)."""
    out = []
    for t in cfg.targets:
        for lv in t.levels:
            for i, action in enumerate(lv.actions):
                name = f"action {t.name} L{lv.level} #{i + 1} ({action.type})"
                kind = action_kind(action)
                try:
                    out.append(Check(name, *await kind.probe(kind.of(action), Probing(session, runners.action(action)))))
                except Exception as exc:  # a kind's probe that broke is a failed check, never a traceback
                    out.append(Check(name, False, f"the probe failed: {type(exc).__name__}"))
    return out


async def validate(cfg: Config, send_test: bool = False, include_cost: bool = False) -> list[Check]:
    checks = [await state_check(cfg)]
    mask = redactor_for(cfg).text  # an error from a source or channel may quote a URL with its token
    # Nothing kept, nothing recorded: the configured state is only probed above.
    checked = cfg.model_copy(update={"watchdog": cfg.watchdog.model_copy(update={"record": None})})
    try:
        rt = await build_runtime(checked, state=in_memory(), sources=_first_rule_only)
    except Exception as exc:  # e.g. an action's AWS client that cannot be made: a row, never a traceback
        checks.append(Check("the runtime", False, f"cannot be built: {type(exc).__name__}: {exc}"))
        return [Check(c.name, c.ok, mask(c.detail)) for c in checks]
    try:
        checks += await source_checks(rt, include_cost)
        checks += await action_checks(cfg, rt.session, rt.runners)
        checks.append(channels_check(cfg))
        if send_test and cfg.notifications:
            checks += await send_tests(cfg, rt.session, datetime.now(timezone.utc))
    finally:
        await close_runtime(rt)
    return [Check(c.name, c.ok, mask(c.detail)) for c in checks]


def projected(cfg: Config) -> list[str]:
    """Per billed source, its requests and metrics per 30 days, dollars and worst-case detection delay; then
    the total (docs/cost.md)."""
    usages = project(cfg)
    return [u.describe() for u in usages] + [total(usages)]


def render(checks: list[Check], notes: Sequence[str] = ()) -> str:
    """The table, then `notes` (the projected cost), then the count of checks passed, last."""
    rows = [("CHECK", "RESULT", "DETAIL")] + [(c.name, "pass" if c.ok else "FAIL", c.detail) for c in checks]
    w0, w1 = (max(len(r[i]) for r in rows) for i in range(2))
    lines = [f"{a.ljust(w0)}  {b.ljust(w1)}  {c}" for a, b, c in rows] + list(notes)
    failed = sum(not c.ok for c in checks)
    lines.append(f"{len(checks) - failed}/{len(checks)} checks passed" + (f"; {failed} failed" if failed else ""))
    return "\n".join(lines)
