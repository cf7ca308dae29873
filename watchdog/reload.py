"""SIGHUP: apply a new configuration to a running App without losing open incidents.

The caller has already validated the new file (an invalid one never gets here).
Kept: each target's escalation machine (its incident, circuit breaker and any
running level), pauses, rule data of unchanged rules, source health of unchanged
sources. Rebuilt: sources, the scheduler's jobs, notification channels, the
redactor. Refused, with the reason: removing a target that has an open incident.
Needing a restart (logged, the old value stays): `listen`, `state_path`, `dry_run`.
"""

from __future__ import annotations

from typing import Any, TYPE_CHECKING

from watchdog.config.models import Config
from watchdog.escalation import TargetMachine
from watchdog.executor import TargetExecutor
from watchdog.metrics import rule_labels
from watchdog.notify import build_channels
from watchdog.redact import redactor_for
from watchdog.signals import SignalBoard
from watchdog.sources import SAMPLED, SourceDeps, build_source

if TYPE_CHECKING:
    from watchdog.app import App


class ReloadRefused(Exception):
    pass


async def apply_reload(app: "App", new: Config) -> list[str]:
    """Returns notes for the log (what needs a restart); raises ReloadRefused."""
    old = app.cfg
    names = {t.name for t in new.targets}
    for name, ex in app.executors.items():
        if name not in names and ex.machine.incident is not None:
            raise ReloadRefused(f"target {name!r} has open incident {ex.machine.incident.id}: resolve it first")
    notes = [f"{key} changed: it takes effect at the next restart"
             for key in ("listen", "state_path", "dry_run") if getattr(old.watchdog, key) != getattr(new.watchdog, key)]

    if app.scheduler is not None and app.scheduler.running:
        app.scheduler.pause()
    try:
        await _swap(app, new)
    finally:
        if app.scheduler is not None and app.scheduler.running:
            app.reschedule()
            app.scheduler.resume()
    return notes


async def _swap(app: "App", new: Config) -> None:
    if app.session is None or app.board is None:
        raise ReloadRefused("the watchdog has not started")
    old_board = app.board
    board = SignalBoard(new, {s.name: SAMPLED[s.type] for s in new.sources})
    for name, health in board.sources.items():
        prev = old_board.sources.get(name)
        if prev is not None and prev.type == health.type:
            board.sources[name] = prev
    for key, slot in board.slots.items():
        prev_slot = old_board.slots.get(key)
        # The same rule under a new source interval has a new bucket period: keep its readings, not its spec.
        if prev_slot is not None and prev_slot.rule == slot.rule:
            if prev_slot.spec == slot.spec:
                board.slots[key] = prev_slot
            else:
                slot.points, slot.history, slot.state = prev_slot.points, prev_slot.history, prev_slot.state
    # The new sources start before the old ones close: one that cannot start refuses the reload.
    deps = SourceDeps(new.aws, app.session, app.metrics, app.alerts)
    started: dict[str, Any] = {}
    for s in new.sources:
        src = build_source(s, board.queries(s.name), deps)
        try:
            await src.start()
        except Exception as exc:
            for done in started.values():
                await done.close()
            raise ReloadRefused(f"source {s.name} cannot start: {type(exc).__name__}: {exc}") from None
        started[s.name] = src
    for old in app.sources.values():
        await old.close()
    app.sources = started
    app.board = board

    app.cfg = new
    app.redactor = redactor_for(new)
    for replaced in app.notifier.set_channels(build_channels(new.notifications, app.session)):
        await replaced.close()
    runners = next(iter(app.executors.values()))._runners if app.executors else None
    executors = {}
    for t in new.targets:
        ex = app.executors.get(t.name)
        if ex is None:
            machine = TargetMachine(t.name, t.max_level, t.escalation.verify_window,
                                    t.escalation.max_rollbacks_per_hour, app.new_incident_id,
                                    paused=app.pause_reader(t.name))
            ex = TargetExecutor(t, machine, runners or app.runners(), app.journal, app.notifier, app.metrics,
                                app.clock, app.spawn, app.dry_run, app.redactor, app.failpoints)
        else:
            ex.target = t
            ex.machine.max_level = t.max_level
            ex.machine.verify_window = t.escalation.verify_window
            ex.machine.max_rollbacks_per_hour = t.escalation.max_rollbacks_per_hour
            ex.set_redactor(app.redactor)
        executors[t.name] = ex
    for gone in set(app.executors) - set(executors):  # its series would report a level and incident forever
        for gauge in (app.metrics.target_level, app.metrics.incidents_open, app.metrics.target_exhausted,
                      app.metrics.target_blind):
            try:
                gauge.remove(gone)
            except KeyError:
                pass
    for t in new.targets:
        if t.name not in app.executors:
            app.metrics.target_level.labels(t.name).set(0)
            app.metrics.incidents_open.labels(t.name).set(0)
    app.executors = executors
    app.rule_series.keep(rule_labels(new))
