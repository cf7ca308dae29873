"""The escalation state machine (SPEC 4.2). Pure: no I/O; time, pauses and outcomes are passed in.

One machine per target holds at most one incident. Every input is explicit: the time, the rules'
views, the pause holding the target (`hold`, a description or None), whether another watchdog holds the
target's lease (`standby`: SPEC 4.5; a standby decides nothing and announces nothing), the outcomes the executor
reports, a restart's restored incident, the sources it cannot see, the state file's health. Each
input returns commands: run a level, run the checks, and the events to announce. The machine is the
only maker of events; the executor owns every side effect.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

from watchdog.core.evidence import describe as _describe
from watchdog.shared.events import Event, EventKind, Severity
from watchdog.core.rules import (
    Datapoint,
    Evaluation,
    RuleSpec,
    RuleState,
    evaluate_fresh,
)


class Phase(StrEnum):
    NORMAL = "normal"
    RUNNING = "running"  # a level's actions are executing
    VERIFYING = "verifying"  # waiting for fresh datapoints after the actions
    CHECKING = "checking"  # the level's probes are running
    MITIGATED = "mitigated"
    EXHAUSTED = "exhausted"  # no more automatic action; a human must act


class RuleView(NamedTuple):
    # A tuple: the board builds one per rule per evaluation.
    name: str
    level: int
    spec: RuleSpec
    points: Sequence[Datapoint]
    evaluation: Evaluation


@dataclass(frozen=True)
class RunLevel:
    incident: str
    level: int
    reason: str
    by_hand: bool = False  # a human's rollback: runs whatever pause holds the target


@dataclass(frozen=True)
class RunChecks:
    incident: str
    level: int


Command = RunLevel | RunChecks | Event


@dataclass(frozen=True)
class Trigger:
    """A rule's evidence when it opened the incident."""

    value: float | bool | None
    threshold: str
    at: datetime | None  # start of the value's bucket
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "threshold": self.threshold,
                "at": self.at.isoformat() if self.at else None, "reason": self.reason}


@dataclass
class LevelRun:
    level: int
    started: datetime
    reason: str
    finished: datetime | None = None
    outcome: str | None = None  # succeeded | failed
    detail: str = ""


@dataclass
class Incident:
    id: str
    target: str
    opened_at: datetime
    phase: Phase
    level: int = 0
    trigger: dict[str, Trigger] = field(default_factory=dict)
    watch: set[str] = field(default_factory=set)  # rules that must recover
    actions_ended_at: datetime | None = None
    verify_due: datetime | None = None
    blind: bool = False
    runs: list[LevelRun] = field(default_factory=list)
    mitigated_at: datetime | None = None
    closed_at: datetime | None = None
    held_level: int | None = None  # a level decided but not started (a pause came first): run it, not the next



class TargetMachine:
    def __init__(self, target: str, max_level: int, verify_window: timedelta, max_rollbacks_per_hour: int,
                 new_id: Callable[[str, datetime], str]):
        self.target = target
        self._held: tuple[str | None, int] | None = None  # the last "would run", announced once
        self.max_level = max_level
        self.verify_window = verify_window
        self.max_rollbacks_per_hour = max_rollbacks_per_hour
        self._new_id = new_id
        self.incident: Incident | None = None
        self.last_closed: Incident | None = None
        self.blind_sources: dict[str, str] = {}  # source -> why, while one this target reads is down too long
        self._starts: deque[datetime] = deque()  # level starts, for the circuit breaker

    # --- what the outside reads -------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self.incident.phase if self.incident else Phase.NORMAL

    @property
    def level(self) -> int:
        return self.incident.level if self.incident else 0

    # --- inputs: the rules and the executor's reports ------------------------------

    def fresh(self) -> TargetMachine:
        """The same settings, nothing decided: a lost lease's target (its holder owns the incident now)."""
        return TargetMachine(self.target, self.max_level, self.verify_window, self.max_rollbacks_per_hour, self._new_id)

    def observe(self, now: datetime, views: Mapping[str, RuleView], hold: str | None,
                standby: bool = False) -> list[Command]:
        if standby:  # another watchdog holds the lease: it decides, acts and announces for this target
            return []
        inc = self.incident
        if inc is None:
            opening = [v for v in views.values() if v.evaluation.state is RuleState.ALARM]
            if not opening:
                self._held = None
                return []
            if hold is not None:  # evaluation and announcements go on; the incident opens on resume
                level = max(v.level for v in opening)
                why = "alarm: " + _describe([v.name for v in opening], {v.name: v.evaluation for v in opening})
                return self._would_run(now, None, level, why, hold)
            return self._open(now, opening)
        if inc.phase is Phase.VERIFYING and inc.verify_due is not None and now >= inc.verify_due:
            return self._verify(now, inc, views, hold)
        if inc.phase is Phase.MITIGATED:
            fresh = self._fresh(inc, views, now)
            alarming = [n for n, e in fresh.items() if e.state is RuleState.ALARM]
            if alarming:
                why = "new alarm on a mitigated incident: " + _describe(alarming, fresh)
                # Said at the level it realarmed on, before the escalation moves it; held: the "would run" says it.
                said = [] if hold is not None else [self._event(now, "realarmed", "warning", why, "escalating")]
                return [*said, *self._escalate(now, inc, alarming, views, why, hold)]
        return []

    def level_finished(self, now: datetime, incident: str, level: int, ok: bool, detail: str,
                       hold: str | None) -> list[Command]:
        inc = self.incident
        if inc is None or inc.id != incident or inc.phase is not Phase.RUNNING or inc.level != level:
            return []  # a stale report (resolved meanwhile): nothing to decide
        run = inc.runs[-1]
        run.finished, run.outcome, run.detail = now, "succeeded" if ok else "failed", detail
        if ok:
            inc.phase = Phase.VERIFYING
            inc.actions_ended_at = now
            inc.verify_due = now + self.verify_window
            return [
                self._event(
                    now, "level_succeeded", "info", f"level {level} actions succeeded: {detail}",
                    f"verifying at {inc.verify_due:%H:%M:%S} on datapoints newer than the actions",
                )
            ]
        why = f"level {level} failed: {detail}"
        return [self._event(now, "level_failed", "warning", why, "escalating"), *self._start(now, inc, level + 1, why, hold)]

    def level_held(self, now: datetime, incident: str, level: int, why: str, hold: str) -> list[Command]:
        """A level decided before a pause, whose first action had not started when the pause came (its
        intent was waiting for the state file). Nothing of it ran: it is held, re-judged on fresh data at
        resume, and run then, not skipped for the next one, if its rules still alarm."""
        inc = self.incident
        if inc is None or inc.id != incident or inc.phase is not Phase.RUNNING or inc.level != level:
            return []
        run = inc.runs[-1]
        run.finished, run.outcome, run.detail = now, "not_started", why
        inc.phase, inc.actions_ended_at, inc.verify_due, inc.held_level = Phase.VERIFYING, now, now, level
        if self._starts:
            self._starts.pop()  # it never ran: not a rollback for the circuit breaker
        self._held = (inc.id, level)
        return [self._event(now, "would_run", "warning", f"{hold}: would run level {level}: {why}",
                            "no action while paused; resume to act")]

    def checks_finished(self, now: datetime, incident: str, level: int, ok: bool, detail: str,
                        hold: str | None) -> list[Command]:
        inc = self.incident
        if inc is None or inc.id != incident or inc.phase is not Phase.CHECKING or inc.level != level:
            return []
        if ok:
            return self._mitigate(now, inc, f"rules recovered and checks passed ({detail})")
        why = f"level {level} checks failed: {detail}"
        return [self._event(now, "verification_failed", "warning", why, "escalating"),
                *self._start(now, inc, level + 1, why, hold)]

    def outcome_unknown(self, now: datetime, action: str) -> list[Command]:
        """After a restart: an action that may have taken effect is not repeated; verification decides."""
        return [self._event(now, "outcome_unknown", "critical", f"{action}: outcome unknown after a restart",
                            "verifying on fresh data; a human must check")]

    # --- inputs: humans -------------------------------------------------------------

    def resolve(self, now: datetime, note: str) -> list[Command]:
        inc = self.incident
        if inc is None:
            return []
        inc.closed_at = now
        self.last_closed, self.incident = inc, None
        return [Event("resolved", "info", self.target, inc.id, 0, now, f"resolved by a human: {note}", "watching")]

    def manual(self, now: datetime, level: int, reason: str) -> list[Command]:
        """A human asked for `level`: run it through the same machine, pause and breaker aside."""
        if level < 1 or level > self.max_level:
            raise ValueError(f"level must be 1..{self.max_level}")
        inc = self.incident
        if inc is not None and inc.phase in (Phase.RUNNING, Phase.CHECKING):
            raise ValueError(f"level {inc.level} is running now; try again when it has finished")
        why = f"manual rollback: {reason}"
        out: list[Command] = []
        if inc is None:
            inc = Incident(id=self._new_id(self.target, now), target=self.target, opened_at=now, phase=Phase.RUNNING)
            self.incident = inc
            out.append(Event("incident_opened", "warning", self.target, inc.id, level, now, why, f"running level {level}"))
        return out + self._run(now, inc, level, why, by_hand=True)

    def pause_changed(self, now: datetime, paused: bool, why: str, nxt: str) -> list[Command]:
        """A pause set, cleared or expired. The pause itself reaches the machine as `hold` on each input;
        this only says it, with the incident it holds."""
        return [self._event(now, "paused" if paused else "resumed", "info", why, nxt)]

    # --- inputs: the watchdog's own condition -----------------------------------------

    def restore(self, now: datetime, inc: Incident) -> list[Command]:
        """After a restart: the stored incident continues where it stopped; level runs of the last hour
        still count for the breaker. Checks are probes, so a crash among them runs them again."""
        self.incident = inc
        self._starts = deque(sorted(r.started for r in inc.runs if r.started > now - timedelta(hours=1)))
        why = f"resumed after a restart in phase {inc.phase.value} at level {inc.level}"
        if inc.phase is Phase.CHECKING:
            inc.phase = Phase.VERIFYING
        return [self._event(now, "recovered", "warning", why, "continuing")]

    def restore_failed(self, now: datetime, incident: str, why: str) -> list[Command]:
        """A stored incident that cannot be read back: never silent, or the target would look normal."""
        return [Event("recovery_failed", "critical", self.target, incident, 0, now, why,
                      "a human must look at the state file and resolve the incident")]

    def sources_blind(self, now: datetime, blind: Mapping[str, str]) -> list[Command]:
        """The sources this target cannot see (source -> why): page once when one goes, say when it is back.
        Their rules are insufficient_data meanwhile, so nothing is acted on."""
        out: list[Command] = []
        for name in sorted(set(blind) - set(self.blind_sources)):
            out.append(self._event(now, "blind", "critical", blind[name],
                                   f"no action on rules of source {name} until it answers; check the source"))
        for name in sorted(set(self.blind_sources) - set(blind)):
            out.append(self._event(now, "sight_restored", "info", f"source {name} answers again",
                                   "rules of that source are judged again"))
        self.blind_sources = dict(blind)
        return out

    def state_file(self, now: datetime, writable: bool, why: str, nxt: str) -> list[Command]:
        """The state file stopped or started taking writes: no action runs until its intent is recorded."""
        if writable:
            return [self._event(now, "state_writable", "info", why, nxt)]
        return [self._event(now, "state_unwritable", "critical", why, nxt)]

    def reconfigure(self, max_level: int, verify_window: timedelta, max_rollbacks_per_hour: int) -> list[Command]:
        """A reload's new policy; the incident, its running level and the breaker's history are kept, and
        nothing is decided until the next evaluation (the reload itself is logged)."""
        self.max_level, self.verify_window = max_level, verify_window
        self.max_rollbacks_per_hour = max_rollbacks_per_hour
        return []

    # --- transitions ------------------------------------------------------------

    def _open(self, now: datetime, alarming: list[RuleView]) -> list[Command]:
        inc = Incident(id=self._new_id(self.target, now), target=self.target, opened_at=now, phase=Phase.RUNNING)
        inc.trigger = {
            v.name: Trigger(v.evaluation.value, str(v.spec.threshold), v.evaluation.value_at, v.evaluation.reason)
            for v in alarming
        }
        inc.watch = {v.name for v in alarming}
        self.incident = inc
        level = max(v.level for v in alarming)
        why = "alarm: " + _describe([v.name for v in alarming], {v.name: v.evaluation for v in alarming})
        opened = self._event(now, "incident_opened", "warning", why, f"running level {level}",
                             trigger={n: t.to_json() for n, t in inc.trigger.items()})
        # The level it opens at, not the 0 it came from; no pause holds it (observe checked).
        return [replace(opened, level=level), *self._start(now, inc, level, why, None)]

    def _verify(self, now: datetime, inc: Incident, views: Mapping[str, RuleView], hold: str | None) -> list[Command]:
        fresh = self._fresh(inc, views, now)
        alarming = [n for n, e in fresh.items() if e.state is RuleState.ALARM]
        if alarming and inc.held_level is not None:
            why = f"level {inc.held_level} was held by a pause before it ran; still alarming: " + _describe(alarming, fresh)
            return self._escalate(now, inc, alarming, views, why, hold)
        if alarming:
            why = f"level {inc.level} did not cure it: " + _describe(alarming, fresh)
            said = [] if hold is not None else [self._event(now, "verification_failed", "warning", why, "escalating")]
            return [*said, *self._escalate(now, inc, alarming, views, why, hold)]
        unseen = sorted(n for n in inc.watch if n not in fresh or fresh[n].state is not RuleState.OK)
        if unseen:
            if inc.blind:
                return []
            inc.blind = True
            why = f"no datapoint newer than level {inc.level}'s actions for {', '.join(unseen)}"
            return [self._event(now, "blind", "critical", why, "not escalating on missing evidence; a human must look")]
        if inc.blind:
            inc.blind = False
        if inc.held_level is not None:  # nothing ran, so there is nothing to check
            level, inc.held_level = inc.held_level, None
            return self._mitigate(now, inc, f"the rules recovered while level {level} was held by a pause; "
                                            "it did not run")
        # The checks are the last word; a target without checks is mitigated here.
        inc.phase = Phase.CHECKING
        return [RunChecks(inc.id, inc.level)]

    def _escalate(self, now: datetime, inc: Incident, alarming: Sequence[str], views: Mapping[str, RuleView],
                  why: str, hold: str | None) -> list[Command]:
        inc.watch |= set(alarming)
        base = inc.held_level if inc.held_level is not None else inc.level + 1
        target = max([base] + [views[n].level for n in alarming if n in views])
        return self._start(now, inc, target, why, hold)

    def _would_run(self, now: datetime, inc: Incident | None, level: int, why: str, hold: str) -> list[Command]:
        if inc is not None and inc.phase in (Phase.RUNNING, Phase.CHECKING):
            # Hold where we are: re-judged on fresh data each evaluation, acted on at resume.
            inc.phase, inc.actions_ended_at, inc.verify_due = Phase.VERIFYING, now, now
        key = (inc.id if inc else None, level)
        if self._held == key:
            return []
        self._held = key
        return [Event("would_run", "warning", self.target, inc.id if inc else None, level, now,
                      f"{hold}: would run level {level}: {why}", "no action while paused; resume to act")]

    def _start(self, now: datetime, inc: Incident, level: int, why: str, hold: str | None) -> list[Command]:
        inc.blind = False
        if level > self.max_level:
            return self._exhaust(now, inc, f"level {self.max_level} is the last level; {why}")
        hour_ago = now - timedelta(hours=1)
        while self._starts and self._starts[0] <= hour_ago:
            self._starts.popleft()
        if len(self._starts) >= self.max_rollbacks_per_hour:
            return self._exhaust(
                now, inc, f"circuit breaker: {len(self._starts)} rollbacks in the last hour "
                f"(max_rollbacks_per_hour={self.max_rollbacks_per_hour}); would run level {level}",
            )
        if hold is not None:
            return self._would_run(now, inc, level, why, hold)
        return self._run(now, inc, level, why)

    def _run(self, now: datetime, inc: Incident, level: int, why: str, by_hand: bool = False) -> list[Command]:
        self._held, inc.held_level = None, None
        self._starts.append(now)
        inc.phase, inc.level = Phase.RUNNING, level
        inc.actions_ended_at = inc.verify_due = None
        inc.runs.append(LevelRun(level, now, why))
        started = self._event(now, "level_started", "warning", why, f"running level {level} actions")
        return [started, RunLevel(inc.id, level, why, by_hand)]

    def _exhaust(self, now: datetime, inc: Incident, why: str) -> list[Command]:
        inc.phase = Phase.EXHAUSTED
        return [self._event(now, "exhausted", "critical", why, "no more automatic actions; a human must act and resolve")]

    def _mitigate(self, now: datetime, inc: Incident, why: str) -> list[Command]:
        inc.phase, inc.mitigated_at = Phase.MITIGATED, now
        return [self._event(now, "mitigated", "info", f"level {inc.level} held: {why}", "watching; resolve closes the incident")]

    @staticmethod
    def _fresh(inc: Incident, views: Mapping[str, RuleView], now: datetime) -> dict[str, Evaluation]:
        since = inc.actions_ended_at or inc.opened_at
        return {n: evaluate_fresh(v.spec, v.points, now, since, lenient_m=n in inc.watch) for n, v in views.items()}

    def _event(self, now: datetime, kind: EventKind, severity: Severity, why: str, nxt: str, **details: Any) -> Event:
        inc = self.incident
        return Event(kind, severity, self.target, inc.id if inc else None, inc.level if inc else 0, now, why, nxt, details)

