"""What a replay decided, read back from the runtime's own journal and events: the would-be incidents
(target, opened, trigger, levels, how each ended) and the blind spells; and what it could not see: the
rules that had no datapoint over the range, the polls that failed, the buckets answered with no number.
As text and as JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from watchdog.state.codec import decode_incident
from watchdog.core.escalation import Incident
from watchdog.core.evidence import evidence
from watchdog.shared.events import Event
from watchdog.replay.engine import Called, Replayed


@dataclass(frozen=True)
class Spell:
    target: str
    start: datetime
    end: datetime | None  # None: still blind when the replay ended
    why: str


SHOWN_ERRORS = 5  # per source in the text; the JSON has them all
# The runtime's error and critical lines that the outcome already shows: a `blind` page is a blind spell, an
# `exhausted` one how an incident ended. Any other (a crashed evaluation, a crashed level) is listed as logged.
SHOWN_ELSEWHERE = frozenset({"blind", "exhausted"})


@dataclass(frozen=True)
class Unseen:
    """A rule that had no datapoint over the whole range: the replay judged it on nothing."""

    rule: str  # target/rule
    source: str
    why: str


@dataclass(frozen=True)
class Failed:
    """A source's polls that failed, of how many, and how many failed with each error."""

    failed: int
    polls: int
    errors: dict[str, int]


@dataclass
class Outcome:
    start: datetime
    end: datetime
    incidents: list[Incident]
    blind: list[Spell]
    polls: dict[str, int]
    notes: list[str] = field(default_factory=list)
    held: list[Event] = field(default_factory=list)  # "would run": a pause kept a level from running
    unseen: list[Unseen] = field(default_factory=list)
    failed: dict[str, Failed] = field(default_factory=dict)  # per source with a failed poll
    unreadable: dict[str, dict[str, int]] = field(default_factory=dict)  # per rule: buckets with no number, per why
    logged: list[dict[str, Any]] = field(default_factory=list)  # error lines of the replayed runtime, not shown above
    called: list[Called] = field(default_factory=list)  # the steps the stand-ins ran: what would have been called

    def to_json(self) -> dict[str, Any]:
        return {
            "from": _iso(self.start), "to": _iso(self.end), "polls": self.polls, "notes": self.notes,
            "incidents": [incident_json(i) for i in self.incidents],
            "blind": [{"target": b.target, "start": _iso(b.start), "end": _iso(b.end), "why": b.why} for b in self.blind],
            "would_run": [{"target": e.target, "at": _iso(e.at), "level": e.level, "why": e.why} for e in self.held],
            "unseen": [{"rule": u.rule, "source": u.source, "why": u.why} for u in self.unseen],
            "failed_polls": {name: {"failed": f.failed, "polls": f.polls, "errors": f.errors}
                             for name, f in self.failed.items()},
            "unreadable": self.unreadable,
            "logged": self.logged,
            "actions": [{"target": c.target, "level": c.level, "at": _iso(c.at), "type": c.type, "would_call": c.what}
                        for c in self.called],
        }


def outcome_of(r: Replayed, notes: list[str], unreadable: dict[str, dict[str, int]] | None = None) -> Outcome:
    incidents = [decode_incident(row["snapshot"]) for row in r.store.list_incidents(limit=1_000_000)]
    incidents.sort(key=lambda i: (i.opened_at, i.target))
    held = [e for e in r.events if e.kind == "would_run"]
    polls = {name: src.polls for name, src in r.sources.items()}
    failed = {name: Failed(sum(src.failed.values()), src.polls, dict(sorted(src.failed.items())))
              for name, src in sorted(r.sources.items()) if src.failed}
    logged = [line for line in r.logged if not (line.get("event") in SHOWN_ELSEWHERE and "severity" in line)]
    return Outcome(r.start, r.end, incidents, blind_spells(r), polls, notes, held, unseen_rules(r), failed,
                   dict(sorted((unreadable or {}).items())), logged, r.called)


def unseen_rules(r: Replayed) -> list[Unseen]:
    out: list[Unseen] = []
    for name, src in sorted(r.sources.items()):
        failed = sum(src.failed.values())
        if src.polls == 0:
            why = "its source was never polled"
        elif failed == src.polls:
            why = f"every poll of its source failed ({failed})"
        else:
            why = ("its source answered no datapoint for it (a misspelled namespace, metric, dimension or "
                   "field? a cache emptied by hand? delete the cache to fetch afresh)")
        out.extend(Unseen(key, name, why) for key, n in sorted(src.seen.items()) if n == 0)
    return out


def blind_spells(r: Replayed) -> list[Spell]:
    """From each `blind` event to the target's next event that shows it sees again."""
    out: list[Spell] = []
    open_: dict[str, tuple[datetime, str]] = {}
    for ev in r.events:
        if ev.kind == "blind":
            open_.setdefault(ev.target, (ev.at, ev.why))
        elif ev.target in open_ and ev.kind in ("sight_restored", "mitigated", "level_started", "verification_failed",
                                                "resolved", "exhausted"):
            start, why = open_.pop(ev.target)
            out.append(Spell(ev.target, start, ev.at, why))
    out.extend(Spell(t, s, None, why) for t, (s, why) in open_.items())
    return sorted(out, key=lambda s: (s.start, s.target))


def highest_level(inc: Incident) -> int:
    return max((run.level for run in inc.runs if run.outcome != "not_started"), default=0)


def end_state(inc: Incident) -> str:
    return "resolved" if inc.closed_at is not None else inc.phase.value


def incident_json(inc: Incident) -> dict[str, Any]:
    return {
        "target": inc.target, "id": inc.id, "opened": _iso(inc.opened_at),
        "trigger": {name: t.to_json() for name, t in sorted(inc.trigger.items())},
        "levels": [{"level": run.level, "started": _iso(run.started), "finished": _iso(run.finished),
                    "outcome": run.outcome, "why": run.reason} for run in inc.runs],
        "highest_level": highest_level(inc), "end": end_state(inc), "mitigated": _iso(inc.mitigated_at),
        "closed": _iso(inc.closed_at),
    }


def render_text(o: Outcome) -> list[str]:
    lines = [f"replayed {_iso(o.start)} .. {_iso(o.end)}: " +
             ", ".join(f"{n} polled {k} times" for n, k in sorted(o.polls.items()))]
    lines.extend(f"note: {n}" for n in o.notes)
    lines.append(f"would-be incidents: {len(o.incidents)}")
    for inc in o.incidents:
        trig = "; ".join(evidence(n, t.value, t.reason) for n, t in sorted(inc.trigger.items()))
        lines.append(f"  {inc.target}  opened {_iso(inc.opened_at)}  trigger: {trig}")
        runs = ", ".join(f"level {run.level} at {run.started:%m-%d %H:%M:%S}Z ({run.outcome or 'running'})"
                         for run in inc.runs)
        ended = end_state(inc)
        lines.append(f"    levels: {runs or 'none'}; ended {ended} at level {inc.level}")
        lines.extend(f"    level {c.level} would call {c.type}: {c.what}" for c in o.called
                     if c.target == inc.target and inc.opened_at <= c.at and (inc.closed_at is None or c.at <= inc.closed_at))
    for e in o.held:
        lines.append(f"  held by a pause: {e.target} at {_iso(e.at)}: {e.why}")
    if o.blind:
        lines.append(f"blind spells: {len(o.blind)}")
        for b in o.blind:
            lines.append(f"  {b.target}  {_iso(b.start)} .. {_iso(b.end) or 'the end'}  {b.why}")
    lines.extend(unseen_lines(o))
    lines.extend(logged_lines(o))
    return lines


def logged_lines(o: Outcome) -> list[str]:
    """The replayed runtime's error and critical lines the outcome does not show otherwise, at the simulated
    time they were logged: kept off stderr, where they would read as live pages, and not lost either."""
    if not o.logged:
        return []
    lines = [f"logged by the replayed runtime: {len(o.logged)} error lines"]
    for entry in o.logged:
        rest = ", ".join(f"{k}={v}" for k, v in entry.items() if k not in ("ts", "event", "replay", "log_level"))
        lines.append(f"  {entry.get('ts', '')}  {entry.get('event', '')}: {rest}")
    return lines


def unseen_lines(o: Outcome) -> list[str]:
    """What the replay could not see; nothing when it saw everything."""
    lines = []
    if o.unseen:
        lines.append(f"rules with no datapoint over the range: {len(o.unseen)} (judged on nothing)")
        lines.extend(f"  {u.rule}  source {u.source}: {u.why}" for u in o.unseen)
    if o.failed:
        lines.append(f"failed polls: {sum(f.failed for f in o.failed.values())}")
        for name, f in o.failed.items():
            errors = sorted(f.errors.items(), key=lambda e: -e[1])
            more = f"; {len(errors) - SHOWN_ERRORS} other errors" if len(errors) > SHOWN_ERRORS else ""
            lines.append(f"  {name}  {f.failed} of {f.polls} polls: " +
                         "; ".join(f"{n} x {why}" for why, n in errors[:SHOWN_ERRORS]) + more)
    if o.unreadable:
        lines.append(f"buckets answered with no number, treated as missing: "
                     f"{sum(sum(c.values()) for c in o.unreadable.values())}")
        for rule, counts in o.unreadable.items():
            lines.append(f"  {rule}  " + ", ".join(f"{n} {why}" for why, n in sorted(counts.items())))
    return lines


def _iso(t: datetime | None) -> str | None:
    """To the millisecond: a replay of a recording runs at the recorded poll times."""
    if t is None:
        return None
    text = t.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z").replace(".000Z", "Z")
