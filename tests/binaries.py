"""The command under test, run as a user runs it, and outside programs some tests need (promtool,
prometheus, systemd-analyze, chromium): in CI a missing one is a failure, since CI installs them;
elsewhere the test skips."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest


def binary_or_skip(name: str, package: str = "prometheus") -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: .ci/run installs Debian's {package} package")
        pytest.skip(f"{name} not installed (Debian's {package} package; CI installs it)")
    return path


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`rollback-watchdog ARGS` in a child process, the environment added to this one's."""
    return subprocess.run([sys.executable, "-m", "watchdog", *args], check=False, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
