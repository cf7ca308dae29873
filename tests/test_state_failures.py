"""A state file that cannot be written: the decision is kept, the level waits for its intent, and nothing
is silent (issue 12, defect 1).

Before: a write transaction held by another process, or a full disk, while a rule alarmed opened the
incident in memory, failed its first write and never started the level; the target stayed `running`
forever, /healthz said 200, nobody was paged, and every write blocked the event loop for the busy
timeout (10 s). A full disk was reported as "cannot rollback - no transaction is active".
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from configs import cloudwatch, http, hybrid_routing, level, make_target, metric_rule, parsed
from story import Publisher, render
from tests.daemon import Daemon, assert_audit_log_intact, status
from timing import until
from watchdog.config import Config

FLAGS = "/admin/feature-flags/hybrid-routing"
HOOK = "/hook"


def webhook(admin: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "webhook", "name": "hook", "url": f"{admin.url}{HOOK}", **extra}


def paged(admin: Any) -> list[dict[str, Any]]:
    """The daemon's channel: a webhook that keeps trying for as long as the tests wait."""
    return [webhook(admin, timeout="2s", retry={"attempts": 50, "initial_backoff": "100ms", "max_backoff": "300ms"})]


def pages(admin: Any, kind: str) -> list[Any]:
    return [body for method, p, body in admin.calls if p == HOOK and isinstance(body, dict) and body.get("event") == kind]


async def health(base: str) -> tuple[int, dict[str, Any]]:
    # A short client timeout: the old daemon froze its event loop for the busy timeout on every write.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
        async with http.get(f"{base}/healthz") as r:
            return r.status, await r.json()


async def level_1_running(port: int) -> bool:
    [target] = (await status(port))["targets"]
    return (target["phase"], target["level"]) == ("running", 1)


async def story_while_unwritable(d: Daemon, admin: Any, pub: Publisher, error: str, release) -> None:
    """The alarm comes while the state file cannot be written; then it can be again."""
    port = await d.port()
    base = f"http://127.0.0.1:{port}"
    pub.healthy = False  # the alarm
    failed = await d.wait_for("state_write_failed", timeout=40)
    assert failed["log_level"] == "critical" and error in failed["error"], failed
    assert "cannot rollback" not in failed["error"]  # the real error, not the failed ROLLBACK after it
    code, body = await health(base)
    assert code == 503 and "state file not writable" in body["why"] and error in body["why"], body
    await until(lambda: pages(admin, "state_unwritable"), 30, "a page about the state file")
    assert error in pages(admin, "state_unwritable")[0]["why"]
    # The decision is made (in memory: level 1 is running); its action must still wait for its intent.
    await until(lambda: level_1_running(port), 30, "level 1 decided")
    await asyncio.sleep(0.5)
    assert admin.count(FLAGS) == 0
    assert (await health(base))[0] == 503  # consistently, not once
    await release()
    await d.wait_for("state_write_recovered", timeout=30)
    await d.wait_for("action_started", timeout=30, level=1)
    await until(lambda: admin.count(FLAGS) == 1, 30, "level 1's request")
    await until(lambda: pages(admin, "state_writable"), 30, "the all-clear")
    assert (await health(base))[0] == 200
    await d.wait_for("mitigated", timeout=60)  # the machine goes on deciding: level 2 cures it
    assert admin.count(FLAGS) == 1


@pytest.mark.slow
async def test_a_write_lock_held_by_another_process(tmp_path, moto_url, aws_env, admin_api):
    ns = f"LOCKED{time.monotonic_ns()}"
    path = render(tmp_path, moto_url, admin_api, ns, notifications=paged(admin_api))
    pub = Publisher(moto_url, ns)
    pub.healthy = True
    pub.start(heal_when=lambda: admin_api.count("/admin/routing") > 0)
    d = await Daemon(path).start()
    holder = None
    try:
        await d.port()
        # A second process takes the file's write lock and keeps it (an operator's sqlite3 shell, a backup tool).
        holder = subprocess.Popen(
            [sys.executable, "-c", "import sqlite3, sys\n"
             "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
             "db.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\nsys.stdin.read()\n",
             str(tmp_path / "watchdog.db")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"

        async def release() -> None:
            assert holder is not None and holder.stdin is not None
            holder.stdin.close()
            holder.wait(10)

        await story_while_unwritable(d, admin_api, pub, "database is locked", release)
        d.signal(signal.SIGTERM)
        assert await d.wait(20) == 0
    finally:
        if holder is not None and holder.poll() is None:
            holder.kill()
        await pub.stop()
        await d.stop()
    assert_audit_log_intact(path)


def _can_make_a_private_tmpfs(where: Path) -> bool:
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return False
    r = subprocess.run(["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o size=1m tmpfs "{where}"'],
                       capture_output=True, timeout=10)
    return r.returncode == 0


@pytest.mark.slow
async def test_a_real_full_disk(tmp_path, moto_url, aws_env, admin_api):
    """The state directory is a 4 MiB tmpfs in a mount namespace of the daemon's own, filled to the last byte
    by a second process in that namespace, then freed. Where no namespace can be made (an unprivileged
    container) this skips, and test_an_injected_full_disk_in_process covers the same path."""
    state = tmp_path / "state"
    state.mkdir()
    if not _can_make_a_private_tmpfs(state):
        pytest.skip("cannot mount a tmpfs in a private mount namespace here (needs CAP_SYS_ADMIN)")
    ns = f"FULL{time.monotonic_ns()}"
    path = render(tmp_path, moto_url, admin_api, ns, notifications=paged(admin_api), state_path=state / "watchdog.db")
    pub = Publisher(moto_url, ns)
    pub.healthy = True
    pub.start(heal_when=lambda: admin_api.count("/admin/routing") > 0)
    mount = ("unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=4m tmpfs "$0" && exec "$@"', str(state))
    d = await Daemon(path, prefix=mount).start()
    try:
        await d.port()
        assert d.proc is not None
        inside = ("nsenter", "-t", str(d.proc.pid), "-m", "--")
        fill = subprocess.run([*inside, "dd", "if=/dev/zero", f"of={state}/filler", "bs=4k"], capture_output=True,
                              text=True, timeout=30)
        assert "No space left on device" in fill.stderr, fill.stderr

        async def release() -> None:
            subprocess.run([*inside, "rm", f"{state}/filler"], check=True, timeout=10)

        await story_while_unwritable(d, admin_api, pub, "database or disk is full", release)
        d.signal(signal.SIGTERM)
        assert await d.wait(20) == 0
    finally:
        await pub.stop()
        await d.stop()


class FullDisk:
    """The writing connection, refusing every change while `full` is set, as SQLite does on a full disk.
    In process, for where no tmpfs can be mounted: the error is SQLite's own text for SQLITE_FULL."""

    full = True

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if FullDisk.full and sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            self._db.execute("ROLLBACK")  # SQLite ends the transaction itself on SQLITE_FULL
            raise sqlite3.OperationalError("database or disk is full")
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> type[FullDisk]:
    """Every state file's writing connection is a FullDisk, full until the test sets `full = False`."""
    from watchdog.state.sqlite.store import SqliteStore

    real_attach = SqliteStore.attach

    def attach(self: SqliteStore, writer: Any) -> None:
        self._db = FullDisk(self._db)  # type: ignore[assignment]
        real_attach(self, writer)

    monkeypatch.setattr(SqliteStore, "attach", attach)
    monkeypatch.setattr(FullDisk, "full", True)
    return FullDisk


def signal_config(tmp_path: Path, admin: Any, *, levels: int = 1, sources: list[dict[str, Any]] | None = None,
                  targets: list[dict[str, Any]] | None = None,
                  notifications: list[dict[str, Any]] | None = None) -> Config:
    """Target svc, alarming from the first poll: the admin API answers /signal with `ok: true`, polled every
    200 ms. `sources` and `targets` come after these."""
    signal_source = {"name": "signal", "type": "http_json", "url": f"{admin.url}/signal", "interval": "200ms"}
    up = {"name": "up", "category": "security", "source": "signal", "field": "ok", "threshold": "== true"}
    steps = [level(n, name, http(f"{admin.url}/l{n}"), deadline="5s") for n, name in [(1, "one"), (2, "two")][:levels]]
    svc = make_target("svc", [up], steps, verify_window="1h")
    return parsed(hybrid_routing(state_path=tmp_path / "w.db", sources=[signal_source, *(sources or [])],
                                 targets=[svc, *(targets or [])], notifications=notifications))


async def test_an_injected_full_disk_in_process(tmp_path, admin_api, full_disk):
    import io
    import json

    from watchdog.lifecycle.app import App
    from watchdog.support.logs import setup_logging
    from watchdog.state.sqlite.store import SqliteStore

    # The cloudwatch source's client start yields: the file fails before the targets exist.
    quiet = make_target("quiet", [metric_rule(source="cw", namespace="N", metric="M", threshold="> 1")],
                        [level(1, "one", http(f"{admin_api.url}/q1"), deadline="5s")])
    cfg = signal_config(tmp_path, admin_api, sources=[cloudwatch("cw")], targets=[quiet],
                        notifications=[webhook(admin_api, retry={"attempts": 3, "initial_backoff": "10ms"})])
    logs = io.StringIO()
    setup_logging("info", logs)
    app = await App.create(cfg)
    await app.start()
    try:
        await until(lambda: not app.runtime.health()[0], what="/healthz to fail")
        ok, why = app.runtime.health()
        assert "state file not writable" in why and "database or disk is full" in why
        lines = [json.loads(ln) for ln in logs.getvalue().splitlines()]
        [failed] = [ln for ln in lines if ln["event"] == "state_write_failed"]
        assert failed["log_level"] == "critical" and "database or disk is full" in failed["error"]
        await until(lambda: pages(admin_api, "state_unwritable"), what="a page")
        assert app.runtime.metrics.registry.get_sample_value("watchdog_state_writable") == 0
        await asyncio.sleep(0.3)  # a page per target would have followed at once
        assert len(pages(admin_api, "state_unwritable")) == 1  # one per channel, not one per target
        assert admin_api.count("/l1") == 0 and app.runtime.executors["svc"].machine.phase.value == "running"
        app.runtime.store_wait = 0.2
        pause, stored = await app.runtime.pause("svc", timedelta(minutes=5), "while the disk is full")
        assert stored is False  # in force, and the operator is told it would not survive a restart
        assert (await app.runtime.resume("svc", "done"))[1] is False
        FullDisk.full = False
        await until(lambda: admin_api.count("/l1") == 1, what="level 1 once the file takes writes")
        await until(lambda: app.runtime.health()[0], what="/healthz back to 200")
        await until(lambda: pages(admin_api, "state_writable"), what="the all-clear")
        assert app.runtime.metrics.registry.get_sample_value("watchdog_state_writable") == 1
    finally:
        await app.stop()
    store = SqliteStore(tmp_path / "w.db")
    try:
        kinds = [r.data.get("event", r.kind) for r in store.records()]
        # Nothing was lost while the disk was full: the decision, then the intent, then what it did.
        assert kinds.index("incident_opened") < kinds.index("level_started") < kinds.index("intent") \
            < kinds.index("outcome")
        assert "state_writable" in kinds and store.verify_chain() == []
    finally:
        store.close()


async def test_a_reload_while_a_sent_mark_waits_for_the_file_does_not_send_it_again(tmp_path, admin_api, full_disk):
    """A reload cancels the channel workers. One waiting for its "sent" mark to land (the disk is full) was
    cancelled there, and the next worker read the message as still waiting and sent it again, once per reload."""
    from watchdog.lifecycle.app import App
    from watchdog.state.sqlite.store import SqliteStore

    full_disk.full = False
    hook = webhook(admin_api, events=["incident_opened"], retry={"attempts": 3, "initial_backoff": "10ms"})
    admin_api.delay[HOOK] = 0.5
    app = await App.create(signal_config(tmp_path, admin_api, notifications=[hook]), serve_http=False)
    await app.start()
    try:
        await until(lambda: pages(admin_api, "incident_opened"), what="the page's request")
        FullDisk.full = True  # the disk fills while the page is in flight: its mark cannot land
        # Wait for its answer (0.5 s late): then it is delivered and its mark queued behind the full disk. (A
        # reload that cut the send itself short would send it again, by design: at least once.)
        await asyncio.sleep(1.0)
        for _ in range(2):
            await app.reload(signal_config(tmp_path, admin_api, notifications=[hook]))  # SIGHUP, the same config
            await asyncio.sleep(1.5)  # the channel's supervisor starts a new worker within 1 s
        assert len(pages(admin_api, "incident_opened")) == 1
        FullDisk.full = False
        await until(lambda: app.runtime.notifier.status()["hook"]["pending"] == 0, what="the mark to land")
        assert len(pages(admin_api, "incident_opened")) == 1
    finally:
        FullDisk.full = False
        await app.stop()
    store = SqliteStore(tmp_path / "w.db")
    sent = [r for r in store.records() if r.kind == "notification" and r.data["event"] == "incident_opened"]
    store.close()
    assert [r.data["outcome"] for r in sent] == ["sent"]  # its audit record was not lost to the cancellation


async def test_a_pause_that_comes_while_the_intent_waits_holds_the_level(tmp_path, admin_api, full_disk):
    """The disk is full when level 1 is decided; an operator pauses; the disk is freed. The level must not
    run inside the pause (it once did, as soon as its intent landed), and at resume it is level 1 that runs,
    not level 2: nothing of level 1 ever ran."""
    from watchdog.lifecycle.app import App

    app = await App.create(signal_config(tmp_path, admin_api, levels=2), serve_http=False)
    app.runtime.store_wait = 0.2
    await app.start()
    try:
        ex = app.runtime.executors["svc"]
        await until(lambda: ex.busy, what="level 1 waiting for its intent")
        await app.runtime.pause(None, timedelta(hours=2), "an operator takes over")
        FullDisk.full = False
        await until(lambda: not ex.busy, what="level 1 to be held")
        assert admin_api.count("/l1") == 0 and ex.machine.phase.value == "verifying"
        assert ex.machine.incident is not None and ex.machine.incident.runs[-1].outcome == "not_started"
        polls = admin_api.count("/signal")
        await until(lambda: admin_api.count("/signal") >= polls + 3, what="three polls on, the rule alarming")
        assert admin_api.count("/l1") == 0 and admin_api.count("/l2") == 0
        await app.runtime.resume(None, "done")
        await until(lambda: admin_api.count("/l1") == 1, what="level 1 at resume")
        assert admin_api.count("/l2") == 0
    finally:
        FullDisk.full = False
        await app.stop()
