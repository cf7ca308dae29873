"""Operator verbs as a terminal user runs them, against an in-process daemon's HTTP API."""

from __future__ import annotations

import asyncio
import os
import sys

from test_control_api import TOKEN, harness  # noqa: F401  (harness is a fixture)


async def cli(*args: str, token: str | None = TOKEN) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "WATCHDOG_API_TOKEN"}
    if token:
        env["WATCHDOG_API_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "watchdog", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, out.decode(), err.decode()


async def test_pause_status_rollback_resolve_resume(harness, admin_api):  # noqa: F811
    h = await harness()
    url = ("--url", h.base)
    rc, out, err = await cli("pause", "--for", "30m", "--reason", "deploy freeze", "--target", "web", *url)
    assert rc == 0, err
    assert out.startswith("paused web until ") and "(deploy freeze)" in out
    rc, out, _ = await cli("status", *url)
    assert rc == 0
    assert "TARGET  PHASE   LEVEL  PAUSED" in out
    assert "deploy freeze" in out and "latency" in out and "cloudwatch" in out
    rc, out, err = await cli("rollback", "--target", "web", "--level", "2", "--reason", "by hand", *url)
    assert rc == 0, err
    assert out.startswith("level 2 started on web (incident ")
    incident = out.split("(incident ")[1].rstrip(")\n")
    await h.settle()
    assert admin_api.count("/l2") == 1
    rc, out, err = await cli("resolve", incident, "--note", "upstream fixed", *url)
    assert (rc, out.strip()) == (0, f"resolved {incident}; web is back to normal"), err
    rc, out, _ = await cli("resume", "--target", "web", *url)
    assert (rc, out.strip()) == (0, "resumed")


async def test_operator_errors_are_one_line(harness):  # noqa: F811
    h = await harness()
    rc, _, err = await cli("pause", "--for", "30m", "--reason", "x", "--url", h.base, token="wrong")
    assert rc == 1 and err.strip() == "rollback-watchdog pause: HTTP 401: missing or wrong bearer token (set WATCHDOG_API_TOKEN)"
    rc, _, err = await cli("resolve", "nope", "--note", "x", "--url", h.base)
    assert rc == 1 and err.strip() == "rollback-watchdog resolve: HTTP 404: no open incident 'nope'"
    rc, _, err = await cli("status", "--url", "http://127.0.0.1:9")
    assert rc == 1 and "cannot reach the daemon" in err and "Traceback" not in err
    rc, _, err = await cli("pause", "--for", "soon", "--reason", "x", "--url", h.base)
    assert rc == 2 and "bad duration" in err
