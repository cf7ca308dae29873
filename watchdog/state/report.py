"""An incident as Markdown: what triggered it, what ran (every attempt), what held.

Works from what the store keeps: an incident row (`Store.incident`, whose
`snapshot` is `codec.encode_incident(Incident)`) or a bare snapshot, and the incident's
journal records. Used by `rollback-watchdog incidents report` and the demo.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from watchdog.state.codec import encode_incident
from watchdog.state.journal import Record
from watchdog.core.rules import format_value

DRY = " (dry run)"
VERIFICATION_EVENTS = {"level_succeeded", "verification_failed", "blind", "mitigated", "realarmed"}


def render_report(incident_row: Mapping[str, Any], records: Sequence[Record]) -> str:
    snap: Mapping[str, Any] = incident_row.get("snapshot") or incident_row
    opened = _dt(incident_row.get("opened_at") or snap.get("opened_at"))
    lines = [f"# Incident {incident_row.get('id') or snap.get('id')}", ""]
    lines += _header(incident_row, snap, opened, records)
    lines += ["", "## Trigger", ""] + _trigger(snap, opened)
    lines += ["", "## Levels", ""] + _levels(snap, records, opened)
    lines += ["", "## Actions", ""] + _actions(records, opened)
    lines += ["", "## Verification", ""] + _verification(records, opened)
    lines += ["", "## Notifications", ""] + _notifications(records, opened)
    lines += ["", "## Timeline", ""] + [f"- {_line(r, opened)}" for r in records]
    if not records:
        lines.append("- (no records)")
    return "\n".join(lines) + "\n"


def incident_report(inc: Any, records: Sequence[Record]) -> str:
    """The report of a live `escalation.Incident` (the demo prints it as the story ends)."""
    return render_report(encode_incident(inc), records)


# --- sections ----------------------------------------------------------------------


def _header(row: Mapping[str, Any], snap: Mapping[str, Any], opened: datetime | None,
            records: Sequence[Record]) -> list[str]:
    phase = row.get("phase") or snap.get("phase") or "?"
    level = row.get("level", snap.get("level", 0))
    closed = _dt(row.get("closed_at") or snap.get("closed_at"))
    mitigated = _dt(snap.get("mitigated_at"))
    out = [f"- target: {row.get('target') or snap.get('target')}", f"- opened: {_full(opened)}"]
    out.append(f"- state: resolved (was {phase} at level {level})" if closed else f"- state: {phase} at level {level}")
    if mitigated:
        out.append(f"- mitigated: {_at(mitigated, opened)} ({_dur(_secs(opened, mitigated))} after opening)")
    if closed:
        out.append(f"- closed: {_at(closed, opened)} ({_dur(_secs(opened, closed))} after opening)")
    if snap.get("blind"):
        out.append("- blind: no datapoint newer than the last actions yet; a human must look")
    if any(r.dry_run for r in records):
        out.append("- mode: **dry run**: decisions were recorded, no action was executed")
    return out


def _trigger(snap: Mapping[str, Any], opened: datetime | None) -> list[str]:
    trigger = snap.get("trigger") or {}
    if not trigger:
        return ["- (not recorded)"]
    out = []
    for rule, t in sorted(trigger.items()):
        at = _dt(t.get("at"))
        when = f" at {_at(at, opened)}" if at else ""
        out.append(f"- {rule}: value {format_value(t.get('value'))}{when}, threshold {t.get('threshold')}: {t.get('reason', '')}")
    return out


def _levels(snap: Mapping[str, Any], records: Sequence[Record], opened: datetime | None) -> list[str]:
    runs = snap.get("runs") or []
    if not runs:
        return ["- (no level ran)"]
    interrupted = {r.level for r in records if r.kind == "outcome" and r.data.get("outcome") == "interrupted"}
    dry = {r.level for r in records if r.kind == "outcome" and r.dry_run}
    out = ["| level | started | finished | duration | outcome | detail |", "|---|---|---|---|---|---|"]
    for run in runs:
        lvl = run.get("level")
        started, finished = _dt(run.get("started")), _dt(run.get("finished"))
        outcome = run.get("outcome") or ("interrupted" if lvl in interrupted else "running")
        if lvl in dry:
            outcome += DRY
        dur = _dur(_secs(started, finished)) if finished else "-"
        fin = _at(finished, opened) if finished else "-"
        out.append(f"| {lvl} | {_at(started, opened)} | {fin} | {dur} | {outcome} | {_cell(run.get('detail', ''))} |")
    return out


def _actions(records: Sequence[Record], opened: datetime | None) -> list[str]:
    waiting: dict[tuple[int, str, int], int] = {}  # an intent's row, until its outcome comes
    rows: list[tuple[Record | None, Record | None]] = []
    for r in records:
        key = (r.level, r.data.get("action", ""), r.data.get("attempt", 0))
        if r.kind == "intent":
            waiting[key] = len(rows)
            rows.append((r, None))
        elif r.kind == "outcome":
            index = waiting.pop(key, None)
            if index is not None:
                rows[index] = (rows[index][0], r)
            else:  # e.g. the level's own "interrupted" record
                rows.append((None, r))
    if not rows:
        return ["- (no action attempted)"]
    out = ["| level | action | attempt | intent | outcome | duration | detail |", "|---|---|---|---|---|---|---|"]
    for intent, outcome in rows:
        first = intent or outcome
        if first is None:  # every row holds one or the other
            continue
        data = first.data
        when = _at(intent.at, opened) if intent else "-"
        if outcome is None:
            result, dur, detail = "**no outcome recorded** (unknown)", "-", ""
        else:
            result = outcome.data.get("outcome", "?")
            dur = _dur(_secs(intent.at, outcome.at)) if intent else "-"
            detail = outcome.data.get("detail", "")
        mark = DRY if first.dry_run else ""
        out.append(f"| {first.level} | {_cell(data.get('action', ''))} | {data.get('attempt', '')} | {when} | "
                   f"{result}{mark} | {dur} | {_cell(detail)} |")
    return out


def _verification(records: Sequence[Record], opened: datetime | None) -> list[str]:
    out = [f"- {_line(r, opened)}" for r in records
           if r.kind == "check" or (r.kind == "event" and r.data.get("event") in VERIFICATION_EVENTS)]
    return out or ["- (no verification yet)"]


def _notifications(records: Sequence[Record], opened: datetime | None) -> list[str]:
    sent = [r for r in records if r.kind == "notification"]
    if not sent:
        return ["- (no notification delivered or given up yet; waiting ones are in the outbox, see /status)"]
    out = ["| at | channel | event | level | result | attempts | detail |", "|---|---|---|---|---|---|---|"]
    for r in sent:
        d = r.data
        mark = DRY if r.dry_run else ""
        out.append(f"| {_at(r.at, opened)} | {d.get('channel')} | {d.get('event')} | {r.level} | "
                   f"{d.get('outcome')}{mark} | {d.get('attempts')} | {_cell(str(d.get('detail', '')))} |")
    return out


def _line(r: Record, opened: datetime | None) -> str:
    d = r.data
    if r.kind == "event":
        text = f"{d.get('event')}: {d.get('why')} -> {d.get('next')}"
    elif r.kind == "intent":
        text = f"intent: {d.get('action')} attempt {d.get('attempt')}"
    elif r.kind == "outcome":
        text = f"outcome: {d.get('action')} attempt {d.get('attempt')}: {d.get('outcome')} ({d.get('detail')})"
    elif r.kind == "notification":
        text = f"notification: {d.get('event')} to {d.get('channel')}: {d.get('outcome')} after {d.get('attempts')} attempt(s)"
    elif r.kind == "check":
        text = f"check: {d.get('check')}: {'passed' if d.get('ok') else 'failed'} ({d.get('detail')})"
    else:
        text = f"{r.kind}: {d}"
    return f"{_at(r.at, opened)} L{r.level} {text}{DRY if r.dry_run else ''}"


# --- formatting --------------------------------------------------------------------


def _dt(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _zone(dt: datetime) -> str:
    off = dt.utcoffset()
    if off is None:
        return ""
    return "Z" if not off else dt.strftime("%z")


def _full(dt: datetime | None) -> str:
    return "-" if dt is None else f"{dt:%Y-%m-%d %H:%M:%S}{_zone(dt)}"


def _at(dt: datetime | None, ref: datetime | None) -> str:
    """Time of day, with the date when it is not the day the incident opened."""
    if dt is None:
        return "-"
    if ref is not None and dt.date() != ref.date():
        return _full(dt)
    return f"{dt:%H:%M:%S}{_zone(dt)}"


def _secs(a: datetime | None, b: datetime | None) -> float | None:
    if a is None or b is None:
        return None
    try:
        return (b - a).total_seconds()
    except TypeError:  # one aware, one naive
        return None


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        m, s = divmod(round(seconds), 60)
        return f"{m}m{s:02d}s" if m else f"{s}s"
    h, rest = divmod(round(seconds), 3600)
    return f"{h}h{rest // 60:02d}m"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
