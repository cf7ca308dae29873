"""An incident as Markdown: what triggered it, what ran, what held."""

from __future__ import annotations

from collections.abc import Sequence

from watchdog.escalation import Incident
from watchdog.journal import Record


def incident_report(inc: Incident, records: Sequence[Record]) -> str:
    lines = [f"# Incident {inc.id}", ""]
    lines.append(f"- target: {inc.target}")
    lines.append(f"- opened: {inc.opened_at:%Y-%m-%d %H:%M:%S}Z")
    lines.append(f"- state: {inc.phase.value} at level {inc.level}")
    if inc.mitigated_at:
        lines.append(f"- mitigated: {inc.mitigated_at:%H:%M:%S}Z ({(inc.mitigated_at - inc.opened_at).total_seconds():.0f}s after opening)")
    lines += ["", "## Trigger", ""]
    for rule, t in inc.trigger.items():
        value = t.get("value")
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        lines.append(f"- {rule}: {shown} (threshold {t['threshold']}): {t['reason']}")
    lines += ["", "## Levels", "", "| level | started | finished | outcome | detail |", "|---|---|---|---|---|"]
    for r in inc.runs:
        fin = f"{r.finished:%H:%M:%S}" if r.finished else "-"
        lines.append(f"| {r.level} | {r.started:%H:%M:%S} | {fin} | {r.outcome or 'running'} | {r.detail} |")
    lines += ["", "## Timeline", ""]
    for rec in records:
        d = rec.data
        mark = " (dry run)" if rec.dry_run else ""
        if rec.kind == "event":
            text = f"{d['event']}: {d['why']} -> {d['next']}"
        elif rec.kind == "intent":
            text = f"intent: {d['action']} attempt {d['attempt']}"
        elif rec.kind == "outcome":
            text = f"outcome: {d['action']} attempt {d['attempt']}: {d['outcome']} ({d['detail']})"
        else:
            text = f"check: {d['check']}: {'passed' if d['ok'] else 'failed'} ({d['detail']})"
        lines.append(f"- {rec.at:%H:%M:%S}Z L{rec.level} {text}{mark}")
    return "\n".join(lines)
