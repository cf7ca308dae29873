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
