"""Action runners (HTTP against conftest's admin_api, real subprocesses) and the Notifier."""

from __future__ import annotations

import os
import asyncio
import json
import socket
import sys
import time
from datetime import datetime, timezone

import pytest

from executor_support import http_session, process_gone  # noqa: F401  (http_session is a fixture)
from watchdog.actions import ActionFailed
from watchdog.actions.command import CommandRunner
from watchdog.actions.http import HttpRunner
from watchdog.config.models import CommandAction, HttpAction, HttpCheck
from watchdog.escalation import Event
from watchdog.metrics import Metrics
from watchdog.notify import Notifier

PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    admin_api.delay["/slow"] = 0.6
    started = time.monotonic()
    with pytest.raises(ActionFailed) as err:
        await HttpRunner(http_session).run(http(f"{admin_api.url}/slow", timeout="150ms"))
    assert time.monotonic() - started < 0.5
    assert err.value.retryable and err.value.detail == "no answer within 0.15s"


async def test_http_connection_refused_is_retryable_and_hides_path_and_query(http_session) -> None:
    port = free_port()
    with pytest.raises(ActionFailed) as err:
        await HttpRunner(http_session).run(http(f"http://127.0.0.1:{port}/admin/s3cr3t?token=s3cr3t"))
    assert err.value.retryable
    assert err.value.detail == f"ClientConnectorError: cannot connect to 127.0.0.1:{port}"
    assert "s3cr3t" not in str(err.value)


async def test_http_check_expects_its_status(admin_api, http_session) -> None:
    runner = HttpRunner(http_session)
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


# --- notifications ---------------------------------------------------------------------------
# The classes below are test doubles for the Channel protocol (watchdog.notify.base.Channel).


class Recording:
    def __init__(self, name: str = "good", min_severity: str = "info"):
        self.name, self.min_severity, self.timeout = name, min_severity, 1.0
        self.got: list[tuple[str, bool]] = []

    async def send(self, event: Event, dry_run: bool) -> None:
        self.got.append((event.kind, dry_run))

    async def close(self) -> None:
        pass


class Raising(Recording):
    async def send(self, event: Event, dry_run: bool) -> None:
        raise ConnectionError("webhook down")


class Hanging(Recording):
    async def send(self, event: Event, dry_run: bool) -> None:
        await asyncio.sleep(60)


def event(kind: str, severity: str = "warning") -> Event:
    return Event(kind, severity, "svc", "inc-1", 1, datetime(2024, 1, 1, tzinfo=timezone.utc), "why", "next")  # type: ignore[arg-type]


async def wait_for(cond, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


async def test_failing_and_hanging_channels_never_delay_publish_nor_other_channels() -> None:
    metrics = Metrics()
    good, raising, hanging = Recording(), Raising("raising"), Hanging("hanging")
    hanging.timeout = 0.1
    notifier = Notifier([raising, hanging, good], metrics)
    worker = asyncio.create_task(notifier.run())
    try:
        notifier.publish(event("incident_opened"))
        await asyncio.sleep(0.02)  # the worker is now stuck in the hanging channel
        started = time.monotonic()
        for kind in ("level_started", "level_failed", "exhausted"):
            notifier.publish(event(kind), dry_run=kind == "exhausted")
        assert time.monotonic() - started < 0.01  # publish only queues
        await wait_for(lambda: len(good.got) == 4)
        await notifier.drain(2.0)
    finally:
        worker.cancel()
    assert good.got == [("incident_opened", False), ("level_started", False), ("level_failed", False),
                        ("exhausted", True)]

    def sample(channel: str, outcome: str) -> float | None:
        return metrics.registry.get_sample_value("watchdog_notifications_total", {"channel": channel, "outcome": outcome})

    assert (sample("raising", "failed"), sample("hanging", "failed"), sample("good", "sent")) == (4.0, 4.0, 4.0)
    assert (sample("raising", "sent"), sample("hanging", "sent"), sample("good", "failed")) == (None, None, None)


async def test_publish_without_a_running_worker_returns_and_listeners_see_events() -> None:
    seen: list[str] = []
    notifier = Notifier([Hanging("hanging")], Metrics())
    notifier.listen(lambda ev, dry: seen.append(ev.kind))
    started = time.monotonic()
    for i in range(50):
        notifier.publish(event(f"e{i}"))
    assert time.monotonic() - started < 0.05
    assert seen == [f"e{i}" for i in range(50)]


async def test_channel_below_its_min_severity_is_skipped() -> None:
    metrics = Metrics()
    critical_only = Recording("pager", min_severity="critical")
    notifier = Notifier([critical_only], metrics)
    worker = asyncio.create_task(notifier.run())
    try:
        notifier.publish(event("level_started", "warning"))
        notifier.publish(event("exhausted", "critical"))
        await notifier.drain(2.0)
    finally:
        worker.cancel()
    assert critical_only.got == [("exhausted", False)]
    assert metrics.registry.get_sample_value("watchdog_notifications_total", {"channel": "pager", "outcome": "sent"}) == 1.0


async def test_a_hanging_channel_does_not_hold_up_the_same_event_on_other_channels() -> None:
    good, hanging = Recording(), Hanging("hanging")
    hanging.timeout = 1.0
    notifier = Notifier([hanging, good], Metrics())
    worker = asyncio.create_task(notifier.run())
    try:
        notifier.publish(event("incident_opened"))
        await wait_for(lambda: good.got == [("incident_opened", False)], timeout=0.5)
    finally:
        worker.cancel()


async def test_a_raising_listener_stops_neither_publish_nor_the_channels() -> None:
    good = Recording()
    notifier = Notifier([good], Metrics())
    seen: list[str] = []

    def broken(ev: Event, dry: bool) -> None:
        raise KeyError("timeline bug")

    notifier.listen(broken)
    notifier.listen(lambda ev, dry: seen.append(ev.kind))
    notifier.publish(event("level_started"))  # must not raise into the executor
    worker = asyncio.create_task(notifier.run())
    try:
        await notifier.drain(2.0)
    finally:
        worker.cancel()
    assert seen == ["level_started"] and good.got == [("level_started", False)]


async def test_command_inherits_the_daemon_environment_under_its_own_env(tmp_path) -> None:
    script = "import os; open('seen', 'w').write(os.environ['INHERITED'] + ',' + os.environ['DEPLOY_TOKEN'])"
    runner = CommandRunner({"INHERITED": "yes", "DEPLOY_TOKEN": "old"})
    await runner.run(command(PY, "-c", script, env={"DEPLOY_TOKEN": "new"}, cwd=str(tmp_path)))
    assert (tmp_path / "seen").read_text() == "yes,new"
