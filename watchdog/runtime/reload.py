"""SIGHUP: apply a new configuration to a running App without losing open incidents.

The caller has already validated the new file (an invalid one never gets here).
Kept: each target's escalation machine (its incident, circuit breaker and any
running level), pauses, rule data of unchanged rules, source health of unchanged
sources. Rebuilt: sources, the scheduler's jobs, notification channels, the
redactor. Refused, with the reason: removing a target that has an open incident, a source
that cannot start, a poll that does not end within its bound. Needing a restart
(logged, the old value stays): `listen`, `state` (or its shorthand `state_path`), `dry_run`.

The new parts are built with the composition's own helpers (watchdog/runtime/wiring.py) and handed to
the runtime's `swap`: nothing here assigns to the runtime. The swap is atomic against polls and
the operators' commands: the new sources start first, then the runtime's gate keeps new polls
out, waits for the polls and commands inside, and swaps in one step; the old sources close after,
when no poll uses them. `reopen_recording` (every SIGHUP, after the config) opens the recording's
file again and hands it to the runtime.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog

from watchdog.config.models import Config
from watchdog.runtime.executor import TargetExecutor
from watchdog.notify import build_channels
from watchdog.notify.base import Channel
from watchdog.runtime.recording import FileRecorder, NoRecorder, RecordingUnwritable, open_recording
from watchdog.shared.redact import Redactor, redactor_for
from watchdog.runtime.runtime import Runtime
from watchdog.core.signals import SignalBoard
from watchdog.sources import SourceDeps
from watchdog.sources.base import Source
from watchdog.sources.cost import project, show as show_cost
from watchdog.runtime.wiring import (SourceStartFailed, board_for, executor_for, executor_parts, hooks_of,
                                      recorder_for, start_sources)

log = structlog.get_logger("watchdog.runtime.reload")


class ReloadRefused(Exception):
    pass


async def apply_reload(rt: Runtime, new: Config) -> list[str]:
    """Returns notes for the log (what needs a restart); raises ReloadRefused. The caller pauses polling
    around it and sets the new poll pace afterwards (app.App.reload)."""
    old = rt.cfg
    _refuse_orphans(rt, new)  # early, so a refused reload starts nothing; again under the gate below
    notes = [f"{key} changed: it takes effect at the next restart"
             for key in ("listen", "state", "dry_run") if getattr(old.watchdog, key) != getattr(new.watchdog, key)]
    board = _carried_over(rt.board, board_for(new))
    # The new sources start before the old ones close, outside the gate (polls and commands go on while
    # they start): one that cannot start refuses the reload.
    try:
        sources = await start_sources(new, board, SourceDeps(new.aws, rt.session, rt.metrics, rt.alerts, hooks_of(rt)),
                                      rt.source_factory)
    except SourceStartFailed as exc:
        raise ReloadRefused(str(exc)) from None

    def swap() -> tuple[dict[str, Source], list[Channel]]:
        # One step of the loop, nothing inside the gate: a command has either opened its incident already
        # (then this refuses) or will see the new targets; every poll read and judged on one config.
        _refuse_orphans(rt, new)
        redactor = redactor_for(new)
        replaced = rt.notifier.set_channels(build_channels(new.notifications, rt.session))
        gone = rt.swap(new, sources=sources, board=_carried_over(rt.board, board), redactor=redactor,
                       executors=_executors(rt, new, redactor))
        rt.pausing.drop_removed()
        rt.state.peers.retarget([t.name for t in new.targets])  # a shared state's leases follow the targets
        return gone, replaced

    within = rt.drain_bound()
    try:
        gone, replaced = await rt.gate.alone(swap, within)
    except TimeoutError:
        await _close(sources.values())
        running = ", ".join(sorted(rt.polls_in_flight())) or "an evaluation"
        raise ReloadRefused(f"a poll still ran {within:g}s after the reload began waiting for it ({running}): "
                            "the old config runs on; send SIGHUP again") from None
    except BaseException:
        await _close(sources.values())
        raise
    # Every poll that started on the old sources has ended (the gate waited for it): none can reach them now.
    await _close(gone.values())
    for channel in replaced:
        await channel.close()
    # Off the loop: 5 000 rules take 0.3 s of CPU to project, which the polls going on meanwhile need not wait for.
    show_cost(rt.metrics, await asyncio.to_thread(project, new))
    return notes


def _refuse_orphans(rt: Runtime, new: Config) -> None:
    names = {t.name for t in new.targets}
    for name, ex in rt.executors.items():
        if name not in names and ex.machine.incident is not None:
            raise ReloadRefused(f"target {name!r} has open incident {ex.machine.incident.id}: resolve it first")


async def _close(sources: Iterable[Source]) -> None:
    for src in sources:
        await src.close()


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
                slot.ring = prev_slot.ring  # its recent values and transitions, for the status page
    return board


def _executors(rt: Runtime, new: Config, redactor: Redactor) -> dict[str, TargetExecutor]:
    executors: dict[str, TargetExecutor] = {}
    for t in new.targets:
        ex = rt.executors.get(t.name)
        if ex is None:
            ex = executor_for(executor_parts(rt), t, redactor)
        else:
            ex.reconfigure(t, redactor)
        executors[t.name] = ex
    for gone in set(rt.executors) - set(executors):  # its series would report a level and incident forever
        for gauge in (rt.metrics.target_level, rt.metrics.incidents_open, rt.metrics.target_exhausted,
                      rt.metrics.target_blind):
            try:
                gauge.remove(gone)
            except KeyError:
                pass
    return executors


async def reopen_recording(rt: Runtime) -> None:
    """On every SIGHUP, whatever became of the config: the recording's file is opened again by its name, so
    a file moved away (logrotate, then its postrotate SIGHUP) is followed by a new one, and a changed
    `watchdog.record` switches files (or starts or stops recording). The open runs off the loop and never
    waits for a FIFO's reader; a file that cannot be opened leaves the current recording as it is."""
    path, current = rt.cfg.watchdog.record, rt.recorder
    if path is None:
        if isinstance(current, FileRecorder):
            rt.use_recorder(NoRecorder())
            log.info("recording_stopped", path=str(current.path), why="watchdog.record is no longer set")
            await asyncio.to_thread(current.close)
        return
    try:
        fd = await asyncio.to_thread(open_recording, path)
    except RecordingUnwritable as exc:
        log.critical("recording_reopen_failed", path=str(path), error=str(exc),
                     next=(f"the recording goes on into {current.path}" if isinstance(current, FileRecorder)
                           else "nothing is recorded") + "; the next SIGHUP tries again")
        return
    previous = current.path if isinstance(current, FileRecorder) else None
    if isinstance(current, FileRecorder):
        current.switch(path, fd)  # its writer thread closes the old file
    else:
        rt.use_recorder(recorder_for(path, rt.metrics, fd))
    log.info("recording_reopened", path=str(path), previous=None if previous is None else str(previous))
