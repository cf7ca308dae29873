"""Operator verbs that talk to the running daemon: status, pause, resume, rollback, resolve.

`--url` names the daemon (default http://127.0.0.1:9718); the bearer token comes
from WATCHDOG_API_TOKEN. Every failure is one line on stderr and exit 1 (2 for usage).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import aiohttp

from watchdog.config import operator_token
from watchdog.config.types import parse_duration

DEFAULT_URL = "http://127.0.0.1:9718"
VERBS = ("status", "pause", "resume", "rollback", "resolve")


def add_parsers(sub: Any) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", default=DEFAULT_URL, help=f"the daemon's address (default {DEFAULT_URL})")

    common(sub.add_parser("status", help="targets, rules and sources of the running daemon"))
    p = sub.add_parser("pause", help="stop automatic actions (evaluation and notifications go on)")
    p.add_argument("--for", dest="duration", required=True, help="how long, e.g. 30m")
    p.add_argument("--reason", required=True)
    p.add_argument("--target", help="one target (default: all)")
    common(p)
    p = sub.add_parser("resume", help="end a pause")
    p.add_argument("--target")
    p.add_argument("--reason")
    common(p)
    p = sub.add_parser("rollback", help="run a level by hand, through the same engine")
    p.add_argument("--target", required=True)
    p.add_argument("--level", required=True, type=int)
    p.add_argument("--reason", required=True)
    p.add_argument("--offline", action="store_true",
                   help="run the level in this process, without the daemon (refused while the daemon runs)")
    p.add_argument("-c", "--config", help="with --offline: the daemon's config.yaml")
    common(p)
    p = sub.add_parser("resolve", help="close an incident; the target returns to normal")
    p.add_argument("incident")
    p.add_argument("--note", required=True)
    common(p)


def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "pause":
            parse_duration(args.duration)
    except ValueError as exc:
        print(f"rollback-watchdog pause: --for: {exc}", file=sys.stderr)
        return 2
    if args.command == "rollback" and args.offline:
        from watchdog.lifecycle.offline import run_offline

        if not args.config:
            print("rollback-watchdog rollback: --offline needs -c CONFIG", file=sys.stderr)
            return 2
        return run_offline(args.config, args.target, args.level, args.reason)
    try:
        return asyncio.run(_run(args))
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        print(f"rollback-watchdog {args.command}: cannot reach the daemon at {args.url}: {type(exc).__name__}",
              file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "status":
        status, doc = await _call(args.url, "GET", "/status")
        if status != 200:
            return _fail(cmd, status, doc)
        print(render_status(doc))
        return 0
    if cmd == "pause":
        body = {"duration": args.duration, "reason": args.reason, "target": args.target}
        path = "/api/v1/pause"
    elif cmd == "resume":
        body, path = {"target": args.target, "reason": args.reason}, "/api/v1/resume"
    elif cmd == "rollback":
        body, path = {"level": args.level, "reason": args.reason}, f"/api/v1/targets/{args.target}/rollback"
    else:
        body, path = {"note": args.note}, f"/api/v1/incidents/{args.incident}/resolve"
    status, doc = await _call(args.url, "POST", path, {k: v for k, v in body.items() if v is not None})
    if status >= 300:
        return _fail(cmd, status, doc)
    print(_summary(cmd, doc))
    return 0


async def _call(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    token = operator_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        async with s.request(method, url.rstrip("/") + path, json=body, headers=headers) as r:
            try:
                return r.status, await r.json(content_type=None)
            except ValueError:
                return r.status, {"error": f"HTTP {r.status}"}


def _fail(cmd: str, status: int, doc: Any) -> int:
    why = doc.get("error") if isinstance(doc, dict) else None
    hint = " (set WATCHDOG_API_TOKEN)" if status == 401 else ""
    print(f"rollback-watchdog {cmd}: HTTP {status}: {why or 'failed'}{hint}", file=sys.stderr)
    return 1


def _summary(cmd: str, doc: dict[str, Any]) -> str:
    if cmd == "pause":
        kept = "" if doc.get("stored", True) else (
            "; NOT yet in the state file (it cannot be written): a restart now would forget this pause")
        return (f"paused {'all targets' if doc['paused'] == '*' else doc['paused']} until {doc['until']} "
                f"({doc['reason']}){kept}")
    if cmd == "resume":
        return "resumed" if doc.get("was_paused") else "nothing was paused"
    if cmd == "rollback":
        return f"level {doc['level']} started on {doc['target']} (incident {doc['incident']})"
    return f"resolved {doc['resolved']}; {doc['target']} is back to normal"


def render_status(doc: dict[str, Any]) -> str:
    lines = [f"rollback-watchdog {doc.get('version')}  {'healthy' if doc.get('healthy') else 'UNHEALTHY'}: {doc.get('health')}"
             + ("  [DRY RUN]" if doc.get("dry_run") else "")]
    lines.append("")
    lines.append(_table(["TARGET", "PHASE", "LEVEL", "PAUSED", "INCIDENT"], [
        [t["name"], t["phase"] + (" (blind)" if t.get("blind") else ""), str(t["level"]),
         f"until {t['pause']['until'][11:19]}Z: {t['pause']['reason']}" if t.get("pause") else "no",
         (t.get("incident") or {}).get("id") or "-"]
        for t in doc.get("targets", [])
    ]))
    lines.append("")
    lines.append(_table(["TARGET", "RULE", "STATE", "VALUE", "THRESHOLD", "LAST DATAPOINT"], [
        [r["target"], r["rule"], r["state"], "-" if r["value"] is None else f"{r['value']:g}" if not isinstance(r["value"], bool) else str(r["value"]).lower(),
         r["threshold"], (r.get("last_datapoint") or "-")[:19]]
        for r in doc.get("rules", [])
    ]))
    lines.append("")
    lines.append(_table(["SOURCE", "UP", "LAST POLL", "LAST ERROR"], [
        [s["name"], "yes" if s["up"] else "NO", (s.get("last_poll") or "-")[:19], s.get("last_error") or "-"]
        for s in doc.get("sources", [])
    ]))
    channels = doc.get("notifications") or []
    if channels:
        lines.append("")
        lines.append(_table(["CHANNEL", "TYPE", "UP", "WAITING", "DEAD", "SENT", "LAST ERROR"], [
            [c["name"], c["type"], "yes" if c["up"] else "NO", str(c["pending"]), str(c["dead"]), str(c["sent"]),
             c.get("last_error") or "-"]
            for c in channels
        ]))
    return "\n".join(lines)


def _table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows])
