"""Action and check kinds: one module each, with one descriptor (`KIND`, watchdog/actions/kind.py), registered
by `type` in watchdog.shared.kinds.ACTIONS and CHECKS. This package names none of them."""

from __future__ import annotations

from watchdog.actions.base import ActionFailed, Runner, Step
from watchdog.actions.kind import (
    ActionKind,
    CheckKind,
    Probing,
    RunnerDeps,
    Runners,
    action_kind,
    build_runners,
    check_kind,
)

__all__ = ["ActionFailed", "ActionKind", "CheckKind", "Probing", "Runner", "RunnerDeps", "Runners", "Step", "action_kind",
           "build_runners", "check_kind"]
