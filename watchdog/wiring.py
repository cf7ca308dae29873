"""The one composition function: a config in, the whole runtime out, with nothing left to fill in later.

Every entry point builds through `build_runtime`: the daemon (`run`), `run --once`, `rollback --offline`,
the demo, and the tests; a reload builds its parts with the same helpers (`board_for`, `start_sources`,
`executor_for`) and swaps them in (watchdog/reload.py). `close_runtime` closes what it opened, last to first.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path

import aiohttp
import structlog

from watchdog.actions import RunnerDeps, Runners, build_runners
from watchdog.clock import Clock, SystemClock
from watchdog.codec import event_from_audit
from watchdog.config import process_environment
from watchdog.config.models import Config, Target
from watchdog.escalation import TargetMachine
from watchdog.events import Event
from watchdog.executor import TargetExecutor
from watchdog.failpoints import Failpoints
from watchdog.lock import StateLock
from watchdog.metrics import Metrics, rule_labels
from watchdog.notify import Notifier, build_channels
from watchdog.outbox import MemoryOutbox
from watchdog.outbox_sqlite import SqliteOutbox
from watchdog.pausing import PauseKeeper
from watchdog.recording import FileRecorder, NoRecorder, Recorder
from watchdog.redact import redactor_for
from watchdog.runtime import Runtime
from watchdog.signals import SignalBoard
from watchdog.sources import AlertStore, SourceDeps, SourceFactory, build_source, source_kind
from watchdog.sources.base import Source
from watchdog.statewatch import StateWatch
from watchdog.statewriter import StateWriter
from watchdog.storage import Store
from watchdog.store import SqliteStore
from watchdog.tasks import Tasks

log = structlog.get_logger("watchdog.wiring")
DAEMON = "the rollback-watchdog daemon"


def incident_ids() -> Callable[[str, datetime], str]:
    # A random tail: a restarted process must never reuse an id within the same second.
    return lambda target, now: f"{target}-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


async def build_runtime(
    cfg: Config,
    *,
    clock: Clock | None = None,
    dry_run: bool | None = None,
    store: Store | None = None,
    owner: str = DAEMON,
    listeners: Sequence[Callable[[Event, bool], None]] = (),
    failpoints: Failpoints | None = None,
    sources: SourceFactory = build_source,
    runners: Runners | None = None,
    incident_id: Callable[[str, datetime], str] | None = None,
) -> Runtime:
    """Without a `store`, the state file at `state_path`: its lock taken first, then the file, then every
    write handed to the writer thread. StoreError or LockHeld (one line) before any network is touched.
    `sources` builds each configured source (a reload uses it too) and `runners` run the actions and checks
    by `type`: the real ones unless a caller (a replay: sources answering from history, actions that only
    record) hands in its own, so that it runs this very runtime and not a copy of it. With `watchdog.record`
    set, every poll's answer is appended to that file, for a later `replay`. `incident_id` names a new incident
    from its target and the time it opened (the daemon's: incident_ids, with a random tail)."""
    clock = clock or SystemClock()
    metrics = Metrics()
    tasks = Tasks()
    notifier = Notifier(metrics, clock, tasks=tasks)
    for fn in listeners:
        notifier.listen(fn)
    executors: dict[str, TargetExecutor] = {}
    holder: list[Runtime] = []  # the callbacks below read the runtime's executors, which a reload replaces

    def targets() -> Mapping[str, TargetExecutor]:
        return holder[0].executors if holder else executors

    writer = StateWriter(on_change=lambda f: watch.changed(f), on_bug=StateWatch.bug)
    watch = StateWatch(metrics, notifier, clock, targets, lambda: writer.pending)
    async with AsyncExitStack() as undo:  # on any failure below, what was opened is closed again
        lock, journal = _open_store(cfg, store, owner, writer, undo)
        session = aiohttp.ClientSession()
        undo.push_async_callback(session.close)
        outbox = SqliteOutbox(journal) if isinstance(journal, SqliteStore) else MemoryOutbox()
        if isinstance(outbox, SqliteOutbox):
            outbox.prune(clock.now())
        notifier.bind(outbox, journal)
        notifier.set_channels(build_channels(cfg.notifications, session))
        undo.push_async_callback(notifier.close)
        if isinstance(journal, SqliteStore) and isinstance(outbox, SqliteOutbox):
            _replay_unqueued(journal, outbox, notifier)
        alerts = AlertStore(clock)  # fed by POST /api/v1/alertmanager, read by alertmanager sources
        board = board_for(cfg)
        started = await start_sources(cfg, board, SourceDeps(cfg.aws, session, metrics, alerts), sources)
        for src in started.values():
            undo.push_async_callback(src.close)
        pausing = PauseKeeper(journal, metrics, clock, targets)
        recorder = recorder_for(cfg.watchdog.record, metrics)  # RecordingUnwritable: one line, before any poll
        undo.callback(recorder.close)
        if runners is None:
            runners = build_runners(RunnerDeps(session, process_environment(), cfg.aws))
        await runners.start()
        undo.push_async_callback(runners.close)
        runtime = Runtime(
            cfg=cfg, clock=clock, dry_run=cfg.watchdog.dry_run if dry_run is None else dry_run, metrics=metrics,
            journal=journal, writer=writer, lock=lock, session=session, notifier=notifier,
            redactor=redactor_for(cfg), alerts=alerts, board=board, sources=started, source_factory=sources,
            executors=executors,
            pausing=pausing, statewatch=watch, tasks=tasks, failpoints=failpoints or Failpoints(),
            new_incident_id=incident_id or incident_ids(), runners=runners, recorder=recorder)
        for t in cfg.targets:
            executors[t.name] = executor_for(runtime, t)
        holder.append(runtime)
        runtime.rule_series.keep(rule_labels(cfg))
        metrics.paused.set(0)
        metrics.state_writable.set(0 if writer.failure else 1)
        if writer.failure is not None:  # it failed already, before the targets existed to be paged about
            watch.page(writer.failure)
        pausing.restore()
        undo.pop_all()
    return runtime


def _open_store(cfg: Config, given: Store | None, owner: str, writer: StateWriter,
                undo: AsyncExitStack) -> tuple[StateLock | None, Store]:
    if given is not None:
        return None, given
    # The lock first: a second writer must not even create or migrate the file.
    lock = StateLock(cfg.watchdog.state_path)
    lock.acquire(owner)  # LockHeld or StoreError: one line
    undo.callback(lock.release)
    store = SqliteStore(cfg.watchdog.state_path)  # StoreError: one line
    undo.callback(store.close)
    # From here on no write to the state file runs on the event loop (watchdog/statewriter.py).
    writer.start()
    undo.push_async_callback(writer.stop, 5.0)
    store.attach(writer)
    return lock, store


def _replay_unqueued(store: SqliteStore, outbox: SqliteOutbox, notifier: Notifier) -> None:
    """Events the audit log has but the outbox never got: the daemon died between the two writes."""
    last = outbox.last_audit_seq()
    if last is None:  # a file from before the outbox had its mark, never upgraded: nothing to anchor on
        return
    events = []
    for r in store.events_after(last):
        try:
            events.append((r.seq, event_from_audit(r.target, r.incident, r.level, r.at, r.data), r.dry_run))
        except ValueError as exc:  # another version's kind, a hand edit: never a reason not to start
            log.critical("notification_unreplayable", audit_seq=r.seq, target=r.target, incident=r.incident,
                         why=f"the audit record cannot be read back as an event: {type(exc).__name__}",
                         next="not sent; it stays in the audit log")
    if events:
        log.warning("notifications_replayed", events=len(events), queued=notifier.replay(events))


def board_for(cfg: Config) -> SignalBoard:
    return SignalBoard(cfg, {s.name: source_kind(s) for s in cfg.sources})


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


def executor_for(runtime: Runtime, t: Target) -> TargetExecutor:
    machine = TargetMachine(t.name, t.max_level, t.escalation.verify_window, t.escalation.max_rollbacks_per_hour,
                            runtime.new_incident_id)
    runtime.metrics.target_level.labels(t.name).set(0)
    runtime.metrics.incidents_open.labels(t.name).set(0)
    return TargetExecutor(t, machine, runtime.runners, runtime.journal, runtime.notifier, runtime.metrics,
                          runtime.clock, runtime.tasks.spawn, runtime.dry_run, hold=runtime.pausing.reader(t.name),
                          redactor=runtime.redactor, failpoints=runtime.failpoints)


async def close_runtime(runtime: Runtime) -> None:
    """What build_runtime opened, last to first; the state file after everything that may still write to it."""
    for src in runtime.sources.values():
        await src.close()
    await runtime.runners.close()
    await runtime.notifier.close()
    await runtime.session.close()
    await asyncio.to_thread(runtime.recorder.close)  # its queued lines land (bounded) off the loop
    if runtime.lock is None:  # a store handed in is the caller's to close
        return
    lost = await runtime.writer.stop(timeout=5)
    if lost:
        log.critical("state_writes_lost", count=lost, why="the state file could not be written before the stop")
    if runtime.writer.alive:
        # A write stuck inside SQLite: neither close the file under it nor let a successor take the lock
        # while it may still commit. The process exit releases both.
        log.critical("state_writer_still_running", why="a write did not return; the lock is kept until exit")
        return
    if isinstance(runtime.journal, SqliteStore):
        runtime.journal.close()
    runtime.lock.release()

