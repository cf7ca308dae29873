"""The status page's style and script, fixed text: the Content-Security-Policy allows exactly these two by
their hashes, so no other inline script or style (say, one a hostile rule name tried to bring) would run.

The script refreshes the live part of the page (`#live`, fetched as `?fragment=live`) every few seconds and
sends the forms to the control API with fetch(). The forms sit outside `#live`, so a refresh never touches
what someone is typing. The API token lives in one variable of the script: never in storage, a cookie or a
URL; the form is never submitted by the browser itself (the policy's form-action 'none' forbids it).
"""

from __future__ import annotations

import base64
import hashlib

from watchdog.views.chart import CHART_STYLE

REFRESH_MS = 5000

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:16px auto;max-width:1180px;color:#1d2430;
background:#fafbfc;padding:0 12px}h1{font-size:21px;margin:0}h2{font-size:17px;margin:22px 0 8px;border-bottom:1px solid
#dde2e8;padding-bottom:4px}h3{font-size:14px;margin:14px 0 4px}.meta{color:#5b6675}table{border-collapse:collapse;
width:100%;background:#fff}td,th{border:1px solid #dde2e8;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f6}.state{font-weight:600;padding:0 6px;border-radius:3px;white-space:nowrap}.state.ok{background:#dcfae6;
color:#085d3a}.state.alarm{background:#fee4e2;color:#912018}.state.insufficient_data{background:#fef0c7;color:#93370d}
.phase{font-weight:600}.phase.normal{color:#085d3a}.phase.running,.phase.verifying,.phase.exhausted{color:#912018}
.phase.mitigated{color:#93370d}.bad{color:#b42318}.good{color:#085d3a}.warn{color:#93370d}details.rules{background:#fff;
border:1px solid #dde2e8;margin:8px 0;padding:4px 10px}details.rules summary{cursor:pointer;font-weight:600}
.rule{margin:8px 0 2px}ol.timeline{background:#fff;border:1px solid #dde2e8;margin:4px 0;padding:6px 10px 6px 34px}
ol.timeline li{margin:2px 0}.next{color:#5b6675}form{background:#fff;border:1px solid #dde2e8;padding:8px 10px;margin:8px 0;
display:flex;flex-wrap:wrap;gap:6px 10px;align-items:end}form b{width:100%}label{display:flex;flex-direction:column;
font-size:12px;color:#5b6675}input,select,button{font:inherit;padding:3px 6px}.answer{width:100%;margin:0;
white-space:pre-wrap;overflow-wrap:anywhere;font-family:ui-monospace,monospace}.answer.ok{color:#085d3a}.answer.bad{color:#b42318}
#forms{display:grid;grid-template-columns:repeat(auto-fit,minmax(270px,1fr));gap:0 12px}.off{background:#fef0c7;
padding:6px 10px;border:1px solid #fec84b}.banner{background:#fee4e2;padding:6px 10px;border:1px solid #fda29b}
""" + CHART_STYLE

SCRIPT = """
(function () {
  "use strict";
  var token = "";  // the API token: only here, never stored, never in a URL
  var asked = new URLSearchParams(location.search);  // ?open=NAME: a section opened from a link
  var opened = new Set(asked.getAll("open")), closed = new Set(asked.getAll("closed"));  // or by hand
  var busy = false;
  var tokenField = document.getElementById("token");
  tokenField.addEventListener("input", function () { token = tokenField.value; });

  function say(form, text, ok) {
    var out = form.querySelector(".answer");
    out.textContent = text;
    out.className = "answer " + (ok ? "ok" : "bad");
  }
  function targetRow(name) {
    var rows = document.querySelectorAll("#targets tr.target");
    for (var i = 0; i < rows.length; i++) { if (rows[i].dataset.target === name) { return rows[i]; } }
    return null;
  }
  var requests = {
    pause: function (f) {
      var body = {duration: f.elements.duration.value, reason: f.elements.reason.value};
      if (f.elements.target.value) { body.target = f.elements.target.value; }
      return ["api/v1/pause", body];
    },
    resume: function (f) {
      var body = {reason: f.elements.reason.value};
      if (f.elements.target.value) { body.target = f.elements.target.value; }
      return ["api/v1/resume", body];
    },
    rollback: function (f) {
      var level = Number(f.elements.level.value);
      return ["api/v1/targets/" + encodeURIComponent(f.elements.target.value) + "/rollback",
              {level: Number.isInteger(level) ? level : f.elements.level.value, reason: f.elements.reason.value}];
    },
    resolve: function (f) {
      var row = targetRow(f.elements.target.value);
      var incident = row ? row.dataset.incident : "";
      if (!incident) { return "no open incident on " + f.elements.target.value; }
      return ["api/v1/incidents/" + encodeURIComponent(incident) + "/resolve", {note: f.elements.reason.value}];
    }
  };
  async function send(form, path, body) {
    if (!token) { say(form, "type the API token first", false); return; }
    say(form, "sending...", true);
    try {
      var r = await fetch(path, {method: "POST", cache: "no-store", credentials: "omit",
        headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json"}, body: JSON.stringify(body)});
      var text = await r.text(), said = text;
      try { var j = JSON.parse(text); said = j.error !== undefined ? j.error : JSON.stringify(j); } catch (e) { }
      say(form, r.status + " " + r.statusText + ": " + said, r.ok);
    } catch (e) {
      say(form, "no answer: " + e, false);
    }
    refresh();
  }
  document.querySelectorAll("form[data-action]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var req = requests[form.dataset.action](form);
      if (typeof req === "string") { say(form, req, false); return; }
      send(form, req[0], req[1]);
    });
  });
  function watch() {
    document.querySelectorAll("#live details[data-target]").forEach(function (d) {
      d.querySelector("summary").addEventListener("click", function () {
        var name = d.dataset.target;
        if (d.open) { closed.add(name); opened.delete(name); return; }
        opened.add(name); closed.delete(name);
        if (!d.querySelector("svg.chart")) { setTimeout(refresh, 0); }
      });
    });
  }
  async function refresh() {
    if (busy) { return; }
    busy = true;
    var q = new URLSearchParams({fragment: "live"});
    opened.forEach(function (t) { q.append("open", t); });
    closed.forEach(function (t) { q.append("closed", t); });
    var stale = document.getElementById("stale");
    try {
      var r = await fetch("?" + q.toString(), {cache: "no-store", credentials: "omit"});
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      document.getElementById("live").innerHTML = await r.text();
      stale.textContent = "";
      watch();
    } catch (e) {
      stale.textContent = "not refreshed: " + e.message + " (the figures below may be old)";
    } finally {
      busy = false;
    }
  }
  watch();
  setInterval(refresh, REFRESH_MS);
})();
""".replace("REFRESH_MS", str(REFRESH_MS))


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


# No source but the page itself: scripts and styles by hash, data only from the same origin, no form
# submission, no framing (a click-jacked pause), images only inline.
POLICY = (f"default-src 'none'; script-src {csp_hash(SCRIPT)}; style-src {csp_hash(STYLE)}; img-src data:; "
          "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"Content-Security-Policy": POLICY, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
           "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
