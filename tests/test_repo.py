"""The repository itself: what is tracked is what the project needs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LEFTOVER = re.compile(r"(^|/)[^/]*\.(out|err|log|tmp|orig|rej)$|(^|/)(nohup\.out|core)$")


def test_no_debug_leftovers_are_tracked() -> None:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    leftovers = [f for f in out.stdout.splitlines() if LEFTOVER.search(f)]
    assert leftovers == []


# --- the structure (issue 13): small modules, a thin lifecycle, nothing left unbuilt -------------------

PACKAGE = ROOT / "watchdog"


def test_modules_stay_small_and_the_lifecycle_smaller() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert sizes, "no module found: the scan is broken"
    assert {p: n for p, n in sizes.items() if n > 400} == {}
    assert sizes["watchdog/lifecycle/app.py"] < 250


async def test_nothing_of_the_runtime_or_its_lifecycle_is_left_unbuilt(tmp_path) -> None:
    """One composition function builds everything: after App.create no attribute of App or of the runtime
    waits to be filled in by start() (the old hub had nine `X | None` attributes and guards for them)."""
    from configs import hybrid_routing, parsed

    from watchdog.lifecycle.app import App

    app = await App.create(parsed(hybrid_routing(state_path=tmp_path / "w.db")), serve_http=False, schedule=False)
    try:
        assert [k for k, v in vars(app).items() if v is None] == []
        assert [k for k, v in vars(app.runtime).items() if v is None] == []
        assert app.runtime.executors and app.runtime.sources and app.runtime.board.slots
    finally:
        await app.stop()
