"""A poll judges first the targets its answer stirred (a rule's newest reading breaches) and those with an
incident open, then the rest: a breach among thousands of rules starts its level before the calm targets
are judged. Only the order moves; every target is still judged, at the poll's one time.

The runtime is the real one (build_runtime) with a scripted source and runners that only record; the
order is observed by wrapping the board's `evaluate` in a recorder that calls the real one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from configs import cloudwatch, hybrid_routing, level, http, make_target, metric_rule, parsed
from test_wiring import Recorded, Scripted
from timing import FakeClock, until

from watchdog.actions import Runners
from watchdog.actions.base import NothingToOpen, Step
from watchdog.config.models import Source as SourceConfig
from watchdog.core.rules import Datapoint, align
from watchdog.core.signals import SignalBoard
from watchdog.runtime.wiring import build_runtime, close_runtime
from watchdog.sources import Query, Source, SourceDeps
from watchdog.state.memory import in_memory

T0 = datetime(2026, 12, 1, 3, 0, 10, tzinfo=timezone.utc)
MIN = timedelta(minutes=1)
NAMES = ("alpha", "mike", "zulu")  # judged in this order when nothing stirs


def config() -> dict:
    levels = [level(1, "flags", http("http://127.0.0.1:9/l1"))]
    targets = [make_target(name, [metric_rule(dimensions={"Service": name}, evaluation_periods=3,
                                              datapoints_to_alarm=2)], levels) for name in NAMES]
    return hybrid_routing(sources=[cloudwatch()], targets=targets)


def series(value: float, newest: float | None = None) -> list[Datapoint]:
    """Three complete 1-minute buckets before T0, oldest first; `newest` replaces the last one's value."""
    bucket = align(T0, MIN)
    points = [(bucket - k * MIN + timedelta(seconds=5), value) for k in (3, 2, 1)]
    if newest is not None:
        points[-1] = (points[-1][0], newest)
    return points


def test_the_board_puts_stirred_and_hot_targets_first_and_forgets_a_failed_answer() -> None:
    board = SignalBoard(parsed(config()), {"cloudwatch": _Shape()})
    now = T0
    assert board.urgent_first("cloudwatch", ()) == ["alpha", "mike", "zulu"]
    calm, hot_reading = series(100.0), series(100.0, newest=9999.0)
    board.source_ok("cloudwatch", {"alpha/latency": calm, "mike/latency": calm, "zulu/latency": hot_reading}, now)
    assert board.urgent_first("cloudwatch", ()) == ["zulu", "alpha", "mike"]
    assert board.urgent_first("cloudwatch", ("mike",)) == ["mike", "zulu", "alpha"]
    # Only the newest reading stirs: an older breach is the rule's business, not the order's.
    board.source_ok("cloudwatch", {"alpha/latency": series(9999.0, newest=100.0), "mike/latency": calm,
                                   "zulu/latency": calm}, now)
    assert board.urgent_first("cloudwatch", ()) == ["alpha", "mike", "zulu"]
    # A reading of no comparable kind (a recorded source may hold a text) stirs nothing and breaks nothing.
    text = [(calm[-1][0], "9999")]
    board.source_ok("cloudwatch", {"alpha/latency": text, "mike/latency": calm, "zulu/latency": calm}, now)  # type: ignore[dict-item]
    assert board.urgent_first("cloudwatch", ()) == ["alpha", "mike", "zulu"]
    board.source_ok("cloudwatch", {"alpha/latency": calm, "mike/latency": hot_reading, "zulu/latency": calm}, now)
    board.source_failed("cloudwatch", "HTTP 500", now)  # its answer is gone: nothing of it stirs any more
    assert board.urgent_first("cloudwatch", ("zulu",)) == ["zulu", "alpha", "mike"]


class _Shape:
    sampled = False

    def bucket(self, rule: object, /) -> timedelta | None:
        return None


async def test_a_breaching_target_is_judged_and_acts_before_the_calm_ones_and_all_are_still_judged() -> None:
    clock = FakeClock(T0)
    answers = {f"{name}/latency": series(100.0) for name in NAMES}  # read at each poll: changed between them
    answers["zulu/latency"] = series(9999.0)

    def scripted(cfg: SourceConfig, queries: Sequence[Query], deps: SourceDeps) -> Source:
        return Scripted(cfg, queries, answers)

    recorded = Recorded()
    rt = await build_runtime(parsed(config()), clock=clock, state=in_memory(), sources=scripted,
                             runners=Runners.standing_in(recorded))
    order: list[str] = []
    judge = rt.board.evaluate

    def recording(target: str, now: datetime) -> dict:
        order.append(target)
        return judge(target, now)

    rt.board.evaluate = recording  # type: ignore[method-assign]
    try:
        await rt.poll("cloudwatch", rt.clock.now())
        assert order == ["zulu", "alpha", "mike"]
        await until(lambda: recorded.steps, what="zulu's level 1, recorded")
        assert rt.executors["zulu"].machine.incident is not None
        assert rt.executors["alpha"].machine.incident is None and rt.executors["mike"].machine.incident is None

        # Next poll: zulu's readings are calm again, but its incident is open (being verified): judged first.
        order.clear()
        answers["zulu/latency"] = series(100.0)
        clock.advance(minutes=1)
        await rt.poll("cloudwatch", rt.clock.now())
        assert order == ["zulu", "alpha", "mike"]

        # A calm poll of calm targets with no incident keeps the names' order.
        order.clear()
        answers["mike/latency"] = series(100.0, newest=9999.0)  # mike stirs; zulu still hot
        clock.advance(minutes=1)
        await rt.poll("cloudwatch", rt.clock.now())
        assert order == ["mike", "zulu", "alpha"]
    finally:
        for ex in rt.executors.values():
            if ex.level_task is not None:
                await ex.level_task
        await close_runtime(rt)


class Slow(NothingToOpen):
    """An action that takes `seconds` to answer, and notes which targets the poll had judged by then."""

    def __init__(self, seconds: float, judged: list[str]) -> None:
        self.seconds, self.judged = seconds, judged
        self.seen_at_answer: list[list[str]] = []

    async def run(self, action: Step) -> str:
        await asyncio.sleep(self.seconds)
        self.seen_at_answer.append(list(self.judged))
        return "answered"


async def _poll_with(runner: Slow, order: list[str]) -> tuple[object, float]:
    clock = FakeClock(T0)
    answers = {f"{name}/latency": series(100.0) for name in NAMES}
    answers["zulu/latency"] = series(9999.0)

    def scripted(cfg: SourceConfig, queries: Sequence[Query], deps: SourceDeps) -> Source:
        return Scripted(cfg, queries, answers)

    rt = await build_runtime(parsed(config()), clock=clock, state=in_memory(), sources=scripted,
                             runners=Runners.standing_in(runner))
    judge = rt.board.evaluate

    def recording(target: str, now: datetime) -> dict:
        order.append(target)
        return judge(target, now)

    rt.board.evaluate = recording  # type: ignore[method-assign]
    started = time.monotonic()
    await rt.poll("cloudwatch", rt.clock.now())
    return rt, time.monotonic() - started


async def test_the_poll_lets_a_level_it_started_have_its_first_action_answered_before_judging_the_rest() -> None:
    order: list[str] = []
    runner = Slow(0.02, order)  # well inside the poll's head start for a level (LEVEL_HEAD_START, 0.1 s)
    rt, _ = await _poll_with(runner, order)
    try:
        assert runner.seen_at_answer == [["zulu"]]  # answered before alpha and mike were judged
        assert order == ["zulu", "alpha", "mike"]  # and they were judged after it
    finally:
        await _close(rt)


async def test_an_action_slower_than_the_head_start_does_not_hold_the_poll() -> None:
    order: list[str] = []
    runner = Slow(3.0, order)
    rt, took = await _poll_with(runner, order)
    try:
        assert order == ["zulu", "alpha", "mike"] and runner.seen_at_answer == []  # judged while it runs
        assert took < 2.0  # 0.1 s of head start, on a loaded machine: far below the action's 3 s
    finally:
        await _close(rt)


async def _close(rt: object) -> None:
    for ex in rt.executors.values():  # type: ignore[attr-defined]
        if ex.level_task is not None:
            await ex.level_task
    await close_runtime(rt)  # type: ignore[arg-type]
