"""The composition function's seams: a caller hands in its own sources and runners, and gets the very runtime
`run` builds (a replay will answer from history and only record its actions). Nothing else is replaced."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone

from configs import hybrid_routing, parsed
from timing import FakeClock, until

from watchdog.actions import Runners
from watchdog.actions.base import NothingToOpen, Step
from watchdog.config.models import Source as SourceConfig
from watchdog.core.rules import Datapoint, align
from watchdog.sources import Query, Source, SourceDeps
from watchdog.state.memory import in_memory
from watchdog.runtime.wiring import build_runtime

T0 = datetime(2026, 12, 1, 3, 0, 10, tzinfo=timezone.utc)
MIN = timedelta(minutes=1)


class Recorded(NothingToOpen):
    """Runs nothing: each action or check is written down and said to have worked."""

    def __init__(self) -> None:
        self.steps: list[str] = []

    async def run(self, action: Step) -> str:
        self.steps.append(action.describe())
        return "recorded"


class Scripted:
    """A source that answers what it is given, for the queries the board asked of it."""

    sampled = False

    def __init__(self, cfg: SourceConfig, queries: Sequence[Query], values: dict[str, list[Datapoint]]):
        self.name, self.interval = cfg.name, cfg.interval
        self._keys, self._values = [q.key for q in queries], values
        self.polls = 0

    async def start(self) -> None:
        return None

    async def poll(self, now: datetime) -> Mapping[str, Sequence[Datapoint]]:
        self.polls += 1
        return {key: self._values.get(key, []) for key in self._keys}

    async def close(self) -> None:
        return None


async def test_a_runtime_built_with_its_own_sources_and_runners_decides_as_run_does() -> None:
    clock = FakeClock(T0)
    bucket = align(T0, MIN)
    breaching = [(bucket - k * MIN + timedelta(seconds=5), 9999.0) for k in (3, 2, 1)]
    built: list[Scripted] = []

    def scripted(cfg: SourceConfig, queries: Sequence[Query], deps: SourceDeps) -> Source:
        src = Scripted(cfg, queries, {"hybrid-routing/latency": breaching})
        built.append(src)
        return src

    recorded = Recorded()
    runners = Runners.standing_in(recorded)
    cfg = parsed(hybrid_routing(rule={"evaluation_periods": 3, "datapoints_to_alarm": 2}))
    rt = await build_runtime(cfg, clock=clock, state=in_memory(), sources=scripted, runners=runners)
    try:
        await rt.poll("cloudwatch", rt.clock.now())
        await until(lambda: recorded.steps, what="level 1's action, recorded")
        assert built[0].polls == 1
        assert recorded.steps == ["PUT http://127.0.0.1:9/l1"]  # no request left the process
        machine = rt.executors["hybrid-routing"].machine
        assert machine.incident is not None and machine.level == 1
        events = [r.data["event"] for r in rt.journal.records() if r.kind == "event"]
        assert events[:2] == ["incident_opened", "level_started"]
        from watchdog.runtime.reload import apply_reload

        await apply_reload(rt, cfg)  # a reload builds its sources the same way, not the real kind
        assert len(built) == 2 and rt.sources["cloudwatch"] is built[1]
    finally:
        for ex in rt.executors.values():
            if ex.level_task is not None:
                await ex.level_task
        from watchdog.runtime.wiring import close_runtime

        await close_runtime(rt)
