"""The /status document: targets, rules, sources. Secrets never appear here."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import Any

from watchdog import __version__
from watchdog.config.models import Rule
from watchdog.config.types import format_duration
from watchdog.core.escalation import Incident
from watchdog.runtime.executor import TargetExecutor
from watchdog.core.pause import Pauses
from watchdog.core.signals import SignalBoard

# JSON for HTTP answers: datetimes and other values as strings, never a crash.
to_json = partial(json.dumps, default=str)


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def _value(v: float | bool | None) -> float | bool | None:
    return v if v is None or isinstance(v, bool) else float(v)


def status_document(*, now: datetime, board: SignalBoard, executors: Mapping[str, TargetExecutor], pauses: Pauses,
                    health: tuple[bool, str], dry_run: bool, notifications: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    targets = []
    for name, ex in executors.items():
        m = ex.machine
        inc = m.incident
        pause = pauses.active(name, now)
        targets.append(
            {
                "name": name,
                "phase": m.phase.value,
                "level": m.level,
                "paused": pause is not None,
                "pause": None if pause is None else {"scope": pause.scope, "until": _iso(pause.until), "reason": pause.reason},
                "dry_run": ex.dry_run,
                "blind": bool(inc and inc.blind) or bool(ex.blind_sources),
                "blind_sources": [{"source": k, "why": v} for k, v in sorted(ex.blind_sources.items())],
                "incident": None if inc is None else incident_doc(inc),
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
