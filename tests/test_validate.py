"""`rollback-watchdog validate`: the prerequisites table and its exit code, and `--send-test`."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from typing import Any
from pathlib import Path

import pytest

from configs import CLOSED, cloudwatch, http, hybrid_routing, level, line_of, metric_rule, write
from moto_process import moto_process
from receivers import Receivers, receivers  # noqa: F401  (fixture)
from loopback import free_port



def config(state: Path | str, channels: list[dict[str, Any]], aws: str, admin: str) -> dict[str, Any]:
    return hybrid_routing(state_path=state, aws_endpoint=aws, target="web",
                          sources=[cloudwatch("cw", "60s", timeout="2s", retry={"attempts": 1})],
                          rules=[metric_rule("r", source="cw", namespace="N", metric="M", threshold="> 1", level=1)],
                          levels=[level(1, "one", http(f"{admin}/x"), deadline="1m")], notifications=channels)


async def run_validate(path: Path, *args: str, env: dict[str, str] | None = None,
                       unprivileged: bool = False) -> tuple[int, str, str]:
    """`unprivileged`: as root, the command runs as root with no capabilities, so file modes bind it as they
    bind any user (`setpriv` empties its bounding set: after exec it holds none). Not `nobody`: the
    interpreter may live under a directory only its owner can enter (/root/.pyenv here). Not root: as is."""
    wrap = [] if not unprivileged or os.geteuid() != 0 else [
        "setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--"]
    proc = await asyncio.create_subprocess_exec(
        *wrap, sys.executable, "-m", "watchdog", "validate", "-c", str(path), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture
def env(moto_url: str, aws_env: dict[str, str], admin_api: Any) -> dict[str, str]:
    return {"aws": moto_url, "admin": admin_api.url}


async def validate(tmp_path: Path, channels: list[dict[str, Any]], state: str | None = None, *args: str,
                   aws: str = "", admin: str = CLOSED, unprivileged: bool = False) -> tuple[int, str, str]:
    path = write(tmp_path, config(state or tmp_path / "state" / "w.db", channels, aws, admin))
    return await run_validate(Path(path), *args, unprivileged=unprivileged)


def row(out: str, name: str) -> str:
    """The RESULT and DETAIL cells of the row whose CHECK starts with `name`, joined by two spaces."""
    [line] = [ln for ln in out.splitlines() if ln.startswith(name)]
    return "  ".join(re.split(r"\s{2,}", line)[1:])


async def test_all_pass_and_send_test_reaches_every_channel(tmp_path, receivers: Receivers, env) -> None:
    channels = [{"type": "slack", "name": "chat", "webhook_url": f"{receivers.url}/slack/hook"},
                {"type": "pagerduty", "name": "pager", "routing_key": "K3Y",
                 "url": f"{receivers.url}/pagerduty/enqueue"},
                {"type": "webhook", "name": "hook", "url": f"{receivers.url}/hook", "secret": "s3cr3t"}]
    code, out, err = await validate(tmp_path, channels, None, "--send-test", **env)
    assert code == 0, out + err
    assert row(out, "source cw (cloudwatch)") == "pass  answered (r)"
    assert row(out, "action web L1 #1 (http)").startswith("pass  127.0.0.1:")
    assert row(out, "state path") == f"pass  will be created (with the directories under {tmp_path})"
    assert row(out, "notification channels") == "pass  chat (slack), pager (pagerduty), hook (webhook)"
    for name in ("chat (slack)", "pager (pagerduty)", "hook (webhook)"):
        assert row(out, f"send test to {name}").split()[-1] == "delivered"
    assert out.splitlines()[-1] == "7/7 checks passed"
    assert "test" in receivers.ok("/slack/hook")[0].body["text"]
    pd = [h.body["event_action"] for h in receivers.ok("/pagerduty/enqueue")]
    assert pd == ["trigger", "resolve"]  # nobody is left with an open test alert
    assert receivers.ok("/hook")[0].body["event"] == "test"
    assert not (tmp_path / "state").exists()  # validate creates nothing


async def test_failures_are_named_and_exit_1(tmp_path, receivers: Receivers, env) -> None:
    receivers.answer("/slack/hook", 404)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory should be")
    channels = [{"type": "slack", "name": "chat", "webhook_url": f"{receivers.url}/slack/hook"}]
    code, out, err = await validate(tmp_path, channels, str(blocker / "w.db"), "--send-test", aws=env["aws"],
                                    admin=f"http://127.0.0.1:{free_port()}")
    assert code == 1 and err == "" and "Traceback" not in out
    assert row(out, "state path") == f"FAIL  {blocker} is not a directory"
    assert row(out, "send test to chat (slack)") == "FAIL  Slack answered HTTP 404"
    assert row(out, "action web L1 #1 (http)").startswith("FAIL  127.0.0.1:")  # a wrong endpoint
    assert "Connect call failed" in row(out, "action web L1 #1 (http)")
    assert "/slack/hook" not in out  # the webhook URL is a secret
    assert out.splitlines()[-1].endswith("failed")


async def test_no_channel_fails_and_a_bad_config_is_exit_2(tmp_path, env) -> None:
    code, out, _ = await validate(tmp_path, [], **env)
    assert code == 1 and row(out, "notification channels") == "FAIL  none configured: nobody would hear of a rollback"
    code, out, err = await validate(tmp_path, [{"type": "slack"}])
    assert code == 2 and out == ""
    line = line_of((tmp_path / "config.yaml").read_text(), "type: slack")
    assert err.strip() == f"notifications[0]: set exactly one of webhook_url or token (line {line})"


async def test_an_existing_state_file_that_is_read_only_fails(tmp_path, env) -> None:
    """Runs in CI as root too: there validate runs without capabilities (run_validate), which is what
    makes mode 0400 bind. The same file with its write bit is a pass, so the mode is what failed it."""
    state = tmp_path / "w.db"
    state.write_bytes(b"")
    state.chmod(0o600)
    code, out, _ = await validate(tmp_path, [], str(state), **env, unprivileged=True)
    assert row(out, "state path") == "pass  exists and is writable"
    state.chmod(0o400)
    code, out, _ = await validate(tmp_path, [], str(state), **env, unprivileged=True)
    assert code == 1 and row(out, "state path") == "FAIL  exists but is not readable and writable by this user"


async def test_bad_credentials_are_named(tmp_path, aws_env) -> None:
    """A moto server that checks credentials (INITIAL_NO_AUTH_ACTION_COUNT=0) refuses the test keys."""
    async with moto_process(INITIAL_NO_AUTH_ACTION_COUNT="0") as url:
        code, out, _ = await validate(tmp_path, [], None, aws=url)
    assert code == 1
    assert row(out, "source cw (cloudwatch)") == (
        "FAIL  GetMetricData: InvalidClientTokenId: The security token included in the request is invalid.")


async def test_passes_against_the_demo_environment(tmp_path, moto_url, aws_env) -> None:
    """The demo's own config, its simulated service and local CloudWatch: every check passes."""
    from watchdog.demo.service import HybridRoutingService, ServiceState
    from watchdog.demo.story import CONFIG as DEMO

    state = ServiceState()
    service = HybridRoutingService(state, lambda text: None)
    app_url = await service.start()
    try:
        path = tmp_path / "demo.yaml"
        path.write_text(DEMO.format(state=tmp_path / "watchdog.db", aws=moto_url, app=app_url,
                                    record=tmp_path / "polls.jsonl", threshold=1500))
        code, out, err = await run_validate(path, "--send-test")
    finally:
        await service.stop()
    assert code == 0, out + err
    assert row(out, "source cloudwatch (cloudwatch)") == "pass  answered (latency)"
    assert [row(out, f"action hybrid-routing L{n} #1 (http)")[:4] for n in (1, 2, 3)] == ["pass"] * 3
    assert row(out, "send test to demo-webhook (webhook)") == "pass  delivered"
    assert state.notifications == ["test"] and state.calls == []  # reached, never run


async def test_a_source_that_cannot_start_is_its_own_failed_row_and_the_rest_is_checked(tmp_path, env) -> None:
    """validate builds the runtime as `run` does (the one composition), where a source that cannot start stops
    the whole start; here it is that source's row: an AWS profile that does not exist, and every other check
    still made, the state file still untouched."""
    doc = config(tmp_path / "state" / "w.db", [], env["aws"], env["admin"])
    doc["aws"]["profile"] = "no-such-profile"
    path = write(tmp_path, doc)
    code, out, err = await run_validate(Path(path), env={"AWS_CONFIG_FILE": str(tmp_path / "none"),
                                                         "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")})
    assert code == 1 and "Traceback" not in err, out + err
    assert row(out, "source cw (cloudwatch)").startswith("FAIL  ProfileNotFound"), out
    assert row(out, "action web L1 #1 (http)").startswith("pass"), out
    assert row(out, "notification channels").startswith("FAIL  none configured"), out
    assert not (tmp_path / "state").exists()  # probed, never created
