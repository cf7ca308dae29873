"""The one composition function: a config in, the whole runtime out, with nothing left to fill in later.

Every entry point builds through `build_runtime`: the daemon (`run`), `run --once`, `rollback --offline`,
the demo, the replay and the tests. Each part is built before what uses it: the state (the backend the config
names, watchdog/state/backend.py, or one in memory), the notifier on its outbox, the sources, the runners, the
executors, and the Runtime last, from all of them. A reload builds its parts with the same helpers
(`board_for`, `start_sources`, `executor_for`) and swaps them in (watchdog/runtime/reload.py). `close_runtime` closes
what it opened, last to first, the state last.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiohttp
import structlog

from watchdog.actions import RunnerDeps, Runners, build_runners
from watchdog.shared.clock import Clock, SystemClock
from watchdog.config import process_environment
from watchdog.config.models import Config, Target
from watchdog.core.escalation import Phase, TargetMachine
from watchdog.shared.events import Event
from watchdog.runtime.executor import TargetExecutor
from watchdog.runtime.failpoints import Failpoints
from watchdog.support.metrics import Metrics
from watchdog.notify import Notifier, build_channels
from watchdog.runtime.pausing import PauseKeeper
from watchdog.runtime.recording import FileRecorder, NoRecorder, Recorder
from watchdog.shared.redact import Redactor, redactor_for
from watchdog.runtime.runtime import Runtime, SchedulerView, Unscheduled
from watchdog.core.signals import SignalBoard
from watchdog.sources import AlertStore, SourceDeps, SourceFactory, build_source, source_kind
from watchdog.sources.base import Source
from watchdog.sources.cost import project, show as show_cost
from watchdog.sources.hooks import Doorbell, SourceHooks, Verifying
from watchdog.state.backend import Opener, StateDeps, open_configured
from watchdog.state.peering import Peering
from watchdog.runtime.statewatch import StateWatch
from watchdog.state.storage import AlarmLedger, Store
from watchdog.support.tasks import Tasks

log = structlog.get_logger("watchdog.runtime.wiring")
DAEMON = "the rollback-watchdog daemon"


def incident_ids() -> Callable[[str, datetime], str]:
    # A random tail: a restarted process must never reuse an id within the same second.
    return lambda target, now: f"{target}-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


async def build_runtime(
    cfg: Config,
    *,
    clock: Clock | None = None,
    dry_run: bool | None = None,
    state: Opener = open_configured,
    owner: str = DAEMON,
    listeners: Sequence[Callable[[Event, bool], None]] = (),
    failpoints: Failpoints | None = None,
    sources: SourceFactory = build_source,
    runners: Runners | None = None,
    incident_id: Callable[[str, datetime], str] | None = None,
    scheduler: SchedulerView = Unscheduled(),
) -> Runtime:
    """`state` opens the state: the backend `watchdog.state` names (for SQLite its lock taken first, then the
    file, then every write handed to the writer thread; StoreError or LockHeld, one line, before any network
    is touched), or one in memory (watchdog/state/memory.py: `run --once`, the replay). `sources` builds each
    configured source (a reload uses it too) and `runners` run the actions and checks by `type`: the real ones
    unless a caller (a replay: sources answering from history, actions that only record) hands in its own, so
    that it runs this very runtime and not a copy of it. With `watchdog.record` set, every poll's answer is
    appended to that file, for a later `replay`. `incident_id` names a new incident from its target and the
    time it opened (the daemon's: incident_ids, with a random tail). `scheduler` is the lifecycle's, whose
    running the liveness judges (app.py; none for a runtime no scheduler drives)."""
    clock = clock or SystemClock()
    metrics = Metrics()
    tasks = Tasks()
    async with AsyncExitStack() as undo:  # on any failure below, what was opened is closed again
        opened = await state(cfg, StateDeps(owner, clock, cfg.aws, cfg.watchdog.instance_id,
                                                 tuple(t.name for t in cfg.targets)))
        undo.push_async_callback(opened.aclose)
        session = aiohttp.ClientSession()
        undo.push_async_callback(session.close)
        notifier = Notifier(metrics, clock, opened.outbox, opened.store, tasks=tasks)
        for fn in listeners:
            notifier.listen(fn)
        notifier.set_channels(build_channels(cfg.notifications, session))
        undo.push_async_callback(notifier.close)
        opened.requeue(notifier.replay)
        alerts = AlertStore(clock)  # fed by POST /api/v1/alertmanager, read by alertmanager sources
        board = board_for(cfg)
        executors: dict[str, TargetExecutor] = {}  # filled below; the runtime keeps this very mapping
        failpoints = failpoints or Failpoints()
        bell = Doorbell()  # answered by the runtime's polls once it exists (below)
        hooks = source_hooks(opened.store, executors, failpoints, bell)
        started = await start_sources(cfg, board, SourceDeps(cfg.aws, session, metrics, alerts, hooks), sources)
        for src in started.values():
            undo.push_async_callback(src.close)
        recorder = recorder_for(cfg.watchdog.record, metrics)  # RecordingUnwritable: one line, before any poll
        undo.callback(recorder.close)
        if runners is None:
            runners = build_runners(RunnerDeps(session, process_environment(), cfg.aws))
        await runners.start()
        undo.push_async_callback(runners.close)
        redactor = redactor_for(cfg)
        pausing = PauseKeeper(opened.store, metrics, clock, lambda: executors)
        parts = ExecutorParts(runners, opened.store, notifier, metrics, clock, tasks,
                              cfg.watchdog.dry_run if dry_run is None else dry_run, pausing,
                              failpoints, incident_id or incident_ids(), opened.peers)
        for t in cfg.targets:
            executors[t.name] = executor_for(parts, t, redactor)
        watch = StateWatch(metrics, notifier, clock, executors, opened.health)
        runtime = Runtime(
            cfg=cfg, clock=clock, dry_run=parts.dry_run, metrics=metrics, state=opened, session=session,
            notifier=notifier, redactor=redactor, alerts=alerts, board=board, sources=started, source_factory=sources,
            executors=executors, pausing=pausing, statewatch=watch, tasks=tasks, failpoints=parts.failpoints,
            new_incident_id=parts.new_incident_id, runners=runners, recorder=recorder, scheduler=scheduler)
        bell.answer(pushed_polls(runtime))
        runtime.rule_series.read_from(lambda: runtime.board.judgements())  # the board a reload swapped in too
        show_cost(metrics, project(cfg))
        metrics.paused.set(0)
        metrics.state_writable.set(1)
        # From here the watch hears of the state's failures; one under way already (before the targets existed
        # to be paged about) it is told now: the gauge, the critical line, the page.
        opened.watch(watch)
        pausing.restore()
        undo.pop_all()
    return runtime


def board_for(cfg: Config) -> SignalBoard:
    return SignalBoard(cfg, {s.name: source_kind(s) for s in cfg.sources})


def source_hooks(store: AlarmLedger, executors: Mapping[str, TargetExecutor], failpoints: Failpoints,
                 bell: Doorbell) -> SourceHooks:
    """What a source whose data arrives between polls may ask of the runtime (watchdog/sources/hooks.py)."""
    return SourceHooks(ledger=store, verifying=verifying_in(executors), wake=bell.ring, reach=failpoints.reach)


def hooks_of(rt: Runtime) -> SourceHooks:
    """The same, for the sources a reload builds: the runtime exists, so its polls answer at once."""
    bell = Doorbell()
    bell.answer(pushed_polls(rt))
    return source_hooks(rt.journal, rt.executors, rt.failpoints, bell)


def pushed_polls(rt: Runtime) -> Callable[[str], None]:
    """A poll of a source now, as a push to the control API brings one (watchdog/http/control.py)."""
    def poll(name: str) -> None:
        rt.tasks.spawn(rt.poll(name, rt.clock.now()), f"poll:{name}:pushed")

    return poll


def verifying_in(executors: Mapping[str, TargetExecutor]) -> Callable[[str], Verifying | None]:
    """Per target: from when a level's evidence counts and when it is judged (escalation.TargetMachine._fresh
    judges datapoints from the actions' end, or the incident's opening when no level ran)."""
    watched = (Phase.VERIFYING, Phase.CHECKING, Phase.MITIGATED)

    def verifying(target: str) -> Verifying | None:
        ex = executors.get(target)
        inc = ex.machine.incident if ex is not None else None
        if inc is None or inc.phase not in watched:
            return None
        return inc.actions_ended_at or inc.opened_at, inc.verify_due if inc.phase is Phase.VERIFYING else None

    return verifying


class SourceStartFailed(Exception):
    """A source could not start (an unknown AWS profile, say); the message names it, in one line."""


async def start_sources(cfg: Config, board: SignalBoard, deps: SourceDeps,
                        build: SourceFactory = build_source) -> dict[str, Source]:
    """Every source of `cfg`, started; one that cannot start closes those started before it and raises."""
    started: dict[str, Source] = {}
    for s in cfg.sources:
        src = build(s, board.queries(s.name), deps)
        try:
            await src.start()
        except Exception as exc:
            for done in started.values():
                await done.close()
            raise SourceStartFailed(f"source {s.name} cannot start: {type(exc).__name__}: {exc}") from None
        started[s.name] = src
        # A new source is down until it answers; one a reload carries over keeps what it last showed.
        health = board.sources.get(s.name)
        deps.metrics.source_up.labels(s.name).set(1 if health is not None and health.up else 0)
    return started


def recorder_for(path: Path | None, metrics: Metrics, fd: int | None = None) -> Recorder:
    """The recording at `path` (opened now unless `fd` is open on it already), or none."""
    if path is None:
        return NoRecorder()
    return FileRecorder(path, dropped=metrics.recording_lines_dropped.inc, fd=fd)


@dataclass(frozen=True)
class ExecutorParts:
    """What a target's executor is built from: the runtime's shared parts, before the Runtime exists (at build)
    or from it (a reload's new targets: `executor_parts`)."""

    runners: Runners
    journal: Store
    notifier: Notifier
    metrics: Metrics
    clock: Clock
    tasks: Tasks
    dry_run: bool
    pausing: PauseKeeper
    failpoints: Failpoints
    new_incident_id: Callable[[str, datetime], str]
    peers: Peering


def executor_parts(rt: Runtime) -> ExecutorParts:
    return ExecutorParts(rt.runners, rt.journal, rt.notifier, rt.metrics, rt.clock, rt.tasks, rt.dry_run, rt.pausing,
                         rt.failpoints, rt.new_incident_id, rt.state.peers)


def executor_for(parts: ExecutorParts, t: Target, redactor: Redactor) -> TargetExecutor:
    machine = TargetMachine(t.name, t.max_level, t.escalation.verify_window, t.escalation.max_rollbacks_per_hour,
                            parts.new_incident_id)
    parts.metrics.target_level.labels(t.name).set(0)
    parts.metrics.incidents_open.labels(t.name).set(0)
    return TargetExecutor(t, machine, parts.runners, parts.journal, parts.notifier, parts.metrics, parts.clock,
                          parts.tasks.spawn, parts.dry_run, hold=parts.pausing.reader(t.name),
                          lead=functools.partial(parts.peers.may_act, t.name), redactor=redactor,
                          failpoints=parts.failpoints)


async def close_runtime(runtime: Runtime) -> None:
    """What build_runtime opened, last to first; the state after everything that may still write to it."""
    for src in runtime.sources.values():
        await src.close()
    await runtime.runners.close()
    await runtime.notifier.close()
    await runtime.session.close()
    await asyncio.to_thread(runtime.recorder.close)  # its queued lines land (bounded) off the loop
    await runtime.state.aclose()
