"""`GET /`: the status page for a person (SPEC 3.3): server-rendered HTML, nothing from elsewhere.

One row per target (phase, level, pause, blind sources, role, open incident and its age); per target its
rules, each with its state in words and colour, its value, threshold and last datapoint, and its chart
(watchdog/views/chart.py) from the signal board's ring; each open incident's timeline from the journal; the
sources; and the forms that call the control API (page_assets.py holds their script).

A target that needs eyes (not normal, paused, blind, a rule in alarm) is shown open with its charts; the
others are closed and their charts are drawn when a reader opens them (`?fragment=live&open=NAME`), which
keeps the page small at hundreds of rules (bench/page_bench.py). Everything that comes from the config, a
source or the journal is escaped; the config's secrets (SecretStr) are never read here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from html import escape
from typing import TYPE_CHECKING, Any

from aiohttp import web

from watchdog import __version__
from watchdog.config.types import format_duration
from watchdog.http.page_assets import HEADERS, SCRIPT, STYLE
from watchdog.runtime.status import RuleHistory, incident_timeline, rule_histories
from watchdog.views.chart import Band, Bucket, Chart, Frame, Marker, Threshold, svg

if TYPE_CHECKING:
    from watchdog.runtime.runtime import Runtime

FRAME = Frame(width=760, height=130, left=50, right=10, top=10, bottom=28, rows=2, digits=0)
STATE_WORDS = {"ok": "OK", "alarm": "ALARM", "insufficient_data": "INSUFFICIENT DATA"}


def h(value: object) -> str:
    return escape(str(value), quote=True)


def render_page(app: "Runtime", opened: Iterable[str] = (), closed: Iterable[str] = ()) -> str:
    targets = [t.name for t in app.cfg.targets]
    token = app.cfg.watchdog.api_token is not None
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><title>rollback-watchdog</title>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<style>{STYLE}</style></head><body><header><h1>rollback-watchdog</h1>"
            f"<p class=meta>version {h(__version__)} &middot; refreshes itself every few seconds "
            "<span id=stale class=bad></span></p></header>"
            f"<section id=live>{render_live(app, opened, closed)}</section>"
            f"<section id=control><h2>Control</h2>{forms(targets, token)}</section>"
            f"<script>{SCRIPT}</script></body></html>")


def render_live(app: "Runtime", opened: Iterable[str] = (), closed: Iterable[str] = ()) -> str:
    doc = app.status()
    now = app.clock.now()
    shown = {t["name"] for t in doc["targets"] if needs_eyes(t, doc["rules"])}
    shown = (shown | set(opened)) - set(closed)
    histories = rule_histories(app.board, shown)
    parts = [f"<p class=meta>as of {_t(now)} UTC</p>"]
    if doc["dry_run"]:
        parts.append("<p class=banner>DRY RUN: levels are judged and recorded, no action is run</p>")
    cls = "good" if doc["healthy"] else "bad"
    parts.append(f"<p id=health class={cls}><b>{'healthy' if doc['healthy'] else 'UNHEALTHY'}</b>: {h(doc['health'])}</p>")
    parts.append(_targets(doc["targets"], now))
    for t in doc["targets"]:
        inc = t["incident"]
        if inc is not None:
            parts.append(_timeline(app, inc))
    parts.append("<h2>Rules</h2>")
    by_target: dict[str, list[dict[str, Any]]] = {}
    for r in doc["rules"]:
        by_target.setdefault(r["target"], []).append(r)
    for t in doc["targets"]:
        parts.append(_rules(t, by_target.get(t["name"], []), histories, now, t["name"] in shown))
    parts.append(_sources(doc["sources"]))
    return "".join(parts)


def needs_eyes(target: Mapping[str, Any], rules: Iterable[Mapping[str, Any]]) -> bool:
    if target["phase"] != "normal" or target["paused"] or target["blind"]:
        return True
    return any(r["target"] == target["name"] and r["state"] == "alarm" for r in rules)


def _targets(targets: list[dict[str, Any]], now: datetime) -> str:
    rows = ["<h2>Targets</h2><table id=targets><tr><th>target</th><th>phase</th><th>level</th><th>paused</th>"
            "<th>blind sources</th><th>role</th><th>incident</th></tr>"]
    for t in targets:
        inc, pause = t["incident"], t["pause"]
        paused = "no"
        if pause is not None:
            scope = "all targets" if pause["scope"] == "*" else pause["scope"]
            paused = f"until {h(_t(pause['until']))} ({h(scope)}): {h(pause['reason'])}"
        blind = "<br>".join(f"<span class=warn>{h(b['source'])}</span>: {h(b['why'])}" for b in t["blind_sources"])
        if not blind:
            blind = "<span class=warn>blind: no fresh data since the last action</span>" if t["blind"] else "none"
        role = h(t["role"])
        if t["role"] == "standby" and t.get("holder"):
            role += f" (held by {h(t['holder'])})"
        incident = "none"
        if inc is not None:
            incident = f"<span class=incident-id>{h(inc['id'])}</span>, open {h(_age(inc['opened_at'], now))}"
        rows.append(f"<tr class=target data-target='{h(t['name'])}' data-incident='{h(inc['id'] if inc else '')}' "
                    f"data-level='{int(t['level'])}'><td><b>{h(t['name'])}</b>{' (dry run)' if t['dry_run'] else ''}</td>"
                    f"<td class='phase {h(t['phase'])}'>{h(t['phase'])}</td><td class=level>{int(t['level'])}</td>"
                    f"<td class=paused>{paused}</td><td class=blind>{blind}</td><td class=role>{role}</td>"
                    f"<td>{incident}</td></tr>")
    return "".join(rows) + "</table>"


def _timeline(app: "Runtime", inc: Mapping[str, Any]) -> str:
    head = (f"<h3>Incident <span class=incident-id>{h(inc['id'])}</span> on {h(inc['target'])}: "
            f"{h(inc['phase'])} at level {int(inc['level'])}</h3>")
    try:
        events = incident_timeline(app.journal, inc["id"])
    except Exception as exc:  # the state file failing: the rest of the page still shows
        return head + f"<p class=bad>the timeline cannot be read now: {h(type(exc).__name__)}: {h(exc)}</p>"
    items = [f"<li class=event data-event='{h(e['event'])}'><time>{h(_t(e['at']))}</time> <b>{h(e['event'])}</b>"
             f" L{int(e['level'])}{' (dry run)' if e['dry_run'] else ''}: {h(e['why'])}"
             + (f" <span class=next>next: {h(e['next'])}</span>" if e["next"] else "") + "</li>" for e in events]
    if not items:
        items = ["<li class=meta>no event written yet</li>"]
    return head + f"<ol class=timeline data-incident='{h(inc['id'])}'>" + "".join(items) + "</ol>"


def _rules(target: Mapping[str, Any], rules: list[dict[str, Any]], histories: Mapping[str, RuleHistory],
           now: datetime, shown: bool) -> str:
    name = target["name"]
    not_ok = sum(1 for r in rules if r["state"] != "ok")
    out = [f"<details class=rules data-target='{h(name)}'{' open' if shown else ''}><summary>{h(name)}: "
           f"{len(rules)} rules, {not_ok} not ok</summary><table class=rules><tr><th>rule</th><th>state</th>"
           "<th>value</th><th>threshold</th><th>last datapoint</th><th>why</th></tr>"]
    starts = [(datetime.fromisoformat(run["started"]), int(run["level"]))
              for run in (target["incident"] or {}).get("levels_run", []) if run.get("started")]
    for r in rules:
        state = str(r["state"])
        value = "-" if r["value"] is None else _num(r["value"])
        # one row a rule, short: 500 of them must fit in the page's budget beside the charts
        # A calm target's "0 of 3 breach" is left out, and so are the end tags HTML does not need.
        why = f"<td class=meta>{h(r['reason'])}" if shown or state != "ok" else ""
        out.append(f"<tr class=rule><td class=name>{h(r['rule'])}<td class='state {h(state)}'>"
                   f"{h(STATE_WORDS.get(state, state))}<td>{h(value)}<td>{h(r['threshold'])}<td>"
                   f"{h(_t(r['last_datapoint'], now))}{why}")
        hist = histories.get(f"{name}/{r['rule']}")
        if shown and hist is not None:
            out.append(f"<tr class=chart-row><td colspan=6>{rule_chart(name, str(r['rule']), hist, starts, now)}")
    out.append("</table>")
    if not shown:
        out.append("<p class=meta>charts are drawn when this is opened</p>")
    return "".join(out) + "</details>"


def rule_chart(target: str, rule: str, hist: RuleHistory, starts: list[tuple[datetime, int]], now: datetime) -> str:
    """The rule's recent values, the alarm bands from its transitions, the buckets its last judgement used
    and the levels the open incident started."""
    earliest = now - hist.period * (hist.evaluation_periods + 2)
    start = min(hist.values[0][0], earliest) if hist.values else earliest
    bands, since = [], None
    for tr in hist.transitions:
        if tr.state == "alarm" and since is None:
            since = tr.at
        elif tr.state != "alarm" and since is not None:
            bands.append(Band(since, tr.at))
            since = None
    if since is not None:
        bands.append(Band(since, now))
    judged = [Bucket(b.start, b.start + hist.period, bool(b.breaching), None if b.value is None else float(b.value),
                     filled=b.value is None) for b in hist.last if b.judged]
    t = hist.threshold
    return svg(Chart(hist.values, start, now, Threshold(float(t.value), str(t)), bands,
                     [Marker(at, f"L{lv}") for at, lv in starts if at >= start], judged, title=rule,
                     data={"target": target, "rule": rule}), FRAME)


def _sources(sources: list[dict[str, Any]]) -> str:
    rows = ["<h2>Sources</h2><table id=sources><tr><th>source</th><th>type</th><th>up</th><th>last poll</th>"
            "<th>last error</th></tr>"]
    for s in sources:
        up = "<span class=good>up</span>" if s["up"] else "<span class=bad>DOWN</span>"
        rows.append(f"<tr><td>{h(s['name'])}</td><td>{h(s['type'])}</td><td>{up}</td><td>{h(_t(s['last_poll']))}</td>"
                    f"<td>{h(s['last_error'] or '')}</td></tr>")
    return "".join(rows) + "</table>"


def forms(targets: list[str], token: bool) -> str:
    every = "".join(f"<option value='{h(t)}'>{h(t)}</option>" for t in targets)
    anyone = "<option value=''>all targets</option>" + every
    reason = "<label>reason<input name=reason required maxlength=500 autocomplete=off></label>"
    answer = "<p class=answer role=status></p>"
    off = "" if token else (
        "<p class=off id=api-off>The control API is off: watchdog.api_token is not set, so it answers 403 to every "
        "command. Set it (from the environment) and reload to use these forms.</p>")
    return (off + "<p><label>API token (kept in this page only, sent as the bearer header)"
            "<input id=token type=password autocomplete=off></label></p><div id=forms>"
            f"<form data-action=pause id=pause-form><b>Pause</b><label>target<select name=target>{anyone}</select>"
            "</label><label>for<input name=duration value=30m size=6 required></label>" + reason
            + f"<button>pause</button>{answer}</form>"
            f"<form data-action=resume id=resume-form><b>Resume</b><label>target<select name=target>{anyone}</select>"
            f"</label>{reason}<button>resume</button>{answer}</form>"
            f"<form data-action=rollback id=rollback-form><b>Roll back</b><label>target<select name=target>{every}"
            "</select></label><label>level<input name=level type=number min=1 value=1 size=3 required></label>"
            f"{reason}<button>roll back</button>{answer}</form>"
            f"<form data-action=resolve id=resolve-form><b>Resolve the open incident</b><label>target<select "
            f"name=target>{every}</select></label>{reason}<button>resolve</button>{answer}</form></div>")


async def page(request: web.Request, app: "Runtime") -> web.Response:
    """The page, or with `?fragment=live` only its live part (what the script refreshes)."""
    known = {t.name for t in app.cfg.targets}
    opened = [t for t in request.query.getall("open", []) if t in known]
    closed = [t for t in request.query.getall("closed", []) if t in known]
    if request.query.get("fragment") == "live":
        body = render_live(app, opened, closed)
    else:
        body = render_page(app, opened, closed)
    response = web.Response(text=body, content_type="text/html", charset="utf-8", headers=HEADERS)
    response.enable_compression()  # when the browser accepts it: 200 KB of markup travels as about 10
    return response


def _t(value: datetime | str | None, today: datetime | None = None) -> str:
    """A time in UTC; without its date when it is on the day of `today`."""
    if value is None or value == "":
        return "-"
    ts = datetime.fromisoformat(value) if isinstance(value, str) else value
    if today is not None and ts.date() == today.date():
        return ts.strftime("%H:%M:%SZ")
    return ts.strftime("%Y-%m-%d %H:%M:%SZ")


def _age(opened: str | None, now: datetime) -> str:
    if not opened:
        return "-"
    age = max(timedelta(0), now - datetime.fromisoformat(opened))
    return format_duration(timedelta(seconds=int(age.total_seconds())))


def _num(v: float | bool) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    return f"{v:.4g}" if abs(v) < 1e6 else f"{v:.3e}"
