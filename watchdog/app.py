"""The composition root: builds every client, store and task, and stops them in order.

Long-running work is spawned only through `App.spawn`, which keeps a handle on
each task so shutdown can wait for it, then cancel what is left.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from watchdog.actions import build_runners
from watchdog.clock import Clock, SystemClock
from watchdog.config import process_environment
from watchdog.config.models import Config
from watchdog.escalation import Event, TargetMachine
from watchdog.config.types import format_duration
from watchdog.failpoints import Failpoints
from watchdog.health import PollPace, attempt_deadline, judge
from watchdog.retrying import on_attempt
from watchdog.sdnotify import SystemdNotifier
from watchdog.executor import TargetExecutor
from watchdog.journal import MemoryStore
from watchdog.storage import PauseStore, Store
from watchdog.lock import StateLock
from watchdog.metrics import Metrics, RuleSeries, rule_labels
from watchdog.notify import Notifier, build_channels
from watchdog.outbox import MemoryOutbox, SqliteOutbox
from watchdog.sources import AlertStore
from watchdog.pause import GLOBAL, Pause, Pauses
from watchdog.recovery import recover
from watchdog.redact import redactor_for
from watchdog.signals import SignalBoard
from watchdog.sources import SAMPLED, SourceDeps, SourceError, build_source
from watchdog.sources.base import Source
from watchdog.status import incident_documents, status_document
from watchdog.statewriter import StateWriter, WriteFailure
from watchdog.store import SqliteStore
from watchdog.web import build_web

log = structlog.get_logger("watchdog.app")
STATE_PAGE_EVERY = timedelta(minutes=10)


def incident_ids() -> Callable[[str, datetime], str]:
    # A random tail: a restarted process must never reuse an id within the same second.
    return lambda target, now: f"{target}-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


class App:
    def __init__(
        self,
        cfg: Config,
        *,
        clock: Clock | None = None,
        dry_run: bool | None = None,
        serve_http: bool = True,
        listeners: tuple[Callable[[Event, bool], None], ...] = (),
        journal: Store | None = None,
        owner: str = "the rollback-watchdog daemon",
        failpoints: Failpoints | None = None,
        sd: SystemdNotifier | None = None,
    ):
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.dry_run = cfg.watchdog.dry_run if dry_run is None else dry_run
        self.serve_http = serve_http
        self.metrics = Metrics()
        self.rule_series = RuleSeries(self.metrics)
        # Without one handed in, start() opens the SQLite store at state_path (and stop() closes it).
        self.journal: Store = journal if journal is not None else MemoryStore()
        self._store: SqliteStore | None = None
        self._writer = StateWriter(on_change=self._state_file_changed, on_bug=self._state_write_bug)
        self._lock: StateLock | None = None
        self.owner = owner
        self.failpoints = failpoints or Failpoints()
        self.sd = sd or SystemdNotifier()
        self._open_store = journal is None
        self.notifier = Notifier(self.metrics, self.clock)
        for fn in listeners:
            self.notifier.listen(fn)
        self.redactor = redactor_for(cfg)
        self.pauses = Pauses()
        self.alerts = AlertStore(self.clock)  # fed by POST /api/v1/alertmanager, read by alertmanager sources
        self.new_incident_id = incident_ids()
        self.sources: dict[str, Source] = {}
        self.board: SignalBoard | None = None
        self.executors: dict[str, TargetExecutor] = {}
        self.scheduler: AsyncIOScheduler | None = None
        self.session: aiohttp.ClientSession | None = None
        self.bound_port: int | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._polls: set[asyncio.Task[Any]] = set()
        self._progress: dict[str, datetime] = {}  # per source: a try started or an evaluation ended (health.py)
        self._deadlines: dict[str, timedelta] = {}
        self._inflight: dict[str, timedelta] = {}  # the deadline each running poll started with
        self.store_wait = 5.0  # how long an operator's command waits for the state file before answering
        self._state_paged_at: datetime | None = None
        self._state_paged = False

    # --- building and starting -------------------------------------------------

    async def start(self, schedule: bool = True) -> None:
        cfg = self.cfg
        if self._open_store and self._store is None:
            # The lock first: a second writer must not even create or migrate the file.
            lock = StateLock(cfg.watchdog.state_path)
            lock.acquire(self.owner)  # LockHeld or StoreError: one line, before any network
            try:
                self._store = SqliteStore(cfg.watchdog.state_path)  # StoreError: one line
            except BaseException:
                lock.release()
                raise
            self.journal = self._store
            self._lock = lock
            # From here on no write to the state file runs on the event loop (watchdog/statewriter.py).
            self._writer.start()
            self._store.attach(self._writer)
        self.session = aiohttp.ClientSession()
        if self._store is not None:
            outbox = SqliteOutbox(self._store)
            outbox.prune(self.clock.now())
            self.notifier.bind(outbox, self.journal)
        else:
            self.notifier.bind(MemoryOutbox(), self.journal)
        self.notifier.set_channels(build_channels(cfg.notifications, self.session))
        if self._store is not None:
            self._replay_unqueued(outbox)
        deps = SourceDeps(cfg.aws, self.session, self.metrics, self.alerts)
        self.board = SignalBoard(cfg, {s.name: SAMPLED[s.type] for s in cfg.sources})
        for s in cfg.sources:
            src = build_source(s, self.board.queries(s.name), deps)
            await src.start()
            self.sources[s.name] = src
            self.metrics.source_up.labels(s.name).set(0)
        self.pace_polls()
        runners = self.runners()
        for t in cfg.targets:
            machine = TargetMachine(
                t.name, t.max_level, t.escalation.verify_window, t.escalation.max_rollbacks_per_hour,
                self.new_incident_id, paused=self.pause_reader(t.name),
            )
            self.executors[t.name] = TargetExecutor(
                t, machine, runners, self.journal, self.notifier, self.metrics, self.clock, self.spawn, self.dry_run,
                self.redactor, self.failpoints,
            )
            self.metrics.target_level.labels(t.name).set(0)
            self.metrics.incidents_open.labels(t.name).set(0)
        self.rule_series.keep(rule_labels(self.cfg))
        self.metrics.paused.set(0)
        failure = self._writer.failure  # the file may have failed already, before the targets existed
        self.metrics.state_writable.set(0 if failure else 1)
        if failure is not None:
            self._page_state_failure(failure)
        self._restore_pauses(self.journal)
        self.spawn(self.notifier.run(), "notifier")
        await recover(self)  # before the first poll: open incidents continue where they stopped
        if self.serve_http:
            await self._start_web()
        if schedule:
            self._start_scheduler()
        if self.sd.enabled and schedule:
            self.sd.ready(self.status_line())
            self.spawn(self._systemd_loop(), "sd_notify")
        if self.failpoints.armed:
            log.warning("failpoints_armed", failpoints=sorted(self.failpoints.armed))
        log.info("started", targets=[t.name for t in cfg.targets], sources=[s.name for s in cfg.sources],
                 dry_run=self.dry_run, listen=f"{cfg.watchdog.listen_host}:{self.bound_port}" if self.bound_port else None)

    def _replay_unqueued(self, outbox: SqliteOutbox) -> None:
        """Events the audit log has but the outbox never got: the daemon died between the two writes."""
        last = outbox.last_audit_seq()
        if last is None:  # nothing ever queued here: no anchor, and old history must not be re-sent
            return
        if self._store is None:
            return
        missed = self._store.events_after(last)
        events = [(r.seq, Event(r.data.get("event", "?"), r.data.get("severity", "warning"), r.target,
                                           r.incident, r.level, r.at, r.data.get("why", ""), r.data.get("next", ""),
                                           r.data.get("details") or {}), r.dry_run) for r in missed]
        if events:
            log.warning("notifications_replayed", events=len(events), queued=self.notifier.replay(events))

    async def _start_web(self) -> None:
        self._runner = web.AppRunner(build_web(self), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.cfg.watchdog.listen_host, self.cfg.watchdog.listen_port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else self.cfg.watchdog.listen_port

    def runners(self) -> dict[str, Any]:
        if self.session is None:
            raise RuntimeError("start() first")
        return build_runners(self.session, process_environment())

    async def reload(self, new: Config) -> list[str]:
        """Apply a validated config (SIGHUP); ReloadRefused keeps the old one running."""
        from watchdog.reload import apply_reload

        return await apply_reload(self, new)

    @property
    def polling(self) -> bool:
        """A scheduled poll (and its evaluation) is running now."""
        return bool(self._polls)

    def pace_polls(self) -> None:
        """Each source's poll deadline, from its config (start, reload)."""
        self._deadlines = {s.name: attempt_deadline(s.timeout, s.retry) for s in self.cfg.sources}
        now = self.clock.now()
        self._progress = {name: self._progress.get(name, now) for name in self._deadlines}

    def reschedule(self) -> None:
        self.pace_polls()
        if self.scheduler is None:
            return
        self.scheduler.remove_all_jobs()
        self._add_jobs()

    def _start_scheduler(self) -> None:
        # Started inside the running loop, as APScheduler's asyncio scheduler requires.
        self.scheduler = AsyncIOScheduler(timezone=timezone.utc)
        self._add_jobs()
        self.scheduler.start()

    def _add_jobs(self) -> None:
        if self.scheduler is None:
            return
        now = datetime.now(timezone.utc)
        for s in self.cfg.sources:
            self.scheduler.add_job(
                self.poll, "interval", seconds=s.interval.total_seconds(), args=[s.name], id=f"poll:{s.name}",
                max_instances=1, coalesce=True, next_run_time=now, misfire_grace_time=None,
            )

    def pause_reader(self, target: str) -> Callable[[datetime], str | None]:
        def paused(now: datetime) -> str | None:
            p = self.pauses.active(target, now)
            return p.describe() if p else None

        return paused

    # --- operator control (the control API calls these) ----------------------------

    def _restore_pauses(self, store: PauseStore) -> None:
        """A pause is a maintenance window: a restart inside it (kill -9, an upgrade, a reboot) must keep it."""
        now, restored = self.clock.now(), []
        pauses, unreadable = store.pauses()
        for scope, why in unreadable:  # never silent: a lost pause lets actions run in a maintenance window
            log.critical("pause_unreadable", scope=scope, why=why, next="pause again by hand if it should hold")
        for p in pauses:
            if p.until <= now or (p.scope != GLOBAL and p.scope not in self.executors):
                store.delete_pause(p.scope)
                log.info("pause_dropped", scope=p.scope, until=p.until.isoformat(), reason=p.reason,
                         why="it ended while the watchdog was stopped" if p.until <= now else "no such target now")
                continue
            self.pauses.set(p.scope, p.until, p.reason)
            restored.append({"scope": p.scope, "until": p.until.isoformat(), "reason": p.reason})
        if restored:
            self.metrics.paused.set(1 if any(p.scope == GLOBAL for p in self.pauses.all(now)) else 0)
            log.warning("pauses_restored", pauses=restored, why="paused before the restart; no action until they end")

    async def pause(self, target: str | None, duration: timedelta, reason: str) -> tuple[Pause, bool]:
        """The pause, and whether it is in the state file (a restart keeps it) when this returns."""
        if target is not None and target not in self.executors:
            raise KeyError(target)
        now = self.clock.now()
        pause = self.pauses.set(target or GLOBAL, now + duration, reason)
        self.journal.save_pause(pause)
        self._announce_pause("paused", pause, now, f"paused: {reason}", f"no action until {pause.until:%H:%M:%S}Z or resume")
        return pause, await self._stored()

    async def _stored(self) -> bool:
        """Wait (a while) for what was written so far: an operator told "paused" must not lose it to a kill -9.
        False when the state file is failing: in force now, not yet kept across a restart."""
        try:
            await asyncio.wait_for(self.journal.flush(), self.store_wait)
        except TimeoutError:
            return False
        return True

    async def resume(self, target: str | None, reason: str) -> tuple[Pause | None, bool]:
        if target is not None and target not in self.executors:
            raise KeyError(target)
        pause = self.pauses.clear(target or GLOBAL)
        if pause is not None:
            self.journal.delete_pause(pause.scope)
        stored = await self._stored()
        if pause is not None:
            self._announce_pause("resumed", pause, self.clock.now(), f"resumed: {reason}", "acting on alarms again")
            for name in self._scope_targets(pause.scope):
                await self.evaluate(name)  # act on what is alarming now, not at the next poll
        return pause, stored

    def _expire_pauses(self, now: datetime) -> None:
        for pause in self.pauses.expire(now):
            self.journal.delete_pause(pause.scope)
            self._announce_pause("resumed", pause, now, "the pause expired", "acting on alarms again")

    def _announce_pause(self, kind: str, pause: Pause, now: datetime, why: str, nxt: str) -> None:
        self.metrics.paused.set(1 if any(p.scope == GLOBAL for p in self.pauses.all(now)) else 0)
        for name in self._scope_targets(pause.scope):
            ex = self.executors[name]
            inc = ex.machine.incident
            ex.announce(Event(kind, "info", name, inc.id if inc else None, ex.machine.level, now, why, nxt))

    def _scope_targets(self, scope: str) -> list[str]:
        return list(self.executors) if scope == GLOBAL else [scope]

    async def manual_rollback(self, target: str, level: int, reason: str) -> str:
        return await self.executors[target].manual(level, reason)

    async def resolve(self, incident: str, note: str) -> tuple[str, bool]:
        """The target, and whether the closing is in the state file (a kill -9 now would not reopen it)."""
        for ex in self.executors.values():
            inc = ex.machine.incident
            if inc is not None and inc.id == incident:
                await ex.resolve(note)
                return ex.target.name, await self._stored()
        raise KeyError(incident)

    # --- the state file ------------------------------------------------------------------

    def _state_file_changed(self, failure: WriteFailure | None) -> None:
        """The writer's report (on the loop). Failing: /healthz 503, a critical line, a page that does not
        go through the state file. Writable again: said, and recorded like any event."""
        self.metrics.state_writable.set(0 if failure else 1)
        if failure is not None:
            log.critical("state_write_failed", error=failure.error, since=failure.since.isoformat(),
                         waiting=self._writer.pending, why="no action runs until its intent is in the state file")
            self._page_state_failure(failure)
            return
        log.warning("state_write_recovered", why="the state file can be written again")
        if self._state_paged:  # the all-clear follows a page, not every short flap the page limit swallowed
            self._state_paged = False
            now = self.clock.now()
            for name, ex in self.executors.items():
                inc = ex.machine.incident
                ex.announce(Event("state_writable", "info", name, inc.id if inc else None, ex.machine.level, now,
                                  "the state file can be written again", "decisions and actions go on"))

    def _page_state_failure(self, failure: WriteFailure) -> None:
        """One message per channel (not per target), at most one every STATE_PAGE_EVERY: a disk hovering at
        full would otherwise page on every flap."""
        now = self.clock.now()
        if not self.executors:
            return  # during start, before the targets exist: start() pages once they do
        if self._state_paged_at is not None and now - self._state_paged_at < STATE_PAGE_EVERY:
            return
        self._state_paged_at, self._state_paged = now, True
        why = f"the state file cannot be written: {failure.error}"
        nxt = ("no action runs until its intent is recorded; free disk space or end the other process's lock"
               if not failure.fatal else "restart the watchdog: it must read the state file again")
        self.notifier.send_direct([
            Event("state_unwritable", "critical", name, ex.machine.incident.id if ex.machine.incident else None,
                  ex.machine.level, now, why, nxt)
            for name, ex in self.executors.items()])

    def _state_write_bug(self, error: str) -> None:
        log.error("state_write_crashed", error=error, why="a write the state file would not take; skipped")

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("task_crashed", task=task.get_name(), error=f"{type(exc).__name__}: {exc}", exc_info=exc)

    # --- the loop's work -----------------------------------------------------------

    async def poll(self, name: str) -> None:
        """The scheduler's job: poll one source, then evaluate the targets that use it."""
        task = asyncio.current_task()
        if task is not None:
            self._polls.add(task)
        try:
            await self._poll(name)
        finally:
            if task is not None:
                self._polls.discard(task)

    def alert_sources(self) -> list[str]:
        return [s.name for s in self.cfg.sources if s.type == "alertmanager"]

    async def once(self) -> dict[str, dict[str, Any]]:
        """One poll of every source and one evaluation, with no action: `run --once`."""
        board = self.board
        if board is None:
            raise RuntimeError("start() first")
        await asyncio.gather(*(self._poll(name, evaluate=False) for name in self.sources))
        now = self.clock.now()
        return {t.name: board.evaluate(t.name, now) for t in self.cfg.targets}

    async def _poll(self, name: str, evaluate: bool = True) -> None:
        board = self.board
        if board is None:
            return
        src = self.sources[name]
        started = self.clock.monotonic()
        now = self.clock.now()
        deadline = self._deadlines[name]
        self._inflight[name] = deadline  # judged by the deadline it started with, whatever a reload sets
        try:
            data = await self._read(name, src, now, deadline)
        except SourceError as exc:
            self._source_failed(name, str(exc), now)
        except TimeoutError:
            self._source_failed(name, f"no try started or answered within {format_duration(deadline)} (one try's "
                                "timeout and backoff): cut off", now)
        except Exception as exc:  # an unexpected failure is still only a failed poll
            self._source_failed(name, f"{type(exc).__name__}: {exc}", now)
        else:
            board.source_ok(name, dict(data), now)
            self.metrics.source_up.labels(name).set(1)
        finally:
            self._inflight.pop(name, None)
        self.metrics.source_poll_duration.labels(name).observe(self.clock.monotonic() - started)
        judged = True
        if evaluate:
            for target in board.targets_of(name):
                try:
                    await self.evaluate(target)
                except Exception as exc:  # a bug: the other targets are still judged, and /healthz says it
                    judged = False
                    log.error("evaluation_crashed", target=target, source=name, error=f"{type(exc).__name__}: {exc}",
                              exc_info=exc)
                # A level this target just started sends its first request now, not after every other
                # target of the source has been evaluated (bench: reaction time at 1 000+ rules).
                await asyncio.sleep(0)
        if judged:
            self._progress[name] = self.clock.now()

    async def _read(self, name: str, src: Source, now: datetime, deadline: timedelta) -> Mapping[str, Any]:
        """The poll, cut off when no try has started for `deadline`: a hanging source is then a failed poll,
        like one that answers 500, and its targets are judged (blind, paged) instead of waiting on it."""
        loop, secs = asyncio.get_running_loop(), deadline.total_seconds()
        self._progress[name] = now
        async with asyncio.timeout(secs) as cut:
            def attempt_started() -> None:
                cut.reschedule(loop.time() + secs)
                self._progress[name] = self.clock.now()

            with on_attempt(attempt_started):
                return await src.poll(now)

    def _source_failed(self, name: str, error: str, now: datetime) -> None:
        error = self.redactor.text(error)
        if self.board is not None:
            self.board.source_failed(name, error, now)
        self.metrics.source_up.labels(name).set(0)
        self.metrics.source_errors.labels(name).inc()
        log.warning("source_poll_failed", source=name, error=error)

    async def evaluate(self, target: str) -> None:
        board = self.board
        if board is None:
            return
        now = self.clock.now()
        self._expire_pauses(now)
        views = board.evaluate(target, now)
        record = self.rule_series.record
        for rname, view in views.items():
            ev = view.evaluation
            record(target, rname, board.slots[f"{target}/{rname}"].rule.category, ev.state.number,
                   None if ev.value is None else float(ev.value))
        self.metrics.last_evaluation.set(now.timestamp())
        ex = self.executors[target]
        ex.set_blind_sources(board.blind_sources(target, now))
        await ex.observe(views)

    # --- stopping ---------------------------------------------------------------------

    async def stop(self) -> None:
        """Ordered: stop polling, let a running level finish (bounded), then close."""
        grace = self.cfg.watchdog.shutdown_grace.total_seconds()
        log.info("stopping", grace_s=grace)
        self.sd.stopping()
        for ex in self.executors.values():
            ex.stopping = True
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.pause()  # shutdown(wait=True) does not wait for asyncio jobs; we do
        if self._polls:
            _, slow = await asyncio.wait(set(self._polls), timeout=min(grace, 30))
            for t in slow:
                t.cancel()  # a poll still retrying must not run on against closed clients
            if slow:
                await asyncio.wait(slow, timeout=5)
        levels = [e.level_task for e in self.executors.values() if e.busy]
        if levels:
            log.info("waiting_for_level", count=len(levels), grace_s=grace)
            _, pending = await asyncio.wait(levels, timeout=grace)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        await self.notifier.drain(timeout=5)
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        if self._runner is not None:
            await self._runner.cleanup()
        for src in self.sources.values():
            await src.close()
        await self.notifier.close()
        if self.session is not None:
            await self.session.close()
        if self._store is not None:
            lost = await self._writer.stop(timeout=5)  # last: everything above may still write to it
            if lost:
                log.critical("state_writes_lost", count=lost, why="the state file could not be written before the stop")
            if self._writer.alive:
                # A write stuck inside SQLite: neither close the file under it nor let a successor take the
                # lock while it may still commit. The process exit releases both.
                log.critical("state_writer_still_running", why="a write did not return; the lock is kept until exit")
                log.info("stopped")
                return
            self._store.close()
            self._store = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        log.info("stopped")

    # --- what the web face reads --------------------------------------------------------

    def status_line(self) -> str:
        """One line for systemctl status: every target's level and phase, sources up, pauses."""
        now = self.clock.now()
        targets = ", ".join(
            f"{name} L{ex.machine.level} {ex.machine.phase.value}" + (" blind" if ex.blind_sources else "")
            for name, ex in self.executors.items()
        )
        up = sum(1 for h in self.board.sources.values() if h.up) if self.board else 0
        paused = ", ".join(p.scope for p in self.pauses.all(now)) or "none"
        return f"{targets}; sources up {up}/{len(self.cfg.sources)}; paused: {paused}" + (
            "; DRY RUN" if self.dry_run else "")

    async def _systemd_loop(self) -> None:
        """WATCHDOG=1 only while evaluations are fresh: a stalled loop goes quiet and systemd restarts it."""
        every = self.sd.ping_every or 5.0
        while True:
            healthy, why = self.liveness()
            if healthy and self.sd.ping_every:
                self.sd.ping()
            elif not healthy:
                log.warning("watchdog_ping_withheld", why=why)
            self.sd.status(self.status_line())
            await asyncio.sleep(every)

    def health(self) -> tuple[bool, str]:
        """/healthz: alive (`liveness`) and able to record what it decides."""
        failure = self._writer.failure
        if failure is not None:
            return False, (f"state file not writable since {failure.since:%H:%M:%S}Z: {failure.error} "
                           f"({self._writer.pending} writes waiting)")
        return self.liveness()

    def liveness(self) -> tuple[bool, str]:
        """What the systemd watchdog is told: a restart cannot fix a full disk or another process's lock, and
        would drop the writes waiting for it, so a state file failure does not count here; a file changed
        under the watchdog (StateConflict) does, since only a restart reads it again."""
        failure = self._writer.failure
        if failure is not None and failure.fatal:
            return False, f"the state file changed under the watchdog ({failure.error}): restart it"
        running = self.scheduler is not None and self.scheduler.running
        paces = [PollPace(s.name, s.interval, max(self._deadlines[s.name], self._inflight.get(s.name, timedelta(0))),
                          self._progress[s.name])
                 for s in self.cfg.sources if s.name in self._progress]
        return judge(self.clock.now(), running, paces)

    def readiness(self) -> tuple[bool, str]:
        if self.board is None:
            return False, "not started"
        waiting = [h.name for h in self.board.sources.values() if not h.answered]
        if waiting:
            return False, "waiting for first answer from: " + ", ".join(waiting)
        return True, "config loaded; every source has answered"

    def status(self) -> dict[str, Any]:
        return status_document(self)

    def incidents(self) -> list[dict[str, Any]]:
        """Open incidents and the last closed one per target, newest first."""
        return incident_documents(self)
