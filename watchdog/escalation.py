"""The escalation state machine (SPEC 4.2). Pure: no I/O, time is passed in.

One machine per target holds at most one incident. Inputs are evaluations and
the outcomes the executor reports; outputs are commands (run a level, run the
checks) and events to announce. The executor owns every side effect.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, NamedTuple

from watchdog.rules import Datapoint, Evaluation, RuleSpec, RuleState, evaluate_fresh

Severity = Literal["info", "warning", "critical"]


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
class Event:
    kind: str
    severity: Severity
    target: str
    incident: str | None
    level: int
    at: datetime
    why: str
    next: str
    details: Mapping[str, Any] = field(default_factory=dict)


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
    def __init__(
        self,
        target: str,
        max_level: int,
        verify_window: timedelta,
        max_rollbacks_per_hour: int,
        new_id: Callable[[str, datetime], str],
        paused: Callable[[datetime], str | None] = lambda now: None,
    ):
        self.target = target
        self._paused = paused  # now -> a description of the pause holding this target, or None
        self._held: tuple[str | None, int] | None = None  # the last "would run", announced once
        self.max_level = max_level
        self.verify_window = verify_window
        self.max_rollbacks_per_hour = max_rollbacks_per_hour
        self._new_id = new_id
        self.incident: Incident | None = None
        self.last_closed: Incident | None = None
        self._starts: deque[datetime] = deque()  # level starts, for the circuit breaker

    def reconfigure(self, max_level: int, verify_window: timedelta, max_rollbacks_per_hour: int) -> None:
        """A reload's new policy; the incident, its running level and the breaker's history are kept."""
        self.max_level, self.verify_window = max_level, verify_window
        self.max_rollbacks_per_hour = max_rollbacks_per_hour

    def restore_breaker(self, starts: list[datetime]) -> None:
        """After a restart: the level runs of the last hour still count."""
        self._starts = deque(sorted(starts))

    # --- what the outside reads -------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self.incident.phase if self.incident else Phase.NORMAL

    @property
    def level(self) -> int:
        return self.incident.level if self.incident else 0

    # --- inputs -----------------------------------------------------------------

    def observe(self, now: datetime, views: Mapping[str, RuleView]) -> list[Command]:
        inc = self.incident
        if inc is None:
            alarming = [v for v in views.values() if v.evaluation.state is RuleState.ALARM]
            if not alarming:
                self._held = None
                return []
            pause = self._paused(now)
            if pause is not None:  # evaluation and announcements go on; the incident opens on resume
                level = max(v.level for v in alarming)
                why = "alarm: " + _describe([v.name for v in alarming], {v.name: v.evaluation for v in alarming})
                return self._would_run(now, None, level, why, pause)
            return self._open(now, alarming)
        if inc.phase is Phase.VERIFYING and inc.verify_due is not None and now >= inc.verify_due:
            return self._verify(now, inc, views)
        if inc.phase is Phase.MITIGATED:
            fresh = self._fresh(now, inc, views)
            alarming = [n for n, e in fresh.items() if e.state is RuleState.ALARM]
            if alarming:
                why = "new alarm on a mitigated incident: " + _describe(alarming, fresh)
                if self._paused(now) is not None:
                    return self._escalate(now, inc, alarming, views, why)
                return [self._event(now, "realarmed", "warning", why, "escalating")] + self._escalate(
                    now, inc, alarming, views, why
                )
        return []

    def level_finished(self, now: datetime, incident: str, level: int, ok: bool, detail: str) -> list[Command]:
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
        return [self._event(now, "level_failed", "warning", why, "escalating")] + self._start(now, inc, level + 1, why)

    def paused_now(self, now: datetime) -> str | None:
        """The pause holding this target at `now`, described; None when it may act."""
        return self._paused(now)

    def level_held(self, now: datetime, incident: str, level: int, why: str) -> list[Command]:
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
        pause = self._paused(now) or "paused"
        self._held = (inc.id, level)
        return [Event("would_run", "warning", self.target, inc.id, level, now,
                      f"{pause}: would run level {level}: {why}", "no action while paused; resume to act")]

    def checks_finished(self, now: datetime, incident: str, level: int, ok: bool, detail: str) -> list[Command]:
        inc = self.incident
        if inc is None or inc.id != incident or inc.phase is not Phase.CHECKING or inc.level != level:
            return []
        if ok:
            return self._mitigate(now, inc, f"rules recovered and checks passed ({detail})")
        why = f"level {level} checks failed: {detail}"
        return [self._event(now, "verification_failed", "warning", why, "escalating")] + self._start(
            now, inc, level + 1, why
        )

    def resolve(self, now: datetime, note: str) -> list[Command]:
        inc = self.incident
        if inc is None:
            return []
        inc.closed_at = now
        self.last_closed, self.incident = inc, None
        return [Event("resolved", "info", self.target, inc.id, 0, now, f"resolved by a human: {note}", "watching")]

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
        opened = Event(**{**opened.__dict__, "level": level})  # the level it opens at, not the 0 it came from
        return [opened] + self._start(now, inc, level, why)

    def _verify(self, now: datetime, inc: Incident, views: Mapping[str, RuleView]) -> list[Command]:
        fresh = self._fresh(now, inc, views)
        alarming = [n for n, e in fresh.items() if e.state is RuleState.ALARM]
        if alarming and inc.held_level is not None:
            why = f"level {inc.held_level} was held by a pause before it ran; still alarming: " + _describe(alarming, fresh)
            return self._escalate(now, inc, alarming, views, why)
        if alarming:
            why = f"level {inc.level} did not cure it: " + _describe(alarming, fresh)
            if self._paused(now) is not None:  # held: the "would run" says it, once
                return self._escalate(now, inc, alarming, views, why)
            return [self._event(now, "verification_failed", "warning", why, "escalating")] + self._escalate(
                now, inc, alarming, views, why
            )
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

    def _escalate(
        self, now: datetime, inc: Incident, alarming: list[str], views: Mapping[str, RuleView], why: str
    ) -> list[Command]:
        inc.watch |= set(alarming)
        base = inc.held_level if inc.held_level is not None else inc.level + 1
        target = max([base] + [views[n].level for n in alarming if n in views])
        return self._start(now, inc, target, why)

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

    def _would_run(self, now: datetime, inc: Incident | None, level: int, why: str, pause: str) -> list[Command]:
        if inc is not None and inc.phase in (Phase.RUNNING, Phase.CHECKING):
            # Hold where we are: re-judged on fresh data each evaluation, acted on at resume.
            inc.phase, inc.actions_ended_at, inc.verify_due = Phase.VERIFYING, now, now
        key = (inc.id if inc else None, level)
        if self._held == key:
            return []
        self._held = key
        return [Event("would_run", "warning", self.target, inc.id if inc else None, level, now,
                      f"{pause}: would run level {level}: {why}", "no action while paused; resume to act")]

    def _start(self, now: datetime, inc: Incident, level: int, why: str) -> list[Command]:
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
        pause = self._paused(now)
        if pause is not None:
            return self._would_run(now, inc, level, why, pause)
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

    def _fresh(self, now: datetime, inc: Incident, views: Mapping[str, RuleView]) -> dict[str, Evaluation]:
        since = inc.actions_ended_at or inc.opened_at
        return {n: evaluate_fresh(v.spec, v.points, now, since, lenient_m=n in inc.watch) for n, v in views.items()}

    def _event(self, now: datetime, kind: str, severity: Severity, why: str, nxt: str, **details: Any) -> Event:
        inc = self.incident
        return Event(kind, severity, self.target, inc.id if inc else None, inc.level if inc else 0, now, why, nxt, details)


def _describe(names: Sequence[str], evals: Mapping[str, Evaluation]) -> str:
    parts = []
    for n in sorted(names):
        e = evals.get(n)
        parts.append(f"{n} = {_fmt(e.value)} ({e.reason})" if e else n)
    return "; ".join(parts)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)
