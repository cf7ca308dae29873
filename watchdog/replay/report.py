"""`replay --report FILE.html`: one self-contained page (no script, font or style from anywhere else).

Per rule an SVG chart of its values over the range against its threshold, with the periods it was in
alarm shaded, the buckets judged when it went into alarm marked, a marker where each level started, and
the labelled incidents shaded behind (green: a rollback was right; grey: it was not). A week of 1-minute
data is drawn as a min/max envelope per pixel column, so a one-bucket spike still shows.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from html import escape
from pathlib import Path

from watchdog.config.models import Config, Rule
from watchdog.config.models import Source as SourceConfig
from watchdog.config.types import Threshold, format_duration
from watchdog.core.ring import Transition
from watchdog.replay.engine import Replayed
from watchdog.replay.labels import Label, Score
from watchdog.core.evidence import evidence
from watchdog.replay.outcome import Outcome, end_state, logged_lines, render_text, unseen_lines
from watchdog.core.rules import Bucket, Datapoint, change_points
from watchdog.sources import source_kind
from watchdog.views.chart import CHART_STYLE, Band, Chart, Marker, svg
from watchdog.views.chart import Bucket as ChartBucket
from watchdog.views.chart import Threshold as ChartThreshold

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1000px;color:#1d2430;
background:#fafbfc}h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde2e8;
padding-bottom:4px}h3{font-size:14px;margin:18px 0 4px}.meta{color:#5b6675}table{border-collapse:collapse;width:100%;
background:#fff}td,th{border:1px solid #dde2e8;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f0f3f6}
.score{font-size:16px;padding:8px 12px;background:#fff;border:1px solid #dde2e8;display:inline-block}
.ok{color:#1a7f37}.bad{color:#b42318}.legend span{margin-right:14px}.rule{margin:12px 0 4px}.sw{display:inline-block;
width:12px;height:12px;vertical-align:-2px;margin-right:4px}pre{white-space:pre-wrap;background:#fff;border:1px solid #dde2e8;
padding:8px}
""" + CHART_STYLE


def write_report(path: Path, cfg: Config, r: Replayed, o: Outcome, labels: list[Label], graded: Score | None) -> None:
    write_atomically(path, render(cfg, r, o, labels, graded).encode("utf-8"))


def write_atomically(path: Path, data: bytes) -> None:
    """A temporary file beside the report's target, written whole and synced, then renamed onto it: a disk
    that fills mid-write leaves the previous report as it was (OSError, and no temporary file behind)."""
    target = path.resolve()  # through a symlink: the link stays, its target is replaced
    tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)  # the umask applies
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def render(cfg: Config, r: Replayed, o: Outcome, labels: list[Label], graded: Score | None) -> str:
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>replay {_t(o.start)} to {_t(o.end)}</title>"
             f"<meta name=viewport content='width=device-width,initial-scale=1'>"
             "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; style-src 'unsafe-inline'\">"
             f"<style>{STYLE}</style></head><body>",
             f"<h1>What the watchdog would have done</h1><p class=meta>{_t(o.start)} to {_t(o.end)} (UTC) &middot; "
             f"{len(o.incidents)} would-be incidents &middot; nothing acted, nothing was sent</p>"]
    if graded is not None:
        cls = "ok" if not (graded.false or graded.missed or graded.wrong) else "bad"
        parts.append(f"<p class='score {cls}' id=score>{escape(graded.line())}</p>")
    parts.append(_incidents(o))
    unseen = unseen_lines(o)
    if unseen:
        parts.append("<h2>What it could not see</h2><pre id=unseen>" + escape("\n".join(unseen)) + "</pre>")
    logged = logged_lines(o)
    if logged:
        parts.append("<h2>What the replayed runtime logged</h2><pre id=logged>" + escape("\n".join(logged)) + "</pre>")
    parts.append("<h2>Rules</h2><p class=legend><span><i class=sw style='background:#2f6fdf'></i>value</span>"
                 "<span><i class=sw style='background:#b42318'></i>threshold</span><span><i class=sw style='background:"
                 "#f0443840'></i>in alarm</span><span><i class=sw style='background:#f79009'></i>judged when it went "
                 "into alarm</span><span><i class=sw style='background:#7a2e0e'></i>level started</span><span><i class=sw "
                 "style='background:#12b76a40'></i>labelled: rollback right</span><span><i class=sw style='background:"
                 "#66708540'></i>labelled: no rollback</span></p>")
    for t in cfg.targets:
        parts.append(f"<h3>{escape(t.name)}</h3>")
        runs = [(run.started, run.level) for inc in o.incidents if inc.target == t.name for run in inc.runs]
        for rule in t.rules:
            key = f"{t.name}/{rule.name}"
            src = r.sources.get(rule.source)
            series = src.series.get(key) if src is not None else None
            points = list(zip(series.times, series.values)) if series is not None else []
            parts.append(f"<p class=rule><b>{escape(rule.name)}</b> <span class=meta>{escape(_judged(rule))}</span></p>")
            parts.append(chart(t.name, rule, cfg.source(rule.source), points, r.states.get(key, []), runs,
                               [lb for lb in labels if lb.target == t.name], o.start, o.end))
    parts.append("<h2>As text</h2><pre>" + escape("\n".join(render_text(o))) + "</pre></body></html>")
    return "".join(parts)


def _incidents(o: Outcome) -> str:
    if not o.incidents:
        return "<h2>Incidents</h2><p>None: no rule alarmed long enough to open one.</p>"
    rows = ["<h2>Incidents</h2><table id=incidents><tr><th>target</th><th>opened</th><th>trigger</th><th>levels</th>"
            "<th>end</th></tr>"]
    for inc in o.incidents:
        trig = "<br>".join(escape(evidence(n, tr.value, tr.reason)) for n, tr in sorted(inc.trigger.items()))
        levels = "<br>".join(escape(f"level {run.level} at {run.started:%m-%d %H:%M:%S} ({run.outcome or 'running'})")
                             for run in inc.runs)
        rows.append(f"<tr class=incident><td>{escape(inc.target)}</td><td>{_t(inc.opened_at)}</td><td>{trig}</td>"
                    f"<td>{levels}</td><td>{escape(end_state(inc))} at level {inc.level}</td></tr>")
    return "".join(rows) + "</table>"


def chart(target: str, rule: Rule, source: SourceConfig, points: list[Datapoint], states: list[Transition],
          runs: list[tuple[datetime, int]], labels: list[Label], start: datetime, end: datetime) -> str:
    """The rule's chart (watchdog/views/chart.py): its values (a change rule's: the change) against the
    threshold, shaded where it was in alarm from the moment it went into alarm, the buckets each alarm was
    decided on marked, a marker where each level started, and the labelled incidents behind."""
    period = source_kind(source).bucket(rule)  # the period its readings are judged in
    if rule.change is not None and period is not None:
        points = change_points(points, rule.change.over, period)
    width = period or timedelta(seconds=source.interval.total_seconds())
    bands = [Band(lb.start, lb.end, "label-band " + ("right" if lb.rollback else "wrong")) for lb in labels]
    bands += [Band(a, b) for a, b in alarm_spans(states, end)]
    return svg(Chart(
        series=[(ts, float(v)) for ts, v in points], start=start, end=end,
        threshold=threshold_of(rule.judged_by), bands=bands,
        markers=[Marker(at, f"L{level}") for at, level in runs],
        judged=[judged_bucket(b, width) for tr in states if tr.state == "alarm" for b in tr.judged],
        title=rule.name, data={"target": target, "rule": rule.name}))


def threshold_of(t: Threshold) -> ChartThreshold:
    return ChartThreshold(float(t.value), str(t))


def judged_bucket(b: Bucket, width: timedelta) -> ChartBucket:
    return ChartBucket(b.start, b.start + width, bool(b.breaching),
                       None if b.value is None else float(b.value), filled=b.value is None)


def _judged(rule: Rule) -> str:
    if rule.change is not None:
        what = f"change over {format_duration(rule.change.over)}: {rule.change.percent} %"
    else:
        what = str(rule.judged_by)
    return (f"{what}; {rule.m} of {rule.evaluation_periods} periods, missing data: {rule.missing_data}; "
            f"starts at level {rule.level}")


def alarm_spans(states: Sequence[Transition], end: datetime) -> list[tuple[datetime, datetime]]:
    """From each transition into alarm to the next one out of it (or `end`)."""
    spans, since = [], None
    for tr in states:
        if tr.state == "alarm" and since is None:
            since = tr.at
        elif tr.state != "alarm" and since is not None:
            spans.append((since, tr.at))
            since = None
    if since is not None:
        spans.append((since, end))
    return spans


def _t(ts: datetime | None) -> str:
    return ts.strftime("%Y-%m-%d %H:%M") if ts else "-"
