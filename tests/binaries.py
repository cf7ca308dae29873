"""Outside programs some tests need (promtool, prometheus, systemd-analyze): in CI a missing one is a
failure, since CI installs them; elsewhere the test skips."""

from __future__ import annotations

import os
import shutil

import pytest


def binary_or_skip(name: str, package: str = "prometheus") -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: .ci/run installs Debian's {package} package")
        pytest.skip(f"{name} not installed (Debian's {package} package; CI installs it)")
    return path
