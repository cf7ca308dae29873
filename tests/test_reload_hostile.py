"""SIGHUP with a hostile config on the real daemon (issue 12: 2): every bad file is a rejected reload, the
daemon stays up, answers /healthz and keeps polling with the old config. Before, an undecodable file or a
recursive anchor ended the process (and under systemd it crash-looped)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from configs import http, hybrid_routing, insert_after, level, line_of, to_yaml
from hostile import COMMON, alias_rows, anchored, refused
from tests.daemon import Daemon, status
from timing import until

pytestmark = pytest.mark.slow


def config(tmp_path: Path, aws: str, admin: str, threshold: str = "> 1500", timeout: str = "1s",
           **overrides: Any) -> str:
    # A poll every second: the rule's 1 s period (a CloudWatch source polls on its rules' periods, issue 22).
    settings = dict(state_path=tmp_path / "w.db", aws_endpoint=aws, interval="1s", timeout=timeout, period="1s",
                    retry={"attempts": 1}, target="web", namespace="RELOADHOSTILE", threshold=threshold,
                    verify_window="10m", levels=[level(1, "flags", http(f"{admin}/l1"))])
    return to_yaml(hybrid_routing(**{**settings, **overrides}))


NAMES = [*COMMON, "binary", "alias-bomb", "zero-interval"]


def hostile(name: str, tmp_path: Path, aws: str, admin: str) -> tuple[bytes, str]:
    """The file's bytes and the one problem the rejection must carry. Each would change the threshold if taken."""
    def changed(**overrides: Any) -> str:
        return config(tmp_path, aws, admin, threshold="> 999", **overrides)

    action = f"url: {admin}/l1"
    if name == "binary":
        return bytes(range(256)) * 16, "{path}: not UTF-8: byte 0x80 on line 2, column 118 (save the file as UTF-8)"
    if name == "alias-bomb":  # in an otherwise valid action body: the old loader expanded them, then reloaded
        return anchored(insert_after(changed(), action, "json:", *alias_rows(6)), "&l0")
    if name == "zero-interval":
        text = changed(interval="0s")
        return text.encode(), f"sources[0].interval: at least 100ms (got 0s) (line {line_of(text, 'interval: 0s')})"
    return refused(name, changed, action)


async def polled_after(port: int, before: str | None, timeout: float = 15.0) -> str:
    """The source's last_poll once it has moved past `before`: the old config is still polling."""
    async def moved() -> str | None:
        last = (await status(port))["sources"][0]["last_poll"]
        return last if last is not None and last != before else None

    return await until(moved, timeout, f"a poll after {before}")


@pytest.mark.parametrize("name", NAMES)
async def test_a_hostile_file_is_a_rejected_reload_and_the_old_config_runs_on(
        tmp_path: Path, moto_url: str, aws_env: dict[str, str], admin_api: Any, name: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config(tmp_path, moto_url, admin_api.url))
    d = await Daemon(str(path)).start()
    try:
        port = await d.port()
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as s:
            before = await polled_after(port, None)
            raw, expected = hostile(name, tmp_path, moto_url, admin_api.url)
            path.write_bytes(raw)
            d.signal(signal.SIGHUP)
            rejected = await d.wait_for("reload_rejected", timeout=30)
            assert rejected["problems"] == [expected.format(path=path)]
            assert d.proc is not None and d.proc.returncode is None
            async with s.get(f"{base}/healthz") as r:
                assert r.status == 200, await r.text()
            await polled_after(port, before)  # still polling, after the rejection
            doc = await status(port)
            assert doc["rules"][0]["threshold"] == "> 1500" and doc["sources"][0]["interval_s"] == 1  # the old config
            assert d.events("reloaded") == []

            # A good file still reloads; its warning is logged, and stops nothing.
            path.write_text(config(tmp_path, moto_url, admin_api.url, threshold="> 999", timeout="5s"))
            d.signal(signal.SIGHUP)
            await d.wait_for("reloaded", timeout=30)
            warning = await d.wait_for("config_warning", timeout=10)
            assert warning["warning"] == ("warning: sources[0].timeout: timeout x attempts (5s x 1 = 5s) is longer "
                                          "than the interval (1s): a slow answer can hold a poll past the next one")
            assert (await status(port))["rules"][0]["threshold"] == "> 999"
        d.signal(signal.SIGTERM)
        assert await d.wait(30) == 0
        assert "Traceback" not in (await d._stderr()).decode()
    finally:
        await d.stop()
    assert admin_api.calls == []  # nothing alarmed, nothing acted


async def test_reload_survives_whatever_reading_the_config_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last guard behind load_config: an exception of any kind is a rejected reload, not the daemon's end."""
    import structlog

    from watchdog.cli import main as cli

    def explode(path: str) -> None:
        raise MemoryError("no room for the new config")

    monkeypatch.setattr(cli, "load_config", explode)
    untouched = object()  # _reload must not get as far as the app
    with structlog.testing.capture_logs() as logs:
        await cli._reload(untouched, str(tmp_path / "config.yaml"))
    assert [(e["event"], e["why"]) for e in logs] == [
        ("reload_rejected", "unexpected MemoryError reading the config; the old one keeps running")]
