"""What a command action's process gets of the daemon's environment (issue 12, defect 17): the base
(PATH, HOME, LANG, LC_ALL, TZ) and what the action's `env` names; never the API token, webhook URLs or
AWS keys the daemon holds."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from configs import hybrid_routing, level, write
from tests.daemon import Daemon
from watchdog.actions.command import CommandAction, CommandRunner
from watchdog.config import process_environment

TOKEN = "cmd-env-t0ken-0123"
WEBHOOK = "https://hooks.slack.example/services/T000/B000/XXXXSECRET"
# The child reads /proc/self/environ: exactly what it was started with (Python's own locale coercion
# would otherwise add LC_CTYPE to os.environ).
DUMP = "import json, sys; raw = open('/proc/self/environ', 'rb').read().split(b'\\0'); " \
       "json.dump(dict(e.decode().split('=', 1) for e in raw if e), open(sys.argv[1], 'w'))"


def config(tmp_path: Path) -> dict[str, Any]:
    deploy = {"type": "command", "argv": [sys.executable, tmp_path / "dump.py", tmp_path / "seen.json"],
              "env": {"DEPLOY_TARGET": "blue", "DEPLOY_REGION": "${DEPLOY_REGION}"}}
    return hybrid_routing(state_path=tmp_path / "w.db", api_token="${WATCHDOG_API_TOKEN}", target="web",
                          levels=[level(1, "deploy", deploy, deadline="30s")])


@pytest.mark.slow
async def test_a_command_run_by_the_daemon_gets_only_the_base_and_its_own_env(tmp_path: Path, aws_env) -> None:
    (tmp_path / "dump.py").write_text(DUMP)
    path = write(tmp_path, config(tmp_path))
    daemon_env = {"WATCHDOG_API_TOKEN": TOKEN, "SLACK_WEBHOOK_URL": WEBHOOK, "DEPLOY_REGION": "eu-west-1",
                  "UNRELATED_SETTING": "x", "LANG": "C.UTF-8", "TZ": "Europe/Berlin"}
    d = await Daemon(path, env=daemon_env).start()
    try:
        port = await d.port()
        async with aiohttp.ClientSession() as s:
            async with s.post(f"http://127.0.0.1:{port}/api/v1/targets/web/rollback",
                              json={"level": 1, "reason": "env test"},
                              headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 202, await r.text()
        await d.wait_for("level_succeeded", timeout=20)
    finally:
        await d.stop()
    seen = json.loads((tmp_path / "seen.json").read_text())
    # The daemon had all of these (the AWS keys from aws_env); none reaches the command.
    for secret in ("WATCHDOG_API_TOKEN", "SLACK_WEBHOOK_URL", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID",
                   "UNRELATED_SETTING"):
        assert secret not in seen
    assert TOKEN not in json.dumps(seen) and WEBHOOK not in json.dumps(seen)
    assert seen["PATH"] == os.environ["PATH"]
    assert (seen["LANG"], seen["TZ"]) == ("C.UTF-8", "Europe/Berlin")
    assert (seen["DEPLOY_TARGET"], seen["DEPLOY_REGION"]) == ("blue", "eu-west-1")  # named in the action's env
    assert set(seen) <= {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "DEPLOY_TARGET", "DEPLOY_REGION"}


def test_the_base_environment_is_path_home_locale_and_tz_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"PATH": "/usr/bin:/bin", "HOME": "/var/lib/rollback-watchdog", "LANG": "C.UTF-8",
                        "WATCHDOG_API_TOKEN": TOKEN, "SLACK_WEBHOOK_URL": WEBHOOK, "LD_PRELOAD": "/tmp/x.so"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("TZ", raising=False)
    assert process_environment() == {"PATH": "/usr/bin:/bin", "HOME": "/var/lib/rollback-watchdog", "LANG": "C.UTF-8"}


async def test_the_actions_env_wins_over_the_base(tmp_path: Path) -> None:
    action = CommandAction.model_validate({"type": "command", "argv": [sys.executable, "-c", DUMP, str(tmp_path / "e.json")],
                                           "env": {"PATH": "/opt/deploy/bin:/usr/bin:/bin", "EXTRA": "1"}})
    assert await CommandRunner({"PATH": "/usr/bin", "HOME": "/root"}).run(action) == "exit 0"
    seen = json.loads((tmp_path / "e.json").read_text())
    assert seen == {"PATH": "/opt/deploy/bin:/usr/bin:/bin", "HOME": "/root", "EXTRA": "1"}
