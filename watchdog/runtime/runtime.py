"""The running watchdog: polling and evaluating, the operators' commands, health, readiness and status.

Built whole by watchdog/runtime/wiring.py (nothing here is optional, nothing is filled in later) and run by the
lifecycle in app.py, which owns the scheduler, the web runner and the order of the stop; of the scheduler
this sees only whether it runs (`SchedulerView`). The HTTP face (web, control, status), reload and recovery
work on this object and never on the lifecycle. A poll and an operator's command hold `gate` while they run,
and a reload swaps its parts in (`swap`) only when none is inside (watchdog/runtime/reloadgate.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

import aiohttp
import structlog

from watchdog.actions import Runners
from watchdog.shared.clock import Clock
from watchdog.config.models import Config
from watchdog.config.types import format_duration
from watchdog.core.escalation import RuleView
from watchdog.runtime.executor import TargetExecutor
from watchdog.runtime.failpoints import Failpoints
from watchdog.core.health import PollPace, attempt_deadline, judge
from watchdog.support.metrics import Metrics, RuleSeries
from watchdog.notify import Notifier
from watchdog.core.pause import Pause
from watchdog.runtime.pausing import PauseKeeper
from watchdog.runtime.peers import PeerRounds, RoundParts
from watchdog.runtime.recording import Recorder
from watchdog.shared.redact import Redactor
from watchdog.runtime.reloadgate import ReloadGate
from watchdog.support.retrying import on_attempt
from watchdog.core.signals import SignalBoard
from watchdog.sources import AlertStore, SourceError, SourceFactory, source_kind
from watchdog.sources.base import Source
from watchdog.sources.kind import pace_of
from watchdog.sources.periodic import Periodic
from watchdog.state.backend import OpenState
from watchdog.runtime.statewatch import StateWatch
from watchdog.runtime.status import incident_documents, status_document
from watchdog.state.storage import Store
from watchdog.support.tasks import Tasks

log = structlog.get_logger("watchdog.runtime.runtime")
# How long a poll lets a level it started have its first action answered before judging the next target.
LEVEL_HEAD_START = 0.1


class SchedulerView(Protocol):
    """What the runtime may know of the lifecycle's scheduler (APScheduler's has it): whether it runs."""

    @property
    def running(self) -> bool: ...


class Unscheduled:
    """No scheduler (`run --once`, `rollback --offline` without one, the replay): never running."""

    running = False


class Runtime:
    # Every attribute, typed: none may be None (tests/test_wiring.py holds a built runtime to that).
    cfg: Config
    clock: Clock
    dry_run: bool
    metrics: Metrics
    rule_series: RuleSeries
    journal: Store
    state: OpenState
    session: aiohttp.ClientSession
    notifier: Notifier
    redactor: Redactor
    alerts: AlertStore
    board: SignalBoard
    sources: dict[str, Source]
    executors: dict[str, TargetExecutor]
    source_factory: SourceFactory
    pausing: PauseKeeper
    statewatch: StateWatch
    tasks: Tasks
    failpoints: Failpoints
    new_incident_id: Callable[[str, datetime], str]
    runners: Runners
    recorder: Recorder
    scheduler: SchedulerView
    store_wait: float
    gate: ReloadGate
    peer_rounds: PeerRounds
    _polls: set[asyncio.Task[Any]]
    _progress: dict[str, datetime]
    _deadlines: dict[str, timedelta]
    _gaps: dict[str, timedelta]
    _inflight: dict[str, timedelta]

    def __init__(self, *, cfg: Config, clock: Clock, dry_run: bool, metrics: Metrics, state: OpenState,
                 session: aiohttp.ClientSession, notifier: Notifier, redactor: Redactor, alerts: AlertStore,
                 board: SignalBoard, sources: dict[str, Source], source_factory: SourceFactory,
                 executors: dict[str, TargetExecutor], pausing: PauseKeeper, statewatch: StateWatch, tasks: Tasks,
                 failpoints: Failpoints, new_incident_id: Callable[[str, datetime], str],
                 runners: Runners, recorder: Recorder, scheduler: SchedulerView):
        self.cfg, self.clock, self.dry_run, self.metrics = cfg, clock, dry_run, metrics
        self.rule_series = metrics.rule_series
        self.state, self.journal, self.session = state, state.store, session
        self.notifier, self.redactor, self.alerts = notifier, redactor, alerts
        self.board, self.sources = board, sources
        # Kept as this one mapping, whose contents `swap` replaces: the pauses and the state watch read it.
        self.executors = executors
        self.source_factory = source_factory  # how a reload builds its sources: the same kind as at start
        self.pausing, self.statewatch, self.tasks = pausing, statewatch, tasks
        self.failpoints, self.new_incident_id, self.runners = failpoints, new_incident_id, runners
        self.recorder = recorder  # every poll's answer, for a later replay (watchdog/runtime/recording.py)
        self.scheduler = scheduler  # the lifecycle's (app.py), for liveness
        self.store_wait = 5.0  # how long an operator's command waits for the state file before answering
        self.gate = ReloadGate()
        # The lease rounds of a shared state (the lifecycle schedules them).
        self.peer_rounds = PeerRounds(RoundParts(state, executors, metrics, pausing, notifier, clock, self.gate,
                                                 self.evaluate, tasks.spawn))
        self._polls = set()
        self._progress = {}  # per source: a try started or an evaluation ended (health.py)
        self._deadlines = {}
        self._inflight = {}  # the deadline each running poll started with
        self.pace_polls()

    # --- what a reload swaps in (watchdog/runtime/reload.py builds it; the gate keeps polls and commands out) --------

    def swap(self, cfg: Config, *, sources: dict[str, Source], board: SignalBoard, redactor: Redactor,
             executors: Mapping[str, TargetExecutor]) -> dict[str, Source]:
        """The new config and the parts built for it, in one step; returns the sources swapped out (the caller
        closes them once no poll uses them). The poll pace follows the new config."""
        gone = self.sources
        self.cfg, self.sources, self.board, self.redactor = cfg, sources, board, redactor
        kept = dict(executors)
        self.executors.clear()
        self.executors.update(kept)
        self.pace_polls()
        return gone

    def use_recorder(self, recorder: Recorder) -> None:
        """From the next poll on, its answers go to `recorder` (a reopened or changed `watchdog.record`)."""
        self.recorder = recorder

    # --- polling and evaluating -------------------------------------------------------------

    @property
    def polling(self) -> bool:
        """A scheduled poll (and its evaluation) is running now."""
        return bool(self._polls)

    @property
    def polls(self) -> set[asyncio.Task[Any]]:
        return set(self._polls)

    def pace_polls(self) -> None:
        """Each source's poll deadline and the longest time between its ticks, from its config (built,
        reloaded)."""
        self._deadlines = {s.name: attempt_deadline(s.timeout, s.retry) for s in self.cfg.sources}
        self._gaps = {s.name: pace_of(self.cfg, s).gap for s in self.cfg.sources}
        now = self.clock.now()
        self._progress = {name: self._progress.get(name, now) for name in self._deadlines}

    def alert_sources(self) -> list[str]:
        """The sources whose data is pushed to the watchdog: each push polls them (control.py)."""
        return [s.name for s in self.cfg.sources if source_kind(s).pushed]

    async def poll(self, name: str, due: datetime) -> None:
        """The scheduler's job (and a pushed poll's): poll one source at its tick `due`, then evaluate the
        targets that use it. The whole of it holds the gate: a reload never closes the source under its read,
        nor swaps the board and the executors between its read and its evaluation."""
        task = asyncio.current_task()
        if task is not None:
            self._polls.add(task)
        try:
            async with self.gate.polling():
                if name not in self.sources:  # a reload removed the source while this poll waited at the gate
                    return
                await self._poll(name, due)
        finally:
            if task is not None:
                self._polls.discard(task)

    def polls_in_flight(self) -> dict[str, timedelta]:
        """Each source with a poll reading now, and the deadline that poll started with."""
        return dict(self._inflight)

    def drain_bound(self) -> float:
        """Seconds a reload waits for the polls in flight: each of their tries starts within its deadline, and
        a source makes `retry.attempts` tries of a call; a poll still running past that is stuck."""
        attempts = {s.name: s.retry.attempts for s in self.cfg.sources}
        longest = max((d * attempts.get(name, 1) for name, d in self._inflight.items()), default=timedelta(0))
        return longest.total_seconds() + 5.0  # and the evaluation after the read, on a loaded loop

    async def once(self) -> dict[str, dict[str, RuleView]]:
        """One poll of every source and one evaluation, with no action: `run --once`. Its one tick is now."""
        due = self.clock.now()
        over = await asyncio.gather(*(self._poll(name, due, evaluate=False) for name in self.sources))
        at = max(over, default=due)  # when the last read was over
        return {t.name: self.board.evaluate(t.name, at) for t in self.cfg.targets}

    async def _poll(self, name: str, due: datetime, evaluate: bool = True) -> datetime:
        """Read the source at the tick `due`, then judge its targets, every one of them at the same time: when
        the read was over (`due` + how long it took). A level one target starts here runs on (its actions
        take what they take) while the next target is judged, at that same time, never at a later one the
        action's own duration would give it. Returns the time the targets were judged at."""
        board, src = self.board, self.sources[name]
        started = self.clock.monotonic()
        deadline = self._deadlines[name]
        self._inflight[name] = deadline  # judged by the deadline it started with, whatever a reload sets
        try:
            data = await self._read(name, src, due, deadline)
        except SourceError as exc:
            self._source_failed(name, src, str(exc), due, started)
        except TimeoutError:
            self._source_failed(name, src, f"no try started or answered within {format_duration(deadline)} (one "
                                "try's timeout and backoff): cut off", due, started)
        except Exception as exc:  # an unexpected failure is still only a failed poll
            self._source_failed(name, src, f"{type(exc).__name__}: {exc}", due, started)
        else:
            board.source_ok(name, dict(data), due)
            self.metrics.source_up.labels(name).set(1)
            self.recorder.polled(name, board.sources[name].type, src.sampled, due, self._took(started), data, None)
        finally:
            self._inflight.pop(name, None)
        took = self._took(started)
        self.metrics.source_poll_duration.labels(name).observe(took)
        at = due + timedelta(seconds=took)
        judged = True
        if evaluate:
            for target in board.urgent_first(name, self.hot_targets()):
                try:
                    await self.evaluate(target, at)
                except Exception as exc:  # a bug: the other targets are still judged, and /healthz says it
                    judged = False
                    log.error("evaluation_crashed", target=target, source=name, error=f"{type(exc).__name__}: {exc}",
                              exc_info=exc)
                # A level this target just started sends its first request now, not after every other
                # target of the source has been evaluated (bench: reaction time at 1 000+ rules).
                if (ex := self.executors.get(target)) is not None:
                    await ex.under_way(LEVEL_HEAD_START)
                await asyncio.sleep(0)
        if judged:
            self._progress[name] = self.clock.now()
        return at

    def _took(self, started: float) -> float:
        """Seconds since `started` (the clock's monotonic time): how long the read took. The replay's clock
        moves on by a recorded read's `took` while it answers, so it judges when the live read was over."""
        return max(0.0, self.clock.monotonic() - started)

    async def _read(self, name: str, src: Source, due: datetime, deadline: timedelta) -> Mapping[str, Any]:
        """The poll, cut off when no try has started for `deadline`: a hanging source is then a failed poll,
        like one that answers 500, and its targets are judged (blind, paged) instead of waiting on it."""
        loop, secs = asyncio.get_running_loop(), deadline.total_seconds()
        self._progress[name] = self.clock.now()
        async with asyncio.timeout(secs) as cut:
            def attempt_started() -> None:
                cut.reschedule(loop.time() + secs)
                self._progress[name] = self.clock.now()

            with on_attempt(attempt_started):
                if isinstance(src, Periodic):  # it reads what is due at `due`, every period for a hot target
                    return await src.poll_due(due, self.hot_targets())
                return await src.poll(due)

    def hot_targets(self) -> frozenset[str]:
        """The targets with an open incident (a level running, being verified, mitigated): their queries are
        read every period whatever `read_every` says, so verification never waits on a seldom read."""
        return frozenset(name for name, ex in self.executors.items() if ex.machine.incident is not None)

    def _source_failed(self, name: str, src: Source, error: str, due: datetime, started: float) -> None:
        error = self.redactor.text(error)
        self.board.source_failed(name, error, due)
        self.recorder.polled(name, self.board.sources[name].type, src.sampled, due, self._took(started), None, error)
        self.metrics.source_up.labels(name).set(0)
        self.metrics.source_errors.labels(name).inc()
        log.warning("source_poll_failed", source=name, error=error)

    async def evaluate(self, target: str, now: datetime) -> None:
        """Judge `target` at `now`: its poll's time (when the read was over), or an operator's command's."""
        board = self.board
        self.pausing.expire(now)
        views = board.evaluate(target, now)
        self.metrics.last_evaluation.set(now.timestamp())
        ex = self.executors[target]
        ex.set_blind_sources(board.blind_sources(target, now), now)
        await ex.observe(views, now)

    # --- operator control (the control API calls these) ----------------------------------------

    # Each command holds the gate from its target check to its change (a reload swaps before or after, never
    # in between); the wait for the state file comes after, outside it, so a reload never waits on a disk.

    async def pause(self, target: str | None, duration: timedelta, reason: str) -> tuple[Pause, bool]:
        """The pause, and whether it is in the state file (a restart keeps it) when this returns."""
        with self.gate.commanding():
            if target is not None and target not in self.executors:
                raise KeyError(target)
            pause = self.pausing.set(target, duration, reason)
        return pause, await self._stored()

    async def resume(self, target: str | None, reason: str) -> tuple[Pause | None, bool]:
        with self.gate.commanding():
            if target is not None and target not in self.executors:
                raise KeyError(target)
            pause = self.pausing.clear(target, reason)
        stored = await self._stored()
        if pause is not None:
            with self.gate.commanding():
                now = self.clock.now()
                for name in self.pausing.scope_targets(pause.scope):  # the targets in force now
                    await self.evaluate(name, now)  # act on what is alarming now, not at the next poll
        return pause, stored

    async def manual_rollback(self, target: str, level: int, reason: str) -> str:
        """The caller holds the gate across its own checks of `target` and this (control.rollback), or runs
        where no reload can (rollback --offline)."""
        return await self.executors[target].manual(level, reason)

    async def resolve(self, incident: str, note: str) -> tuple[str, bool]:
        """The target, and whether the closing is in the state file (a kill -9 now would not reopen it)."""
        with self.gate.commanding():
            for ex in self.executors.values():
                inc = ex.machine.incident
                if inc is not None and inc.id == incident:
                    await ex.resolve(note)
                    break
            else:
                raise KeyError(incident)
        return ex.target.name, await self._stored()

    async def _stored(self) -> bool:
        """Wait (a while) for what was written so far: an operator told "paused" must not lose it to a kill -9.
        False when the state file is failing: in force now, not yet kept across a restart."""
        try:
            await asyncio.wait_for(self.journal.flush(), self.store_wait)
        except TimeoutError:
            return False
        return True

    # --- what the web face and systemd read ------------------------------------------------------

    def health(self) -> tuple[bool, str]:
        """/healthz: alive (`liveness`) and able to record what it decides."""
        health = self.state.health
        failure = health.failure
        if failure is not None:
            return False, (f"state file not writable since {failure.since:%H:%M:%S}Z: {failure.error} "
                           f"({health.pending} writes waiting)")
        return self.liveness()

    def liveness(self) -> tuple[bool, str]:
        """What the systemd watchdog is told: a restart cannot fix a full disk or another process's lock, and
        would drop the writes waiting for it, so a state file failure does not count here; a file changed
        under the watchdog (StateConflict) does, since only a restart reads it again."""
        failure = self.state.health.failure
        if failure is not None and failure.fatal:
            return False, f"the state file changed under the watchdog ({failure.error}): restart it"
        paces = [PollPace(s.name, self._gaps[s.name], max(self._deadlines[s.name], self._inflight.get(s.name, timedelta(0))),
                          self._progress[s.name])
                 for s in self.cfg.sources if s.name in self._progress]
        return judge(self.clock.now(), self.scheduler.running, paces)

    def readiness(self) -> tuple[bool, str]:
        waiting = [h.name for h in self.board.sources.values() if not h.answered]
        if waiting:
            return False, "waiting for first answer from: " + ", ".join(waiting)
        return True, "config loaded; every source has answered"

    def status(self) -> dict[str, Any]:
        return status_document(now=self.clock.now(), board=self.board, executors=self.executors,
                               pauses=self.pausing.pauses, health=self.health(), dry_run=self.dry_run,
                               notifications=self.notifier.status(), peers=self.state.peers,
                               shared=self.journal)

    def incidents(self) -> list[dict[str, Any]]:
        """Open incidents and the last closed one per target, newest first."""
        return incident_documents(self.executors)

    def status_line(self) -> str:
        """One line for systemctl status: every target's level and phase, sources up, pauses."""
        now = self.clock.now()
        targets = ", ".join(
            f"{name} L{ex.machine.level} {ex.machine.phase.value}" + (" blind" if ex.blind_sources else "")
            for name, ex in self.executors.items()
        )
        up = sum(1 for h in self.board.sources.values() if h.up)
        paused = ", ".join(p.scope for p in self.pausing.pauses.all(now)) or "none"
        return f"{targets}; sources up {up}/{len(self.cfg.sources)}; paused: {paused}" + (
            "; DRY RUN" if self.dry_run else "")
