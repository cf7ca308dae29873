"""`rollback --offline` and the state lock: two writers never both act."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from tests.daemon import Daemon
from configs import write
from test_reload import config

pytestmark = pytest.mark.slow


async def offline(path: str, level: int = 2) -> subprocess.CompletedProcess[str]:
    # Not subprocess.run: the admin API stub lives in this event loop and must keep answering.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "watchdog", "rollback", "--offline", "-c", path, "--target", "web",
        "--level", str(level), "--reason", "watchdog host broken",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(os.environ))
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return subprocess.CompletedProcess(proc.pid, proc.returncode, out.decode(), err.decode())


async def test_offline_rollback_is_refused_while_the_daemon_runs_and_works_after(tmp_path, admin_api, aws_env):
    path = write(tmp_path, config(tmp_path, admin_api.url))
    d = await Daemon(path).start()
    try:
        await d.port()
        r = await offline(path)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert "refused: the state at" in r.stderr and "in use by the rollback-watchdog daemon (pid" in r.stderr
        assert admin_api.count("/l2") == 0
        # A second daemon on the same state is refused the same way.
        second = await Daemon(path).start()
        assert await second.wait(20) == 1
        assert "in use by the rollback-watchdog daemon" in (await second._stderr()).decode()
        d.signal(signal.SIGTERM)
        assert await d.wait(20) == 0
    finally:
        await d.stop()
    r = await offline(path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("level 2 on web: succeeded") and "not verified offline" in r.stdout
    assert admin_api.count("/l2") == 1 and admin_api.count("/l1") == 0


async def test_offline_rollback_runs_only_the_level_asked_for(tmp_path, admin_api, aws_env):
    admin_api.script["/l1"] = [500]
    path = write(tmp_path, config(tmp_path, admin_api.url))
    r = await offline(path, level=1)
    assert r.returncode == 1 and "level 1 on web: failed" in r.stdout
    assert admin_api.count("/l2") == 0  # no escalation without the daemon
