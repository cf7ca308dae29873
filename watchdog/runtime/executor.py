"""Carries out what the escalation machine decides, for one target.

Every action attempt is journaled as an intent before it starts and as an
outcome after it ends. A level runs under its deadline; retries happen inside
it. Decisions go back into the machine under one lock per target, so the
machine sees one input at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any

import structlog

from watchdog.actions import ActionFailed, Runners
from watchdog.shared.clock import Clock
from watchdog.state.codec import encode_incident
from watchdog.config.models import Action, Target
from watchdog.core.escalation import (
    Command,
    Incident,
    RuleView,
    RunChecks,
    RunLevel,
    TargetMachine,
)
from watchdog.shared.events import Event
from watchdog.runtime.failpoints import Failpoints
from watchdog.support.metrics import Metrics
from watchdog.notify import Notifier
from watchdog.shared.redact import Redactor
from watchdog.support.retrying import retrying
from watchdog.state.storage import Store

log = structlog.get_logger("watchdog.runtime.executor")
Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]
Hold = Callable[[datetime], "str | None"]  # the pause holding a target at a time, described, or None


class TargetExecutor:
    def __init__(
        self,
        target: Target,
        machine: TargetMachine,
        runners: Runners,
        journal: Store,
        notifier: Notifier,
        metrics: Metrics,
        clock: Clock,
        spawn: Spawn,
        dry_run: bool,
        *,
        hold: Hold,
        lead: Callable[[], bool] = lambda: True,  # whether it holds the target's lease now (state/peering.py)
        redactor: Redactor | None = None,
        failpoints: Failpoints | None = None,
    ):
        self.target = target
        self.machine = machine
        self._runners = runners
        self._journal = journal
        self._notifier = notifier
        self._metrics = metrics
        self._clock = clock
        self._spawn = spawn
        self._hold = hold  # read at each decision and passed to the machine, which holds no pause of its own
        self._lead = lead  # the same for the lease: a standby's machine decides nothing
        self.dry_run = dry_run
        self._mask = (redactor or Redactor()).text  # outside text (command output, URLs) may carry a secret
        self._failpoints = failpoints or Failpoints()
        self._lock = asyncio.Lock()
        self.level_task: asyncio.Task[Any] | None = None
        self._under_way = asyncio.Event()  # clear from a level's start until its first action is answered
        self._under_way.set()
        self._closed_saved: Incident | None = None  # the closed incident last written
        self.stopping = False  # set by the app's shutdown: no new level or check starts
        self._gauges: tuple[Any, ...] | None = None  # the target's four gauge children, looked up once
        self._shown: tuple[int, int, int, int] | None = None  # what they were last set to

    @property
    def busy(self) -> bool:
        return self.level_task is not None and not self.level_task.done()

    @property
    def blind_sources(self) -> Mapping[str, str]:
        return self.machine.blind_sources

    async def observe(self, views: Mapping[str, RuleView], now: datetime) -> None:
        """The rules' views as judged at `now` (the poll's time): the machine decides at that time, whatever
        time it is when the lock is free, so another target's level running meanwhile moves nothing here."""
        async with self._lock:
            self._dispatch(self.machine.observe(now, views, self._hold(now), standby=not self._lead()))

    async def demote(self, why: str) -> None:
        """The lease is another's: a running level stops, the machine forgets the incident (the holder's now)."""
        if self.level_task is not None and not self.level_task.done():
            self.level_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.level_task
        async with self._lock:
            if self.machine.incident is not None:
                log.warning("incident_handed_over", target=self.target.name, incident=self.machine.incident.id,
                            why=why, next="the lease's holder continues it")
            self.machine = self.machine.fresh()
            self._closed_saved = None
            self.sync_state()

    async def resolve(self, note: str) -> None:
        """ValueError while a level's actions run: closing the incident under them would let the still-alarming
        rules open a new one and start a second level beside the first."""
        async with self._lock:
            if self.busy:
                inc = self.machine.incident
                level = inc.level if inc else "a"
                raise ValueError(f"level {level} is running; resolve once it has finished (pause the target "
                                 "to stop what would follow)")
            self._dispatch(self.machine.resolve(self._clock.now(), note))

    async def manual(self, level: int, reason: str) -> str:
        """A human's rollback; ValueError if it cannot start now. Returns the incident id."""
        if not self._lead():
            raise ValueError(f"another watchdog holds the lease of {self.target.name}: send it to the holder (/status)")
        async with self._lock:
            self._dispatch(self.machine.manual(self._clock.now(), level, reason))
            inc = self.machine.incident
            return inc.id if inc else ""

    def set_blind_sources(self, blind: Mapping[str, str], now: datetime) -> None:
        if not blind and not self.machine.blind_sources:
            # Nothing blind before or now: sources_blind would say nothing and change nothing (two empty set
            # differences), and the gauges already show this machine. Every poll of every target comes here:
            # 6.2 -> 0.08 µs (timeit, CPU).
            return
        self._dispatch(self.machine.sources_blind(now, blind))

    def pause_changed(self, paused: bool, why: str, nxt: str) -> None:
        self._dispatch(self.machine.pause_changed(self._clock.now(), paused, why, nxt))

    def state_writable(self, why: str, nxt: str) -> None:
        self._dispatch(self.machine.state_file(self._clock.now(), True, why, nxt))

    def restore(self, inc: Incident) -> None:
        """After a restart, before the first poll: the stored incident continues."""
        self._dispatch(self.machine.restore(self._clock.now(), inc))

    def restore_failed(self, incident: str, why: str) -> None:
        self._dispatch(self.machine.restore_failed(self._clock.now(), incident, why))

    def outcome_unknown(self, action: str) -> None:
        self._dispatch(self.machine.outcome_unknown(self._clock.now(), action))

    def reconfigure(self, target: Target, redactor: Redactor) -> None:
        """A reload: the target's new levels and policy, its machine (incident, running level) kept."""
        self.target = target
        self._dispatch(self.machine.reconfigure(target.max_level, target.escalation.verify_window,
                                                target.escalation.max_rollbacks_per_hour))
        self._mask = redactor.text

    def _dispatch(self, commands: list[Command]) -> None:
        for cmd in commands:
            if isinstance(cmd, Event):
                self._announce(cmd)
            elif self.stopping and isinstance(cmd, (RunLevel, RunChecks)):
                # Shutting down: starting a level now would only have it cancelled half-way.
                log.warning("not_started_shutting_down", target=self.target.name, incident=cmd.incident,
                            level=cmd.level, would_run="level" if isinstance(cmd, RunLevel) else "checks")
            elif isinstance(cmd, RunLevel):
                self.start_level(cmd)
            elif isinstance(cmd, RunChecks):
                self._spawn(self._run_checks(cmd), f"checks:{self.target.name}:{cmd.level}")
        self.sync_state()

    def start_level(self, cmd: RunLevel, start: int = 0) -> None:
        # At most one level per target, ever: a level escalating starts the next from its own task, as it ends.
        if self.busy and asyncio.current_task() is not self.level_task:
            raise RuntimeError(f"{self.target.name}: level {cmd.level} asked for while another level runs")
        self._under_way.clear()
        self.level_task = self._spawn(self._run_level(cmd, start), f"level:{self.target.name}:{cmd.level}")
        self.level_task.add_done_callback(lambda _: self._under_way.set())

    async def under_way(self, bound: float) -> None:
        """Wait, at most `bound` seconds, until a level this target just started has had its first action
        answered (its intent in the state file first) or has ended. A poll waits here before it judges its
        other targets: judging them holds the loop, and a request needs many turns of it (bench, 5 000
        rules: the level 1 request reached the admin API after the whole poll's judging, 60 ms after the
        breach). Their decisions do not move: they are judged at the poll's time whenever it is judged."""
        if self._under_way.is_set():
            return
        try:
            async with asyncio.timeout(bound):
                await self._under_way.wait()
        except TimeoutError:
            pass  # a slow state file: the level goes on by itself, the other targets are judged now

    async def finish_level(self, incident: str, level: int, ok: bool, detail: str) -> None:
        """Recovery's verdict on a level interrupted by a crash."""
        async with self._lock:
            now = self._clock.now()
            self._dispatch(self.machine.level_finished(now, incident, level, ok, detail, self._hold(now)))

    def sync_state(self) -> None:
        """Gauges and the durable incident snapshot follow the machine after every decision."""
        inc = self.machine.incident
        shown = (self.machine.level, 1 if inc else 0, 1 if (inc and inc.blind) or self.blind_sources else 0,
                 1 if inc is not None and inc.phase.value == "exhausted" else 0)
        # Set only what changed, on children looked up once (nothing else sets these series): four `labels()`
        # and `set()` per target and poll, 5.0 µs, are 0.22 when nothing changed (timeit, CPU).
        if shown != self._shown:
            gauges = self._gauges
            if gauges is None:
                m, name = self._metrics, self.target.name
                gauges = self._gauges = tuple(g.labels(name) for g in (m.target_level, m.incidents_open,
                                                                        m.target_blind, m.target_exhausted))
            for gauge, value in zip(gauges, shown):
                gauge.set(value)
            self._shown = shown
        if inc is not None:  # as it stands after this decision (unchanged: no write)
            self._journal.save_incident(encode_incident(inc))
        closed = self.machine.last_closed
        if closed is not None and closed is not self._closed_saved:  # final once closed: saved once
            self._journal.save_incident(encode_incident(closed))
            self._closed_saved = closed

    def _announce(self, ev: Event) -> None:
        if ev.kind == "would_run":
            self._metrics.rollbacks.labels(self.target.name, str(ev.level), "skipped").inc()
        rec = self._journal.event(ev, self.dry_run)
        level = log.error if ev.severity == "critical" else log.warning if ev.severity == "warning" else log.info
        level(ev.kind, target=ev.target, incident=ev.incident, level=ev.level, why=ev.why, next=ev.next,
              severity=ev.severity, dry_run=self.dry_run)
        self._notifier.publish(ev, self.dry_run, audit_seq=rec.seq)

    async def _run_level(self, cmd: RunLevel, start: int = 0) -> None:
        level = self.target.level(cmd.level)
        if level is None:  # the machine only asks for configured levels
            raise RuntimeError(f"level {cmd.level} is not configured")
        started = self._clock.monotonic()
        ok, detail = True, ""
        try:
            async with asyncio.timeout(level.deadline.total_seconds()) as deadline:
                details = []
                for index, action in enumerate(level.actions):
                    if index >= start:  # after a restart, the actions already done are not repeated
                        details.append(await self._run_action(cmd, index, action, deadline, first=index == start))
                detail = "; ".join(details)
        except _Fenced:
            return  # nothing more of it is this watchdog's to do or to say; the holder resumes the incident
        except _Held as held:
            self._metrics.rollbacks.labels(self.target.name, str(cmd.level), "skipped").inc()
            async with self._lock:
                now = self._clock.now()
                self._dispatch(self.machine.level_held(now, cmd.incident, cmd.level, str(held),
                                                       self._hold(now) or "paused"))
            return
        except TimeoutError:
            ok, detail = False, f"deadline {level.deadline.total_seconds():g}s passed"
        except ActionFailed as exc:
            ok, detail = False, exc.detail
        except Exception as exc:  # a bug must fail the level (and escalate), never strand the incident
            log.error("level_crashed", target=self.target.name, incident=cmd.incident, level=cmd.level,
                      error=type(exc).__name__)
            ok, detail = False, f"unexpected {type(exc).__name__}"
        except asyncio.CancelledError:
            self._journal.outcome(self._clock.now(), self.target.name, cmd.incident, cmd.level, "level", 0,
                                  "interrupted", "the watchdog stopped during the level", self.dry_run)
            log.warning("level_interrupted", target=self.target.name, incident=cmd.incident, level=cmd.level)
            self._metrics.rollbacks.labels(self.target.name, str(cmd.level), "interrupted").inc()
            raise
        outcome = "dry_run" if self.dry_run and ok else ("succeeded" if ok else "failed")
        self._metrics.rollbacks.labels(self.target.name, str(cmd.level), outcome).inc()
        self._metrics.rollback_duration.labels(self.target.name, str(cmd.level)).observe(self._clock.monotonic() - started)
        async with self._lock:
            now = self._clock.now()
            self._dispatch(self.machine.level_finished(now, cmd.incident, cmd.level, ok, detail, self._hold(now)))

    async def _durable(self, deadline: asyncio.Timeout) -> None:
        """Wait until the intent is in the state file. No action runs before that; while the file cannot be
        written the wait is as long as it takes, and it does not count against the level's deadline (the
        deadline is for the system to answer, and a broken state file is paged and shown in /healthz)."""
        loop = asyncio.get_running_loop()
        when = deadline.when()
        deadline.reschedule(None)
        try:
            started = loop.time()
            await self._journal.flush()
        finally:
            if when is not None:
                deadline.reschedule(when + (loop.time() - started))

    async def _run_action(self, cmd: RunLevel, index: int, action: Action, deadline: asyncio.Timeout,
                          first: bool = False) -> str:
        name = self._mask(f"#{index + 1} {action.type}: {action.describe()}")
        tname, inc, lvl = self.target.name, cmd.incident, cmd.level
        if self.dry_run:
            self._journal.intent(self._clock.now(), tname, inc, lvl, name, 1, True)
            self._journal.outcome(self._clock.now(), tname, inc, lvl, name, 1, "dry_run", "not executed (dry run)", True)
            self._metrics.action_attempts.labels(tname, str(lvl), "dry_run").inc()
            log.info("action_skipped_dry_run", target=tname, incident=inc, level=lvl, action=name)
            return f"{name}: dry run"
        runner = self._runners.action(action)
        attempt = 0

        def retryable(exc: BaseException) -> bool:
            # An attempt that may have taken effect is repeated only for an idempotent action.
            return isinstance(exc, ActionFailed) and exc.retryable and (not exc.unknown or action.idempotent)

        async for attempt_ctx in retrying(action.retry, retryable):
            with attempt_ctx:
                attempt += 1
                self._journal.intent(self._clock.now(), tname, inc, lvl, name, attempt, False)
                try:
                    await self._durable(deadline)
                except asyncio.CancelledError:  # shutdown while the file could not be written: it never started
                    self._record(cmd, name, attempt, "failed", "not started: the watchdog stopped before its intent "
                                 "was in the state file")
                    raise
                held = first and attempt == 1 and not cmd.by_hand
                pause = self._hold(self._clock.now()) if held else None
                if pause is not None:
                    # A pause came while the intent waited for the state file (or in the instant after the
                    # decision): nothing of the level has run, so none of it does. Later actions of a level
                    # already under way go on, as a running level does when a pause comes.
                    self._record(cmd, name, attempt, "not_started", f"not started: {pause}")
                    raise _Held(f"not started: {pause}")
                log.info("action_started", target=tname, incident=inc, level=lvl, action=name, attempt=attempt)
                try:
                    await self._failpoints.reach("after_intent", target=tname, incident=inc, level=lvl)
                    await self._failpoints.reach("before_request", target=tname, incident=inc, level=lvl)
                    if not self._lead():  # checked last: nothing this task awaited before outlives the lease
                        # Its renewal overdue (a pause, a partition) or the intent's fence refused (SPEC 4.5).
                        log.error("fenced", target=tname, incident=inc, level=lvl, action=name, attempt=attempt,
                                  why="this watchdog no longer holds the target's lease", next="the holder acts")
                        self._metrics.fenced.labels(tname).inc()
                        self._record(cmd, name, attempt, "not_started", "not started: the lease is another's")
                        raise _Fenced("the lease is no longer this watchdog's")
                    try:
                        detail = self._mask(await runner.run(action))
                    finally:
                        self._under_way.set()
                    await self._failpoints.reach("before_outcome", target=tname, incident=inc, level=lvl)
                except _Fenced:
                    raise  # recorded where it was found; the level is this watchdog's no more
                except ActionFailed as exc:
                    exc.detail = self._mask(exc.detail)
                    self._record(cmd, name, attempt, "unknown" if exc.unknown else "failed", exc.detail)
                    raise ActionFailed(
                        f"{name}: {exc.detail} (attempt {attempt}/{action.retry.attempts})", exc.retryable, exc.unknown
                    ) from None
                except asyncio.CancelledError:
                    self._record(cmd, name, attempt, "unknown", "cancelled while running (deadline or shutdown)")
                    raise
                except Exception as exc:  # e.g. a header the HTTP client refuses: fail the level, never hang it
                    detail = f"unexpected {type(exc).__name__}"  # the type only: a message may quote a secret
                    self._record(cmd, name, attempt, "failed", detail)
                    raise ActionFailed(f"{name}: {detail} (attempt {attempt}/{action.retry.attempts})", False) from None
                self._record(cmd, name, attempt, "succeeded", detail)
                return f"{name}: {detail}"
        raise ActionFailed(f"{name}: no attempt made", retryable=False)

    def _record(self, cmd: RunLevel, name: str, attempt: int, outcome: str, detail: str) -> None:
        self._journal.outcome(self._clock.now(), self.target.name, cmd.incident, cmd.level, name, attempt, outcome, detail, False)
        self._metrics.action_attempts.labels(self.target.name, str(cmd.level), outcome).inc()
        log_fn = log.info if outcome == "succeeded" else log.warning
        log_fn("action_" + outcome, target=self.target.name, incident=cmd.incident, level=cmd.level, action=name,
               attempt=attempt, detail=detail)

    async def _run_checks(self, cmd: RunChecks) -> None:
        level = self.target.level(cmd.level)
        checks = level.checks if level else []
        results = []
        for check in checks:
            try:
                detail = await self._runners.check(check).run(check)
                ok = True
            except ActionFailed as exc:
                ok, detail = False, exc.detail
            except Exception as exc:  # a crashed probe is a failed probe, not a verification stuck forever
                ok, detail = False, f"unexpected {type(exc).__name__}"
            label, detail = self._mask(check.describe()), self._mask(detail)
            self._journal.check(self._clock.now(), self.target.name, cmd.incident, cmd.level, label, ok, detail)
            results.append((label, ok, detail))
        failed = [f"{n}: {d}" for n, ok, d in results if not ok]
        summary = "; ".join(failed) if failed else (f"{len(results)} checks passed" if results else "no checks configured")
        async with self._lock:
            now = self._clock.now()
            self._dispatch(self.machine.checks_finished(now, cmd.incident, cmd.level, not failed, summary,
                                                        self._hold(now)))


class _Held(Exception):
    """The level's first action found the target paused before it started."""


class _Fenced(Exception):
    """The lease was lost before an action's request went out: the level is this watchdog's no more."""
