"""`rollback-watchdog validate`: the prerequisites table and its exit code, and `--send-test`."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from receivers import Receivers, receivers  # noqa: F401  (fixture)

CONFIG = """
watchdog: {{state_path: "{state}"}}
sources: [{{name: cw, type: cloudwatch}}]
targets:
  - name: web
    rules: [{{name: r, category: performance, source: cw, metric: {{namespace: N, name: M}}, threshold: "> 1", level: 1}}]
    levels: [{{level: 1, name: one, deadline: 1m, actions: [{{type: http, method: PUT, url: "http://127.0.0.1:9/x"}}]}}]
notifications:
{channels}
"""


async def validate(tmp_path: Path, channels: str, state: str | None = None, *args: str) -> tuple[int, str, str]:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(state=state or tmp_path / "state" / "w.db", channels=channels))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "watchdog", "validate", "-c", str(path), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(os.environ))
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


def row(out: str, name: str) -> str:
    """The RESULT and DETAIL cells of the row whose CHECK starts with `name`, joined by two spaces."""
    [line] = [ln for ln in out.splitlines() if ln.startswith(name)]
    return "  ".join(re.split(r"\s{2,}", line)[1:])


async def test_all_pass_and_send_test_reaches_every_channel(tmp_path, receivers: Receivers) -> None:
    channels = (f'  - {{type: slack, name: chat, webhook_url: "{receivers.url}/slack/hook"}}\n'
                f'  - {{type: pagerduty, name: pager, routing_key: K3Y, url: "{receivers.url}/pagerduty/enqueue"}}\n'
                f'  - {{type: webhook, name: hook, url: "{receivers.url}/hook", secret: s3cr3t}}\n')
    code, out, err = await validate(tmp_path, channels, None, "--send-test")
    assert code == 0, out + err
    assert row(out, "state path") == f"pass  will be created (with the directories under {tmp_path})"
    assert row(out, "notification channels") == "pass  chat (slack), pager (pagerduty), hook (webhook)"
    for name in ("chat (slack)", "pager (pagerduty)", "hook (webhook)"):
        assert row(out, f"send test to {name}").split()[-1] == "delivered"
    assert out.splitlines()[-1] == "5/5 checks passed"
    assert "test" in receivers.ok("/slack/hook")[0].body["text"]
    pd = [h.body["event_action"] for h in receivers.ok("/pagerduty/enqueue")]
    assert pd == ["trigger", "resolve"]  # nobody is left with an open test alert
    assert receivers.ok("/hook")[0].body["event"] == "test"
    assert not (tmp_path / "state").exists()  # validate creates nothing


async def test_failures_are_named_and_exit_1(tmp_path, receivers: Receivers) -> None:
    receivers.answer("/slack/hook", 404)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory should be")
    channels = f'  - {{type: slack, name: chat, webhook_url: "{receivers.url}/slack/hook"}}\n'
    code, out, err = await validate(tmp_path, channels, str(blocker / "w.db"), "--send-test")
    assert code == 1 and err == "" and "Traceback" not in out
    assert row(out, "state path") == f"FAIL  {blocker} is not a directory"
    assert row(out, "send test to chat (slack)") == "FAIL  Slack answered HTTP 404"
    assert "/slack/hook" not in out  # the webhook URL is a secret
    assert out.splitlines()[-1].endswith("failed")


async def test_no_channel_fails_and_a_bad_config_is_exit_2(tmp_path) -> None:
    code, out, _ = await validate(tmp_path, "  []")
    assert code == 1 and row(out, "notification channels") == "FAIL  none configured: nobody would hear of a rollback"
    code, out, err = await validate(tmp_path, "  - {type: slack}")
    assert code == 2 and out == ""
    assert err.strip() == f"notifications[0]: set exactly one of webhook_url or token (line 9)"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to a read-only directory")
async def test_an_existing_state_file_that_is_read_only_fails(tmp_path) -> None:
    state = tmp_path / "w.db"
    state.write_bytes(b"")
    state.chmod(0o400)
    code, out, _ = await validate(tmp_path, "  []", str(state))
    assert row(out, "state path") == "FAIL  exists but is not readable and writable by this user"
