"""The replay: the runtime `run` builds (wiring.build_runtime), driven over history on a simulated clock.

Nothing here decides: the sources answer from history (replay/sources.py), the actions and checks only
record and succeed at once, the journal is in memory, no notification channel is built, and the polls come
at the ticks the daemon's scheduler fires at (watchdog/core/schedule.py), each handed to the runtime as its
tick. What the runtime decided is read back from its own journal (replay/outcome.py); what it logged at
error level, stamped with the simulated time, is kept for the outcome instead of going to stderr.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from watchdog.actions import Runners
from watchdog.actions.base import ActionFailed, NothingToOpen, Step
from watchdog.config.models import Config
from watchdog.config.types import format_duration
from watchdog.core.escalation import Phase
from watchdog.config.models import Source as SourceConfig
from watchdog.shared.events import Event
from watchdog.state.journal import MemoryStore
from watchdog.support.logs import replay_log
from watchdog.replay.quiet import QuietPolls
from watchdog.replay.sources import HistorySource
from watchdog.runtime.runtime import Runtime
from watchdog.core.schedule import Pace, count, ticks
from watchdog.core.ring import Transition
from watchdog.core.signals import Query, SignalBoard
from watchdog.sources import SourceDeps, source_kind
from watchdog.sources.kind import pace_of
from watchdog.sources.base import Source
from watchdog.state.memory import in_memory
from watchdog.runtime.wiring import build_runtime, close_runtime


class SimClock:
    """The replay's clock: the engine sets it to each poll's tick, a read moves it on by the time the read took
    live. A replayed action moves only the time of the task it runs in (its level or its checks, and the
    levels that task goes on to start): the targets judged beside it in the same poll, and their own levels,
    never see it (issue 20: one target's decisions must not depend on its neighbours)."""

    def __init__(self, start: datetime):
        self._start = self._now = start
        # Per asyncio task: a task starts with the time spent by the task that spawned it, and what it spends
        # itself is its own (a task runs in a copy of its parent's context).
        self._spent: ContextVar[timedelta] = ContextVar(f"replay_spent_{id(self)}", default=timedelta(0))

    def now(self) -> datetime:
        return self._now + self._spent.get()

    def monotonic(self) -> float:
        return (self.now() - self._start).total_seconds()

    def set(self, now: datetime) -> None:
        self._now = now

    def spend(self, took: timedelta) -> None:
        """The running task's own work took `took`: its time, and only its, moves on."""
        self._spent.set(self._spent.get() + took)


ACTION_TAKES = timedelta(milliseconds=1)


Failure = tuple[str, int, datetime, datetime]  # target, level, from, to: that level's actions failed then


@dataclass
class RecordingRunner(NothingToOpen):
    """Runs nothing: notes the step and succeeds, a millisecond later, unless a failure (from the labels)
    covers its target, level and time. No real action is instant, and a verify window that is a whole
    number of poll intervals must end just after a poll, as it does live, not on it (then the level would
    be judged one poll earlier than the daemon judged it)."""

    clock: SimClock
    where: dict[int, tuple[str, int]]  # id of each configured step -> its target and level
    failures: Sequence[Failure] = ()
    called: list[Called] = field(default_factory=list)  # what each step would have called, and when

    async def run(self, action: Step) -> str:
        now = self.clock.now()
        self.clock.spend(ACTION_TAKES)
        target, level = self.where.get(id(action), ("", 0))
        # Its kind's own description names the resource and the state wanted (an AWS action's ARN and weights).
        self.called.append(Called(now, target, level, action.type, action.describe()))
        if any(t == target and lv == level and a <= now <= b for t, lv, a, b in self.failures):
            raise ActionFailed(f"replayed: the labels say level {level} failed then", retryable=False)
        return "replayed: not run"


@dataclass(frozen=True)
class Called:
    """A step the replay's stand-in ran in place of the real one: what it would have called."""

    at: datetime
    target: str
    level: int
    type: str
    what: str


def steps_of(cfg: Config) -> dict[int, tuple[str, int]]:
    return {id(step): (t.name, lv.level) for t in cfg.targets for lv in t.levels
            for step in [*lv.actions, *lv.checks]}


@dataclass(frozen=True)
class PauseWindow:
    target: str | None  # None: every target
    start: datetime
    end: datetime
    reason: str = "replayed pause"


@dataclass
class Replayed:
    store: MemoryStore
    events: list[Event]
    start: datetime
    end: datetime
    states: dict[str, list[Transition]]  # per rule key, each change of its state (from the board's rings)
    sources: dict[str, HistorySource]
    logged: list[dict[str, Any]] = field(default_factory=list)  # the runtime's error and critical lines
    skipped: int = 0  # polls that could change nothing, skipped (replay/quiet.py)
    board: SignalBoard | None = None  # the runtime's, as the replay left it
    called: list[Called] = field(default_factory=list)  # every step the stand-ins ran, in order


Builder = Callable[[SourceConfig, Sequence[Query]], HistorySource]


Poll = tuple[datetime, int, str]  # when, the source's place in the config, its name


def schedule(cfg: Config, start: datetime, end: datetime, polls: Mapping[str, Sequence[datetime]],
             skip: Collection[str] = ()) -> Iterator[Poll]:
    """When each source is polled, in time order: at its recorded times where there are some, else at the
    ticks the daemon's scheduler fires at (watchdog/core/schedule.py). Made as it is consumed, never a list: a
    100 ms interval over two weeks is 12 M polls."""
    runs: list[Iterator[Poll]] = []
    for order, s in enumerate(cfg.sources):
        if s.name in skip:
            continue
        if s.name in polls:
            runs.append(_recorded(sorted(polls[s.name]), start, end, order, s.name))
        else:
            runs.append(_ticked(pace_of(cfg, s), start, end, order, s.name))
    return heapq.merge(*runs)


def count_polls(cfg: Config, start: datetime, end: datetime, polls: Mapping[str, Sequence[datetime]],
                skip: Collection[str] = ()) -> dict[str, int]:
    """How many polls `schedule` makes of each source, without making them."""
    out: dict[str, int] = {}
    for s in cfg.sources:
        if s.name in skip:
            continue
        if s.name in polls:
            out[s.name] = sum(1 for t in polls[s.name] if start <= t <= end)
        else:
            out[s.name] = count(pace_of(cfg, s), start, end)
    return out


def _recorded(times: Sequence[datetime], start: datetime, end: datetime, order: int, name: str) -> Iterator[Poll]:
    for t in times:
        if start <= t <= end:
            yield t, order, name


def _ticked(pace: Pace, start: datetime, end: datetime, order: int, name: str) -> Iterator[Poll]:
    for t in ticks(pace, start, end):
        yield t, order, name


def derived_incident_ids() -> Callable[[str, datetime], str]:
    """A replay's incident ids: the daemon's shape (target, the second it opened, six hex digits), the tail a
    hash of the target and the exact time instead of a random one, so that two replays of the same history
    give the same ids and a diff of their `--json` shows only what changed."""
    given: set[str] = set()

    def new(target: str, opened: datetime) -> str:
        tail = hashlib.sha256(f"{target}\n{opened.isoformat()}".encode()).hexdigest()[:6]
        base = f"{target}-{opened:%Y%m%dT%H%M%SZ}-{tail}"
        ident, k = base, 1
        while ident in given:  # resolved and opened again at the same instant: the same time, a new incident
            k += 1
            ident = f"{base}-{k}"
        given.add(ident)
        return ident

    return new


Progress = Callable[[int], None]  # polls done so far
PROGRESS_EVERY = 1024  # polls between two calls of `progress`


async def replay(cfg: Config, start: datetime, end: datetime, build: Builder, *,
                 polls: Mapping[str, Sequence[datetime]] | None = None, skip: Sequence[str] = (),
                 pauses: Sequence[PauseWindow] = (), resolve_after: timedelta | None = None,
                 failures: Sequence[Failure] = (), progress: Progress | None = None,
                 skip_quiet: bool = True) -> Replayed:
    """Drive the runtime from `start` to `end`. `skip`: sources never polled (their rules stay without data).
    `resolve_after`: a mitigated incident is resolved that long after it was mitigated, as a human would.
    `progress`: told how many polls are done, every PROGRESS_EVERY polls. `skip_quiet`: polls that cannot
    change anything are skipped (replay/quiet.py); off only to hold the skip to the long way in a test."""
    quiet = cfg.model_copy(update={"notifications": []})  # nothing is sent
    clock = SimClock(start)
    runner = RecordingRunner(clock, steps_of(quiet), failures)
    events: list[Event] = []
    built: dict[str, HistorySource] = {}

    def sources(c: SourceConfig, queries: Sequence[Query], _deps: SourceDeps) -> Source:
        src = built[c.name] = build(c, queries)
        src.answered = clock.set  # the rules are judged when the read is over, as live
        kind = source_kind(c)
        if kind.plan is not None:  # reads the queries due at each tick, as the live source does
            src.plan = kind.plan(kind.of(c), queries)
        return src

    store = MemoryStore(keep=10_000_000)
    with replay_log(clock) as logged:
        rt = await build_runtime(quiet, clock=clock, dry_run=False, state=in_memory(store), sources=sources,
                                 runners=Runners.standing_in(runner),
                                 listeners=[lambda ev, _dry: events.append(ev)], incident_id=derived_incident_ids())
        states: dict[str, list[Transition]] = {k: [] for k in rt.board.slots}
        # Per source, the keys of the rules its polls judge, and their rings: nothing reloads in a replay.
        rings_of = {s.name: [(states[k], rt.board.slots[k].ring) for t in rt.board.targets_of(s.name)
                             for k, slot in rt.board.slots.items() if slot.target == t] for s in quiet.sources}
        todo = sorted(pauses, key=lambda p: p.start)
        # Polls that can change nothing skipped (replay/quiet.py): a week of 1-minute data from the cache, 100
        # rules, CPU 9.7 -> 1.9 s (bench/README.md, "The replay, third round").
        quiet_polls = QuietPolls(quiet, rt, built) if skip_quiet else None
        skipped = 0
        try:
            for done, (at, _, name) in enumerate(schedule(quiet, start, end, polls or {}, skip)):
                if progress is not None and done % PROGRESS_EVERY == 0:
                    progress(done)
                clock.set(at)
                while todo and todo[0].start <= at:
                    p = todo.pop(0)
                    await rt.pause(p.target, p.end - p.start, p.reason)
                if resolve_after is not None:
                    await _resolve_mitigated(rt, at, resolve_after)
                if quiet_polls is not None:
                    if quiet_polls.skips(name, at):
                        skipped += 1
                        continue
                    quiet_polls.catch_up(name)
                await rt.poll(name, at)
                await rt.tasks.settle(("level:", "checks:"))
                if quiet_polls is not None:
                    quiet_polls.polled(name)
                for seen, ring in rings_of[name]:  # the ring keeps a few: collected after every poll, all are kept
                    if ring.changes != len(seen):  # a new transition: the check 0.04 µs, `since` 0.11 (timeit)
                        seen.extend(ring.since(len(seen)))
        finally:
            await rt.tasks.settle(("level:", "checks:"))
            if quiet_polls is not None:
                quiet_polls.finish()
            await close_runtime(rt)
    return Replayed(store, events, start, end, states, built, logged, skipped, rt.board, runner.called)


async def _resolve_mitigated(rt: Runtime, at: datetime, after: timedelta) -> None:
    for ex in rt.executors.values():
        inc = ex.machine.incident
        # Only while mitigated: one that realarmed since keeps its old mitigated_at and is running again.
        if inc is not None and inc.phase is Phase.MITIGATED and inc.mitigated_at is not None \
                and at - inc.mitigated_at >= after:
            await rt.resolve(inc.id, f"replay: resolved {format_duration(after)} after it was mitigated "
                                     "(--resolve-after)")
