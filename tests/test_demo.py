"""`rollback-watchdog demo` tells the story of SPEC 3.6 and exits 0 (about a minute)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


def test_demo_tells_the_story_and_ends_mitigated_at_level_2():
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "watchdog", "demo"], capture_output=True, text=True, timeout=180,
                       env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")})
    took = time.monotonic() - t0
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert "Traceback" not in r.stderr
    order = [
        r"FAULT: Bedrock path degraded",
        r"watchdog: incident opened",
        r"watchdog: level started \(level 1\)",
        r"service: hybrid-routing feature flags OFF",
        r"watchdog: verification failed \(level 1\)",
        r"watchdog: level started \(level 2\)",
        r"service: routing mode -> mcp_only",
        r"watchdog: mitigated \(level 2\)",
        r"# Incident hybrid-routing-",
    ]
    pos = 0
    for pattern in order:
        m = re.compile(pattern).search(out, pos)
        assert m, f"{pattern!r} missing or out of order in:\n{out}"
        pos = m.end()
    assert "redeployed" not in out and "level started (level 3)" not in out
    assert "| 1 |" in out and "| 2 |" in out, "the report lists both levels"
    fault_at = float(re.search(r"\[\s*([\d.]+)s\] FAULT", out).group(1))
    assert 15 <= fault_at <= 25
    assert took < 120, f"the demo took {took:.0f}s"
