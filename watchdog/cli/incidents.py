"""`rollback-watchdog incidents list|show ID|report ID|verify-log -c CONFIG`.

These read the state the config names (`watchdog.state`, or `state_path`), opened
read-only by its backend (watchdog/state/backend.py): the SQLite file also while the
daemon runs (WAL lets them read alongside it) and on a read-only mount. They never
create a state: a missing one is a one-line error, exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from watchdog.cli.loading import load_or_say
from watchdog.state.report import render_report
from watchdog.state.backend import read_configured
from watchdog.state.storage import StateReader, StoreError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
PROG = "rollback-watchdog incidents"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("incidents", help="incidents and the audit log, read from the state file")
    sub = p.add_subparsers(dest="incidents_command", required=True, metavar="{list,show,report,verify-log}")

    def common(q: argparse.ArgumentParser) -> argparse.ArgumentParser:
        q.add_argument("-c", "--config", required=True, help="path to config.yaml (for its watchdog.state)")
        return q

    lst = common(sub.add_parser("list", help="incidents, newest first"))
    lst.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    common(sub.add_parser("show", help="one incident and its records")).add_argument("id")
    common(sub.add_parser("report", help="one incident as a Markdown report")).add_argument("id")
    common(sub.add_parser("verify-log", help="check the audit log's hash chain"))
    return p


def run(args: argparse.Namespace) -> int:
    cfg = load_or_say(args.config, warnings=False)
    if cfg is None:
        return EXIT_USAGE
    try:
        store = read_configured(cfg)
    except StoreError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_FAIL
    try:
        command = args.incidents_command
        if command == "list":
            return _list(store, args.limit)
        if command == "show":
            return _show(store, args.id)
        if command == "report":
            return _report(store, args.id)
        if command == "verify-log":
            return _verify(store)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except Exception as exc:  # a damaged file must still end in one line, not a traceback
        print(f"{PROG}: cannot read {store.where}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAIL
    finally:
        store.close()


def _state(row: dict[str, Any]) -> str:
    return f"resolved ({row['phase']})" if row.get("closed_at") else str(row["phase"])


def _list(store: StateReader, limit: int) -> int:
    rows = store.list_incidents(max(limit, 1))
    if not rows:
        print("no incidents")
        return EXIT_OK
    table = [("ID", "TARGET", "PHASE", "LEVEL", "OPENED", "CLOSED")]
    for r in rows:
        table.append((r["id"], r["target"], _state(r), str(r["level"]), r["opened_at"], r["closed_at"] or "-"))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return EXIT_OK


def _find(store: StateReader, incident_id: str) -> dict[str, Any] | None:
    row = store.incident(incident_id)
    if row is None:
        print(f"{PROG}: no incident {incident_id!r} in {store.where}", file=sys.stderr)
    return row


def _show(store: StateReader, incident_id: str) -> int:
    row = _find(store, incident_id)
    if row is None:
        return EXIT_FAIL
    snap = row["snapshot"]
    print(f"incident   {row['id']}")
    print(f"target     {row['target']}")
    print(f"state      {_state(row)} at level {row['level']}")
    print(f"opened     {row['opened_at']}")
    if snap.get("mitigated_at"):
        print(f"mitigated  {snap['mitigated_at']}")
    print(f"closed     {row['closed_at'] or '-'}")
    if snap.get("blind"):
        print("blind      yes: no datapoint newer than the last actions")
    for rule, t in sorted((snap.get("trigger") or {}).items()):
        print(f"trigger    {rule}: value {t.get('value')} threshold {t.get('threshold')}: {t.get('reason', '')}")
    for run in snap.get("runs") or []:
        print(f"level {run.get('level')}    started {run.get('started')} finished {run.get('finished') or '-'} "
              f"outcome {run.get('outcome') or 'running'} {run.get('detail') or ''}".rstrip())
    records = store.records(incident_id)
    print(f"records    {len(records)}")
    for rec in records:
        mark = " dry_run" if rec.dry_run else ""
        print(f"  #{rec.seq} {rec.at.isoformat()} {rec.kind:<7} L{rec.level}{mark} {json.dumps(rec.data, sort_keys=True)}")
    return EXIT_OK


def _report(store: StateReader, incident_id: str) -> int:
    row = _find(store, incident_id)
    if row is None:
        return EXIT_FAIL
    sys.stdout.write(render_report(row, store.records(incident_id)))
    return EXIT_OK


def _verify(store: StateReader) -> int:
    count, problems = store.check_chain()
    if problems:
        for p in problems:
            print(p)
        return EXIT_FAIL
    print(f"audit log intact: {count} records")
    return EXIT_OK
