"""`rollback --offline`: run one level without the daemon, for when the watchdog itself is down.

It opens the configured state as the daemon does (watchdog/state/backend.py; the SQLite
file's lock first), so the two never both act; it journals to the same state and
announces on the same channels. It does not verify (that
needs polling over the verify window): the incident stays open for the daemon,
or a human, to judge.
"""

from __future__ import annotations

import asyncio
import sys

from watchdog.config import Config, ConfigError, load_config
from watchdog.state.storage import LockHeld


def run_offline(path: str, target: str, level: int, reason: str) -> int:
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    if target not in {t.name for t in cfg.targets}:
        print(f"rollback-watchdog rollback: no target named {target!r}", file=sys.stderr)
        return 2
    return asyncio.run(_run(cfg, target, level, reason))


async def _run(cfg: Config, target: str, level: int, reason: str) -> int:
    from watchdog.lifecycle.app import App
    from watchdog.support.logs import setup_logging
    from watchdog.shared.redact import redactor_for

    setup_logging(cfg.watchdog.log_level, sys.stderr, redactor_for(cfg))
    try:
        app = await App.create(cfg, serve_http=False, schedule=False, owner="rollback --offline")
    except LockHeld as exc:
        print(f"rollback-watchdog rollback: refused: {exc}; use `rollback` without --offline "
              "so the running daemon acts", file=sys.stderr)
        return 1
    except Exception as exc:  # a state file that cannot be used, a source that cannot start: one line
        print(f"rollback-watchdog rollback: cannot start: {exc}", file=sys.stderr)
        return 1
    try:
        await app.start()
        try:
            incident = await app.runtime.manual_rollback(target, level, f"offline: {reason}")
        except ValueError as exc:
            print(f"rollback-watchdog rollback: refused: {exc}", file=sys.stderr)
            return 1
        ex = app.runtime.executors[target]
        ex.stopping = True  # this one level only: no escalation, no checks without the daemon
        if ex.level_task is not None:
            await ex.level_task
        runs = ex.machine.incident.runs if ex.machine.incident else []
        # A failure lets the machine decide on the next level; it was not run (stopping), so skip it.
        run = next((r for r in reversed(runs) if r.level == level and r.outcome), None)
        ok = run is not None and run.outcome == "succeeded"
        print(f"level {level} on {target}: {run.outcome if run else 'not run'}"
              f"{': ' + run.detail if run and run.detail else ''} (incident {incident}; not verified offline)")
        return 0 if ok else 1
    finally:
        await app.stop()
