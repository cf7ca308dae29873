"""SIGHUP: apply a new configuration to a running App without losing open incidents.

The caller has already validated the new file (an invalid one never gets here).
Kept: each target's escalation machine (its incident, circuit breaker and any
running level), pauses, rule data of unchanged rules, source health of unchanged
sources. Rebuilt: sources, the scheduler's jobs, notification channels, the
redactor. Refused, with the reason: removing a target that has an open incident.
Needing a restart (logged, the old value stays): `listen`, `state_path`, `dry_run`.
"""

from __future__ import annotations

from watchdog.config.models import Config
from watchdog.executor import TargetExecutor
from watchdog.metrics import rule_labels
from watchdog.notify import build_channels
from watchdog.redact import redactor_for
from watchdog.runtime import Runtime
from watchdog.signals import SignalBoard
from watchdog.sources import SourceDeps
from watchdog.wiring import SourceStartFailed, board_for, executor_for, start_sources


class ReloadRefused(Exception):
    pass


async def apply_reload(rt: Runtime, new: Config) -> list[str]:
    """Returns notes for the log (what needs a restart); raises ReloadRefused. The caller pauses polling
    around it and sets the new poll pace afterwards (app.App.reload)."""
    old = rt.cfg
    names = {t.name for t in new.targets}
    for name, ex in rt.executors.items():
        if name not in names and ex.machine.incident is not None:
            raise ReloadRefused(f"target {name!r} has open incident {ex.machine.incident.id}: resolve it first")
    notes = [f"{key} changed: it takes effect at the next restart"
             for key in ("listen", "state_path", "dry_run") if getattr(old.watchdog, key) != getattr(new.watchdog, key)]
    board = _carried_over(rt.board, board_for(new))
    # The new sources start before the old ones close: one that cannot start refuses the reload.
    try:
        sources = await start_sources(new, board, SourceDeps(new.aws, rt.session, rt.metrics, rt.alerts),
                                      rt.source_factory)
    except SourceStartFailed as exc:
        raise ReloadRefused(str(exc)) from None
    for gone in rt.sources.values():
        await gone.close()
    rt.sources, rt.board, rt.cfg, rt.redactor = sources, board, new, redactor_for(new)
    for replaced in rt.notifier.set_channels(build_channels(new.notifications, rt.session)):
        await replaced.close()
    rt.executors = _executors(rt, new)
    rt.pausing.drop_removed()
    rt.rule_series.keep(rule_labels(new))
    return notes


def _carried_over(old: SignalBoard, board: SignalBoard) -> SignalBoard:
    """Source health of unchanged sources and the readings of unchanged rules go on in the new board."""
    for name, health in board.sources.items():
        prev = old.sources.get(name)
        if prev is not None and prev.type == health.type:
            board.sources[name] = prev
    for key, slot in board.slots.items():
        prev_slot = old.slots.get(key)
        # The same rule under a new source interval has a new bucket period: keep its readings, not its spec.
        if prev_slot is not None and prev_slot.rule == slot.rule:
            if prev_slot.spec == slot.spec:
                board.slots[key] = prev_slot
            else:
                slot.points, slot.history, slot.state = prev_slot.points, prev_slot.history, prev_slot.state
    return board


def _executors(rt: Runtime, new: Config) -> dict[str, TargetExecutor]:
    executors: dict[str, TargetExecutor] = {}
    for t in new.targets:
        ex = rt.executors.get(t.name)
        if ex is None:
            ex = executor_for(rt, t)
        else:
            ex.reconfigure(t, rt.redactor)
        executors[t.name] = ex
    for gone in set(rt.executors) - set(executors):  # its series would report a level and incident forever
        for gauge in (rt.metrics.target_level, rt.metrics.incidents_open, rt.metrics.target_exhausted,
                      rt.metrics.target_blind):
            try:
                gauge.remove(gone)
            except KeyError:
                pass
    return executors



