"""The single-writer lock on the state file's real path (issue 12, defect 8): a second daemon, or
`rollback --offline`, reaching the same state file through a symlink is refused, naming the holder.

Real daemon processes, a real state file, real symlinks."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from configs import hybrid_routing, write
from tests.daemon import Daemon
from test_offline import offline

pytestmark = pytest.mark.slow


def layout(tmp: Path) -> dict[str, Path]:
    """One state file and three names for it: the real one, a symlink to the file, and the file
    through a symlinked directory."""
    real_dir = tmp / "var-lib"
    real_dir.mkdir()
    (tmp / "dir-link").symlink_to(real_dir, target_is_directory=True)
    (tmp / "file-link.db").symlink_to(real_dir / "w.db")  # dangling until the first daemon creates it
    return {"real": real_dir / "w.db", "file-link": tmp / "file-link.db", "dir-link": tmp / "dir-link" / "w.db"}


def config(tmp: Path, name: str, state: Path, admin: str) -> str:
    return write(tmp, hybrid_routing(state_path=state, target="web", admin=admin), f"{name}.yaml")


async def refused(d: Daemon) -> str:
    assert await d.wait(20) == 1
    return (await d._stderr()).decode()


async def run_once(cfg: str) -> None:
    """A daemon started and stopped: the state file exists from then on."""
    d = await Daemon(cfg).start()
    try:
        await d.port()
        d.signal(signal.SIGTERM)
        assert await d.wait(20) == 0
    finally:
        await d.stop()


@pytest.mark.parametrize(("first", "second", "existing"), [
    ("real", "file-link", False),
    ("file-link", "real", False),  # the first start creates the state file through a dangling symlink
    ("file-link", "real", True),
    ("real", "dir-link", False),
    ("dir-link", "file-link", False),
])
async def test_a_second_daemon_through_another_name_of_the_state_file_is_refused(tmp_path, admin_api, aws_env,
                                                                                 first, second, existing):
    names = layout(tmp_path)
    if existing:
        await run_once(config(tmp_path, "earlier", names["real"], admin_api.url))
    a = await Daemon(config(tmp_path, "a", names[first], admin_api.url)).start()
    try:
        await a.port()
        assert a.proc is not None
        b = await Daemon(config(tmp_path, "b", names[second], admin_api.url)).start()
        try:
            err = await refused(b)
        finally:
            await b.stop()
        assert f"in use by the rollback-watchdog daemon (pid {a.proc.pid})" in err
        assert str(names["real"].resolve()) in err and "Traceback" not in err
        assert b.events("started") == []
        assert names["file-link"].is_symlink()  # still a name of the one state file, not a file of its own
        a.signal(signal.SIGTERM)
        assert await a.wait(20) == 0
    finally:
        await a.stop()


@pytest.mark.parametrize(("daemon_on", "offline_on"), [("real", "file-link"), ("file-link", "real")])
async def test_offline_rollback_through_a_symlink_is_refused_while_the_daemon_runs(tmp_path, admin_api, aws_env,
                                                                                  daemon_on, offline_on):
    names = layout(tmp_path)
    d = await Daemon(config(tmp_path, "daemon", names[daemon_on], admin_api.url)).start()
    try:
        await d.port()
        assert d.proc is not None
        r = await offline(config(tmp_path, "offline", names[offline_on], admin_api.url), level=1)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert f"refused: the state at {names['real'].resolve()}" in r.stderr
        assert f"in use by the rollback-watchdog daemon (pid {d.proc.pid})" in r.stderr
        assert admin_api.calls == []  # level 1 did not run beside the daemon
        d.signal(signal.SIGTERM)
        assert await d.wait(20) == 0
    finally:
        await d.stop()
    # With the daemon gone the same symlinked config works, on the one state file.
    r = await offline(config(tmp_path, "offline", names[offline_on], admin_api.url), level=1)
    assert r.returncode == 0, r.stderr
    assert admin_api.count("/l1") == 1
    assert sorted(p.name for p in names["real"].parent.iterdir() if p.suffix == ".lock") == ["w.db.lock"]
    assert not os.path.exists(str(names["file-link"]) + ".lock")
