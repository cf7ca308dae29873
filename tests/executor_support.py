"""Helpers for test_actions.py and test_executor.py: a fake clock, a config builder
and a harness that wires one TargetExecutor to a real admin API (conftest's admin_api).

Not a conftest: import what you need. `http_session` is a fixture; a test module
that imports it by name gets it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from collections.abc import AsyncIterator, Coroutine
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest
import yaml

from watchdog.actions import RunnerDeps, build_runners
from watchdog.config import parse_config
from watchdog.config.models import AwsSection, Target
from watchdog.core.escalation import RuleView, TargetMachine
from watchdog.shared.events import Event
from watchdog.runtime.executor import TargetExecutor
from watchdog.state.journal import MemoryStore, Record
from watchdog.state.storage import Store
from watchdog.support.metrics import Metrics
from watchdog.notify import Notifier
from watchdog.core.rules import Datapoint, align, evaluate
from watchdog.core.signals import spec_for
from timing import FakeClock  # noqa: F401  (importers of this module use it)

UTC = timezone.utc
MIN = timedelta(minutes=1)
T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
BAD, GOOD = 900.0, 50.0  # against "> 100"
TARGET = "svc"
FAST_RETRY = {"attempts": 3, "initial_backoff": "10ms", "max_backoff": "50ms"}


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def http_action(url: str, **kw: Any) -> dict[str, Any]:
    return {"type": "http", "method": "PUT", "url": url, "timeout": "5s", "retry": FAST_RETRY, **kw}


def level(n: int, actions: list[dict[str, Any]], deadline: str = "5s", checks: list | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"level": n, "name": f"level-{n}", "deadline": deadline, "actions": actions}
    if checks:
        out["checks"] = checks
    return out


def default_levels(url: str, **overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """Three levels, each one PUT to /l1, /l2, /l3; level 1 checks GET /health."""
    levels = [
        level(1, [http_action(f"{url}/l1", json={"enabled": False})],
              checks=[{"type": "http", "url": f"{url}/health", "expect_status": 200}]),
        level(2, [http_action(f"{url}/l2", json={"mode": "mcp_only"})],
              checks=[{"type": "http", "url": f"{url}/health", "expect_status": 200}]),
        level(3, [http_action(f"{url}/l3")]),
    ]
    for key, value in overrides.items():  # l1={...} replaces level 1 wholesale
        levels[int(key[1:]) - 1] = value
    return levels


def build_target(levels: list[dict[str, Any]], verify_window: str = "2m") -> Target:
    doc = {
        "sources": [{"name": "cloudwatch", "type": "cloudwatch", "interval": "60s"}],
        "targets": [{
            "name": TARGET,
            "rules": [{
                "name": "latency", "category": "performance", "source": "cloudwatch",
                "metric": {"namespace": "Svc", "name": "Latency", "stat": "p99", "period": "60s"},
                "threshold": "> 100", "datapoints_to_alarm": 2, "evaluation_periods": 3, "level": 1,
            }],
            "escalation": {"verify_window": verify_window, "max_rollbacks_per_hour": 10},
            "levels": levels,
        }],
    }
    return parse_config(yaml.dump(doc, Dumper=_NoAliases), environ={}).targets[0]


class _NoAliases(yaml.SafeDumper):
    """The config refuses YAML aliases; the levels share FAST_RETRY, so write each copy out."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


class Harness:
    """One target's executor, its machine, journal, metrics and notifier, on a fake clock."""

    def __init__(self, target: Target, session: aiohttp.ClientSession, dry_run: bool = False,
                 notifier: Notifier | None = None, journal: Store | None = None):
        self.target = target
        self.clock = FakeClock(T0 + timedelta(seconds=10))
        self.metrics = Metrics()
        self.journal = journal if journal is not None else MemoryStore()
        self.notifier = notifier or Notifier(self.metrics, self.clock)
        self.events: list[tuple[Event, bool]] = []
        self.notifier.listen(lambda ev, dry: self.events.append((ev, dry)))
        self.tasks: list[asyncio.Task[Any]] = []
        self.pause: str | None = None  # what the executor is told holds the target (a described pause)
        self.lead = True  # whether it holds the target's lease (a shared state, SPEC 4.5)
        self.machine = TargetMachine(
            target.name, target.max_level, target.escalation.verify_window,
            target.escalation.max_rollbacks_per_hour, new_id=lambda t, now: "inc-1",
        )
        self.executor = TargetExecutor(
            target, self.machine, build_runners(RunnerDeps(session, {}, AwsSection())), self.journal, self.notifier, self.metrics,
            self.clock, self.spawn, dry_run, hold=lambda now: self.pause, lead=lambda: self.lead,
        )
        self.rule = target.rules[0]
        self.spec = spec_for(self.rule, sampled=False, interval_s=60)
        self.points: list[Datapoint] = []

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.append(task)
        return task

    async def settle(self, timeout: float = 5.0) -> None:
        """Wait until every spawned task (and those they spawn) has ended; re-raise a crash."""
        async with asyncio.timeout(timeout):
            while pending := [t for t in self.tasks if not t.done()]:
                await asyncio.wait(pending)
        for t in self.tasks:
            if not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]

    # --- signals -------------------------------------------------------------------

    def point(self, value: float, at: datetime) -> None:
        self.points.append((at, value))

    def breach_history(self) -> None:
        """Breaching points in the three complete buckets before the current one."""
        current = align(self.clock.now(), MIN)
        for k in (3, 2, 1):
            self.point(BAD, current - k * MIN + timedelta(seconds=5))

    def views(self) -> dict[str, RuleView]:
        pts = tuple(self.points)
        ev = evaluate(self.spec, pts, self.clock.now())
        return {self.rule.name: RuleView(self.rule.name, self.rule.level, self.spec, pts, ev)}

    async def observe(self) -> None:
        await self.executor.observe(self.views(), self.clock.now())
        await self.settle()

    async def open(self) -> None:
        self.breach_history()
        await self.observe()

    # --- reading back ----------------------------------------------------------------

    def kinds(self) -> list[str]:
        return [ev.kind for ev, _ in self.events]

    def records(self, kind: str, level: int | None = None) -> list[Record]:
        return [r for r in self.journal.records() if r.kind == kind and (level is None or r.level == level)]

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)

    def attempts(self, level: int, outcome: str) -> float | None:
        return self.sample("watchdog_action_attempts_total", target=TARGET, level=str(level), outcome=outcome)

    def rollbacks(self, level: int, outcome: str) -> float | None:
        return self.sample("watchdog_rollbacks_total", target=TARGET, level=str(level), outcome=outcome)


def process_gone(pid: int, wait: float = 2.0) -> bool:
    """True once `pid` no longer runs: absent, or a zombie waiting for init to reap it."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False
