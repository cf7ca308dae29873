"""Action runners (HTTP against conftest's admin_api, real subprocesses) and the Notifier."""

from __future__ import annotations

import os
import asyncio
import json
import sys
import time

import pytest

from executor_support import http_session, process_gone  # noqa: F401  (http_session is a fixture)
from watchdog.actions import ActionFailed
from watchdog.actions.command import CommandAction, CommandRunner
from watchdog.actions.http import HttpAction, HttpRunner
from watchdog.actions.http_check import HttpCheck, HttpCheckRunner
from loopback import free_port

PY = sys.executable


def http(url: str, **kw) -> HttpAction:
    return HttpAction.model_validate({"type": "http", "url": url, **kw})


def command(*argv: str, **kw) -> CommandAction:
    return CommandAction.model_validate({"type": "command", "argv": list(argv), **kw})


# --- HTTP -------------------------------------------------------------------------------------


async def test_http_action_sends_method_and_json_and_succeeds_on_2xx(admin_api, http_session) -> None:
    action = http(f"{admin_api.url}/admin/flags", method="PUT", json={"enabled": False},
                  headers={"Authorization": "Bearer t0k3n"})
    assert await HttpRunner(http_session).run(action) == "HTTP 200"
    assert admin_api.calls == [("PUT", "/admin/flags", {"enabled": False})]


@pytest.mark.parametrize(
    "status, retryable",
    [(500, True), (502, True), (503, True), (504, True), (408, True), (429, True),
     (400, False), (401, False), (403, False), (404, False), (409, False), (422, False)],
)
async def test_http_failure_says_whether_a_retry_can_help(admin_api, http_session, status, retryable) -> None:
    admin_api.script["/a"] = [status]
    with pytest.raises(ActionFailed) as err:
        await HttpRunner(http_session).run(http(f"{admin_api.url}/a"))
    assert (err.value.detail, err.value.retryable) == (f"HTTP {status}", retryable)
    assert admin_api.count("/a") == 1  # the runner makes one attempt; retrying is the executor's


async def test_http_expect_status_overrides_any_2xx(admin_api, http_session) -> None:
    runner = HttpRunner(http_session)
    admin_api.script["/a"] = [200]
    with pytest.raises(ActionFailed, match="HTTP 200"):
        await runner.run(http(f"{admin_api.url}/a", expect_status=202))
    admin_api.script["/a"] = [202]
    assert await runner.run(http(f"{admin_api.url}/a", expect_status=[200, 202])) == "HTTP 202"


async def test_http_timeout_is_a_retryable_failure(admin_api, http_session) -> None:
    admin_api.delay["/slow"] = 3.0
    started = time.monotonic()
    with pytest.raises(ActionFailed) as err:
        await HttpRunner(http_session).run(http(f"{admin_api.url}/slow", timeout="150ms"))
    # Cut at the timeout (0.15 s), not at the answer (3 s): the slack is for a loaded machine.
    assert time.monotonic() - started < 2.5
    assert err.value.retryable and err.value.detail == "no answer within 0.15s"


async def test_http_connection_refused_is_retryable_and_hides_path_and_query(http_session) -> None:
    port = free_port()
    with pytest.raises(ActionFailed) as err:
        await HttpRunner(http_session).run(http(f"http://127.0.0.1:{port}/admin/s3cr3t?token=s3cr3t"))
    assert err.value.retryable
    assert err.value.detail == f"ClientConnectorError: cannot connect to 127.0.0.1:{port}"
    assert "s3cr3t" not in str(err.value)


async def test_http_check_expects_its_status(admin_api, http_session) -> None:
    runner = HttpCheckRunner(http_session)
    check = HttpCheck.model_validate({"type": "http", "url": f"{admin_api.url}/health"})
    assert await runner.run(check) == "HTTP 200"
    admin_api.script["/health"] = [503]
    with pytest.raises(ActionFailed, match="HTTP 503"):
        await runner.run(check)
    assert admin_api.count("/health", "GET") == 2


# --- commands -------------------------------------------------------------------------------


async def test_command_exit_0_succeeds() -> None:
    assert await CommandRunner(os.environ).run(command(PY, "-c", "print('rolled back')")) == "exit 0"


async def test_command_nonzero_exit_fails_with_the_output_tail() -> None:
    script = "import sys\nfor i in range(200): print(f'line {i:03d}')\nprint('boom', file=sys.stderr)\nsys.exit(3)"
    with pytest.raises(ActionFailed) as err:
        await CommandRunner(os.environ).run(command(PY, "-c", script))
    detail = err.value.detail
    assert detail.startswith("exit 3: ") and detail.endswith("line 199\nboom")  # stderr is included
    assert "line 000" not in detail and len(detail) <= len("exit 3: ") + 300


async def test_command_timeout_kills_the_whole_process_group(tmp_path) -> None:
    pids = tmp_path / "pids"
    # The command starts a grandchild, then both sleep far past the timeout.
    script = (
        "import os, subprocess, sys, time\n"
        f"child = subprocess.Popen([{PY!r}, '-c', 'import time; time.sleep(30)'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "time.sleep(30)"
    )
    started = time.monotonic()
    with pytest.raises(ActionFailed) as err:
        await CommandRunner(os.environ).run(command(PY, "-c", script, timeout="700ms"))
    assert time.monotonic() - started < 3.0
    assert err.value.detail == "timed out after 0.7s; killed" and err.value.unknown is True
    parent, child = map(int, pids.read_text().split())
    assert process_gone(parent) and process_gone(child)


async def test_cancelling_a_running_command_kills_it(tmp_path) -> None:
    pidfile = tmp_path / "pid"
    script = f"import os,time; open({str(pidfile)!r},'w').write(str(os.getpid())); time.sleep(30)"
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.7):  # what a level deadline does to the attempt in flight
            await CommandRunner(os.environ).run(command(PY, "-c", script, timeout="10s"))
    assert time.monotonic() - started < 3.0
    assert process_gone(int(pidfile.read_text()))


@pytest.mark.parametrize("argv0", ["/nonexistent/deploy-rollback", "deploy-rollback-not-on-path-xyz"])
async def test_missing_executable_fails_cleanly_without_retry(argv0) -> None:
    with pytest.raises(ActionFailed) as err:
        await CommandRunner(os.environ).run(command(argv0, "--to", "previous"))
    assert err.value.detail == f"cannot start {argv0}: No such file or directory"
    assert err.value.retryable is False


async def test_argv_is_passed_literally_without_a_shell(tmp_path, monkeypatch) -> None:
    out, pwned = tmp_path / "argv.json", tmp_path / "pwned"
    monkeypatch.setenv("HOME", "/home/should-not-expand")
    literal = ["a; touch " + str(pwned), "$HOME", "`id`", "*", "x | y", "'q'"]
    script = "import json, sys; json.dump(sys.argv[2:], open(sys.argv[1], 'w'))"
    assert await CommandRunner(os.environ).run(command(PY, "-c", script, str(out), *literal)) == "exit 0"
    assert json.loads(out.read_text()) == literal
    assert not pwned.exists()


async def test_command_gets_its_env_and_cwd(tmp_path) -> None:
    script = "import os; open('seen', 'w').write(os.environ['DEPLOY_TOKEN'])"
    await CommandRunner(os.environ).run(command(PY, "-c", script, env={"DEPLOY_TOKEN": "tok"}, cwd=str(tmp_path)))
    assert (tmp_path / "seen").read_text() == "tok"


async def test_command_inherits_the_daemon_environment_under_its_own_env(tmp_path) -> None:
    script = "import os; open('seen', 'w').write(os.environ['INHERITED'] + ',' + os.environ['DEPLOY_TOKEN'])"
    runner = CommandRunner({"INHERITED": "yes", "DEPLOY_TOKEN": "old"})
    await runner.run(command(PY, "-c", script, env={"DEPLOY_TOKEN": "new"}, cwd=str(tmp_path)))
    assert (tmp_path / "seen").read_text() == "yes,new"
