"""The /status document: targets, rules, sources. Secrets never appear here.

Beside it, what the status page draws and /status leaves out (it would make that document large at 5 000
rules): each rule's ring from the signal board (`rule_histories`) and an open incident's timeline from the
journal (`incident_timeline`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from watchdog import __version__
from watchdog.config.models import Rule
from watchdog.config.types import Threshold, format_duration
from watchdog.core.rules import Bucket
from watchdog.core.escalation import Incident
from watchdog.runtime.executor import TargetExecutor
from watchdog.core.pause import Pauses
from watchdog.core.ring import Transition
from watchdog.core.signals import SignalBoard
from watchdog.state.peering import Peering
from watchdog.state.storage import AuditJournal, IncidentStore

# JSON for HTTP answers: datetimes and other values as strings, never a crash.
to_json = partial(json.dumps, default=str)


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def _value(v: float | bool | None) -> float | bool | None:
    return v if v is None or isinstance(v, bool) else float(v)


def status_document(*, now: datetime, board: SignalBoard, executors: Mapping[str, TargetExecutor], pauses: Pauses,
                    health: tuple[bool, str], dry_run: bool, notifications: Mapping[str, Mapping[str, Any]],
                    peers: Peering, shared: IncidentStore) -> dict[str, Any]:
    targets = []
    held_elsewhere = {row["target"]: row for row in shared.open_incidents()}
    for name, ex in executors.items():
        m = ex.machine
        inc = m.incident
        pause = pauses.active(name, now)
        # `single`: the state is this watchdog's alone; with a shared one (SPEC 4.5) `leader` acts for the target
        # and a `standby` shows the incident its holder keeps in the shared state.
        role = "single" if peers.every is None else "leader" if peers.may_act(name) else "standby"
        phase, level = m.phase.value, m.level
        other = held_elsewhere.get(name) if role == "standby" else None
        if other is not None:
            phase, level = other["phase"], other["level"]
        targets.append(
            {
                "name": name,
                "role": role,
                "holder": peers.holder(name),
                "phase": phase,
                "level": level,
                "paused": pause is not None,
                "pause": None if pause is None else {"scope": pause.scope, "until": _iso(pause.until), "reason": pause.reason},
                "dry_run": ex.dry_run,
                "blind": bool(inc and inc.blind) or bool(ex.blind_sources),
                "blind_sources": [{"source": k, "why": v} for k, v in sorted(ex.blind_sources.items())],
                "incident": incident_doc(inc) if inc is not None else None if other is None else {
                    "id": other["id"], "phase": other["phase"], "level": other["level"],
                    "opened_at": other["opened_at"], "kept_by": peers.holder(name)},
                "last_incident": None if m.last_closed is None else {"id": m.last_closed.id, "closed_at": _iso(m.last_closed.closed_at)},
            }
        )
    rules = []
    sources = []
    for slot in board.slots.values():
        ev = slot.evaluation
        rules.append(
            {
                "target": slot.target,
                "rule": slot.rule.name,
                "category": slot.rule.category,
                "source": slot.rule.source,
                "level": slot.rule.level,
                "state": slot.state.value,
                "value": _value(ev.value) if ev else None,
                "threshold": describe_threshold(slot.rule),
                "last_datapoint": _iso(slot.last_datapoint),
                "reason": ev.reason if ev else "not evaluated yet",
            }
        )
    for h in board.sources.values():
        sources.append(
            {
                "name": h.name,
                "type": h.type,
                "up": h.up,
                "interval_s": h.interval_s,
                "last_poll": _iso(h.last_poll),
                "last_success": _iso(h.last_success),
                "last_error": h.last_error,
            }
        )
    healthy, why = health
    return {
        "version": __version__,
        "dry_run": dry_run,
        "healthy": healthy,
        "health": why,
        "targets": targets,
        "rules": rules,
        "sources": sources,
        "notifications": [
            {"name": name, **{k: _iso(v) if k.endswith("_at") else v for k, v in ch.items()}}
            for name, ch in notifications.items()
        ],
    }


@dataclass(frozen=True)
class RuleHistory:
    """One rule's ring (watchdog/core/signals.py RuleRing), copied out for a reader on the event loop."""

    values: list[tuple[datetime, float]]
    transitions: tuple[Transition, ...]
    last: tuple[Bucket, ...]  # the last judgement's evaluation range, the judged ones marked
    period: timedelta  # a bucket's length
    threshold: Threshold  # what the values are held against (a change rule's: the percent)
    evaluation_periods: int


def rule_histories(board: SignalBoard, targets: set[str] | None = None) -> dict[str, RuleHistory]:
    """By rule key ("target/rule"); only the rules of `targets` when given."""
    return {key: RuleHistory(slot.ring.values(), slot.ring.transitions(), slot.ring.last, slot.spec.period,
                             slot.rule.judged_by, slot.spec.evaluation_periods)
            for key, slot in board.slots.items() if targets is None or slot.target in targets}


def incident_timeline(journal: AuditJournal, incident: str, limit: int = 50) -> list[dict[str, Any]]:
    """The incident's events as the journal holds them, oldest first (the newest `limit`): each with its
    time, kind, level, why and next."""
    events = [r for r in journal.records(incident) if r.kind == "event"][-limit:]
    return [{"at": r.at, "event": r.data.get("event", ""), "level": r.level, "why": r.data.get("why", ""),
             "next": r.data.get("next", ""), "dry_run": r.dry_run} for r in events]


def describe_threshold(rule: Rule) -> str:
    if rule.change is not None:
        return f"change over {format_duration(rule.change.over)} {rule.change.percent}%"
    return str(rule.judged_by)


def incident_doc(inc: Incident) -> dict[str, Any]:
    return {
        "id": inc.id,
        "target": inc.target,
        "phase": inc.phase.value if inc.closed_at is None else "resolved",
        "level": inc.level,
        "opened_at": _iso(inc.opened_at),
        "mitigated_at": _iso(inc.mitigated_at),
        "closed_at": _iso(inc.closed_at),
        "blind": inc.blind,
        "verify_due": _iso(inc.verify_due),
        "trigger": {k: t.to_json() for k, t in inc.trigger.items()},
        "levels_run": [
            {"level": r.level, "started": _iso(r.started), "finished": _iso(r.finished), "outcome": r.outcome,
             "detail": r.detail, "reason": r.reason}
            for r in inc.runs
        ],
    }


def incident_documents(executors: Mapping[str, TargetExecutor]) -> list[dict[str, Any]]:
    found = []
    for ex in executors.values():
        for inc in (ex.machine.incident, ex.machine.last_closed):
            if inc is not None:
                found.append(incident_doc(inc))
    return sorted(found, key=lambda d: d["opened_at"] or "", reverse=True)
