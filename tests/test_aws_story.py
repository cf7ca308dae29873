"""The real daemon rolling back AWS itself, on moto (issue 23's story): the router's latency breaches; level 1
turns the flag off in Parameter Store, which does not cure it; level 2 sends all the ALB's traffic to the safe
target group, which does not either; level 3 points the Lambda alias at the previous version, which does. After
each level the test reads AWS itself and sees the state that level promised."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from aws_gate import gate
from aws_world import alb, alias, client, function, unique, weights
from configs import http, level, write
from story import ROUTING, Publisher, config
from tests.daemon import Daemon

pytestmark = pytest.mark.slow

QUICK = {"timeout": "5s", "read_back_every": "100ms", "retry": {"attempts": 1}}


async def test_three_aws_levels_each_leave_aws_as_they_promise(tmp_path: Path, moto_url: str, aws_env: dict[str, str],
                                                               admin_api: object) -> None:
    ns = f"AwsStory{time.monotonic_ns()}"
    flag = f"/flags/{unique('hybrid-routing')}"
    client("ssm", moto_url).put_parameter(Name=flag, Value="on", Type="String")
    lb = alb(moto_url)
    fn = function(moto_url, versions=3, alias_on=3)
    levels = [
        level(1, "feature-flags", {"type": "ssm_parameter", "name": flag, "value": "off", **QUICK}, deadline="10s"),
        level(2, "traffic-routing", {"type": "elbv2_weights", "listener_arn": lb.listener,
                                     "weights": {lb.green: 100, lb.blue: 0}, **QUICK}, deadline="10s"),
        level(3, "full-system", {"type": "lambda_alias", "function": fn, "alias": "live", "version": "previous",
                                 **QUICK}, deadline="10s"),
    ]
    pub = Publisher(moto_url, ns)
    healed = asyncio.Event()
    pub.start(heal_when=healed.is_set)  # only the previous version of the function cures the latency
    d = await Daemon(write(tmp_path, config(tmp_path, moto_url, getattr(admin_api, "url"), ns, levels=levels))).start()
    try:
        await d.port()
        await d.wait_for("level_succeeded", timeout=60, level=1)
        assert client("ssm", moto_url).get_parameter(Name=flag)["Parameter"]["Value"] == "off"
        assert weights(moto_url, lb.listener) == {lb.blue: 100, lb.green: 0}  # level 2 has not run yet
        await d.wait_for("level_succeeded", timeout=60, level=2)
        assert weights(moto_url, lb.listener) == {lb.blue: 0, lb.green: 100}
        assert alias(moto_url, fn)["FunctionVersion"] == "3"
        await d.wait_for("level_succeeded", timeout=60, level=3)
        assert alias(moto_url, fn)["FunctionVersion"] == "2"
        healed.set()
        await d.wait_for("mitigated", timeout=60)
        details = [ln.get("detail", "") for ln in d.events("action_succeeded")]
        listener = "/".join(lb.listener.split("/")[-3:])  # app/NAME/ID/LISTENER-ID, as the detail shortens it
        blue, green = lb.blue.split("/")[1], lb.green.split("/")[1]
        assert details == [f"{flag}: 'on' → 'off' (version 1 → 2)",
                           f"{listener}: {blue} 100, {green} 0 → {blue} 0, {green} 100",
                           f"alias live of {fn}: 3 → 2 (the version before 3)"]
        assert [ln["level"] for ln in d.events("level_started")] == [1, 2, 3]
    finally:
        await pub.stop()
        await d.stop()
    # nothing acted twice: one new parameter version, the alias one step back
    assert client("ssm", moto_url).get_parameter(Name=flag)["Parameter"]["Version"] == 2
    assert alias(moto_url, fn)["FunctionVersion"] == "2"


def routing(admin: str) -> dict[str, object]:
    return level(2, "traffic-routing", http(f"{admin}{ROUTING}", json={"mode": "mcp_only"}), deadline="10s")


async def test_a_concurrent_change_fails_the_aws_level_and_the_next_one_runs(
        tmp_path: Path, moto_url: str, aws_env: dict[str, str], admin_api: Any) -> None:
    """Somebody changes the flag between level 1's read and its write: the level fails, it escalates."""
    ns = f"AwsFence{time.monotonic_ns()}"
    flag = f"/flags/{unique('hybrid-routing')}"
    ssm = client("ssm", moto_url)
    ssm.put_parameter(Name=flag, Value="on", Type="String")
    async with gate(moto_url) as g:
        async def somebody() -> None:
            await asyncio.to_thread(ssm.put_parameter, Name=flag, Value="half", Overwrite=True)
        g.after["GetParameter"] = somebody
        levels = [level(1, "feature-flags", {"type": "ssm_parameter", "name": flag, "value": "off", **QUICK},
                        deadline="10s"), routing(admin_api.url)]
        pub = Publisher(moto_url, ns)
        pub.start(heal_when=lambda: admin_api.count(ROUTING) > 0)
        d = await Daemon(write(tmp_path, config(tmp_path, g.url, admin_api.url, ns, levels=levels))).start()
        try:
            await d.port()
            failed = await d.wait_for("level_failed", timeout=60, level=1)
            assert "changed by somebody else between the read (version 1) and the write (which made version 3)" \
                in failed["why"]
            await d.wait_for("mitigated", timeout=60)
            assert [ln["level"] for ln in d.events("level_started")] == [1, 2]
            assert admin_api.count(ROUTING, "PUT") == 1
        finally:
            await pub.stop()
            await d.stop()


async def test_killed_after_the_alias_moved_the_restarted_daemon_leaves_it_where_one_run_did(
        tmp_path: Path, moto_url: str, aws_env: dict[str, str], admin_api: Any) -> None:
    """kill -9 after level 1's UpdateAlias went through and before its outcome was written (the failpoint
    `before_outcome`): the restarted daemon repeats the idempotent action, which finds its marker and leaves the
    alias on 2, not 1."""
    ns = f"AwsCrash{time.monotonic_ns()}"
    fn = function(moto_url, versions=3, alias_on=3)
    levels = [level(1, "previous-version", {"type": "lambda_alias", "function": fn, "version": "previous", **QUICK},
                    deadline="20s"), routing(admin_api.url)]
    path = write(tmp_path, config(tmp_path, moto_url, admin_api.url, ns, levels=levels))
    pub = Publisher(moto_url, ns)
    pub.start(heal_when=lambda: admin_api.count(ROUTING) > 0)
    d = await Daemon(path, env={"WATCHDOG_TEST_FAILPOINTS": "before_outcome"}).start()
    try:
        await d.wait_for("failpoint_reached", timeout=60, failpoint="before_outcome", level=1)
        assert alias(moto_url, fn)["FunctionVersion"] == "2"
        d.signal(signal.SIGKILL)
        await d.wait(10)
        d = await Daemon(path).start()
        await d.wait_for("recovered", timeout=20)
        repeated = await d.wait_for("action_succeeded", timeout=30, level=1)
        assert repeated["detail"] == f"alias live of {fn}: already on 2, no routing (already rolled back from 3)"
        await d.wait_for("mitigated", timeout=60)
    finally:
        await pub.stop()
        await d.stop()
    assert alias(moto_url, fn)["FunctionVersion"] == "2"  # as one run left it
