"""After a crash (kill -9 at any instant): resume each open incident from the state file.

A level interrupted mid-action re-runs an action only when it is safe: it never
started, it had definitely failed, or it is declared `idempotent: true`. An action
whose outcome is unknown and which is not idempotent is never repeated: it is
recorded `unknown`, a human is paged, and the level is verified on fresh data
(which escalates if the system is still broken). Verify-window timers resume from
their recorded start; mitigated and exhausted incidents stay as they were.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

import structlog
from pydantic import ValidationError

from watchdog.state.codec import decode_incident
from watchdog.config.models import Action
from watchdog.core.escalation import Incident, Phase, RunLevel
from watchdog.runtime.executor import TargetExecutor
from watchdog.state.storage import Record, Store

log = structlog.get_logger("watchdog.runtime.recovery")


def action_states(records: Sequence[Record], level_started: datetime) -> dict[int, tuple[str, str, int]]:
    """Per action index: (state, name, attempts) of the current level run. state: done | failed | unknown."""
    out: dict[int, tuple[str, str, int]] = {}
    for rec in records:
        if rec.at < level_started or rec.kind not in ("intent", "outcome"):
            continue
        name = str(rec.data.get("action", ""))
        if not name.startswith("#"):
            continue
        index = int(name[1:].split(" ", 1)[0]) - 1
        attempt = int(rec.data.get("attempt", 0))
        if rec.kind == "intent":
            out[index] = ("unknown", name, attempt)
        else:
            outcome = rec.data.get("outcome")
            out[index] = ("done" if outcome in ("succeeded", "dry_run") else
                          "unknown" if outcome == "unknown" else "failed", name, attempt)
    return out


async def recover(store: Store, executors: Mapping[str, TargetExecutor], now: datetime,
                  only: Collection[str] | None = None) -> None:
    """`only`: the targets to resume (those whose lease this watchdog holds, or the one it just took over);
    every one when None."""
    for row in store.open_incidents():
        if only is not None and row["target"] not in only:
            continue
        ex = executors.get(row["target"])
        if ex is None:
            log.error("recovery_target_gone", incident=row["id"], target=row["target"])
            continue
        try:
            inc = decode_incident(row["snapshot"])
        except ValidationError as exc:
            # Never silent: left alone, the target would look normal and could act again on the same alarm.
            why = f"incident {row['id']} cannot be read back from the state file: {exc.error_count()} problems"
            log.critical("recovery_unreadable", target=row["target"], incident=row["id"], why=why)
            ex.restore_failed(row["id"], why)
            continue
        ex.restore(inc)
        if inc.phase is Phase.RUNNING:
            await _resume_level(ex, inc, store, now)
        ex.sync_state()


def plan_resume(actions: Sequence[Action], states: dict[int, tuple[str, str, int]]) -> tuple[str, int]:
    """Pure: what to do with a level a crash interrupted. Returns (verdict, action index).

    `done`: every action had succeeded. `unknown`: action i may have taken effect
    and is not idempotent: never repeat it, verify instead. `resume`: run from
    action i (it never started, it had definitely failed, or it is idempotent).
    An intent without an outcome looks the same whether the request never left or
    its answer was never written, so both are `unknown`.
    """
    for index, action in enumerate(actions):
        state = states.get(index, ("never", "", 0))[0]
        if state == "done":
            continue
        if state == "unknown" and not action.idempotent:
            return "unknown", index
        return "resume", index
    return "done", len(actions)


async def _resume_level(ex: TargetExecutor, inc: Incident, store: Store, now: datetime) -> None:
    level = ex.target.level(inc.level)
    if level is None:
        await ex.finish_level(inc.id, inc.level, False, "level no longer configured after the restart")
        return
    started = inc.runs[-1].started if inc.runs else inc.opened_at
    states = action_states(store.records(inc.id), started)
    verdict, index = plan_resume(list(level.actions), states)
    if verdict == "done":
        await ex.finish_level(inc.id, inc.level, True, "all actions had succeeded before the restart")
    elif verdict == "resume":
        ex.start_level(RunLevel(inc.id, inc.level, "resumed after a restart"), start=index)
    else:
        _, name, attempt = states[index]
        detail = "the watchdog stopped during this action; not repeated (not idempotent)"
        store.outcome(now, inc.target, inc.id, inc.level, name, attempt, "unknown", detail, ex.dry_run)
        ex.outcome_unknown(name)
        await ex.finish_level(inc.id, inc.level, True, f"{name}: outcome unknown after a restart; verifying")
