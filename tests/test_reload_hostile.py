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
from tests.daemon import Daemon, status
from timing import until

pytestmark = pytest.mark.slow


def config(tmp_path: Path, aws: str, admin: str, threshold: str = "> 1500", timeout: str = "1s",
           **overrides: Any) -> str:
    settings = dict(state_path=tmp_path / "w.db", aws_endpoint=aws, interval="1s", timeout=timeout,
                    retry={"attempts": 1}, target="web", namespace="RELOADHOSTILE", threshold=threshold,
                    verify_window="10m", levels=[level(1, "flags", http(f"{admin}/l1"))])
    return to_yaml(hybrid_routing(**{**settings, **overrides}))


NAMES = ["latin1-comment", "utf16", "binary", "huge-duration", "recursive-anchor", "alias-bomb", "duplicate-key",
         "zero-interval"]


def hostile(name: str, tmp_path: Path, aws: str, admin: str) -> tuple[bytes, str]:
    """The file's bytes and the one problem the rejection must carry. Each would set threshold > 999 if taken."""
    changed = config(tmp_path, aws, admin, threshold="> 999")
    if name == "latin1-comment":
        text = changed.replace("sources:\n", "# caf\xe9\nsources:\n")
        return text.encode("latin-1"), \
            f"{{path}}: not UTF-8: byte 0xe9 on line {line_of(text, '# caf')}, column 6 (save the file as UTF-8)"
    if name == "utf16":
        return changed.encode("utf-16"), \
            "{path}: is UTF-16 or UTF-32 text (it starts with a byte-order mark): save it as UTF-8"
    if name == "binary":
        return bytes(range(256)) * 16, "{path}: not UTF-8: byte 0x80 on line 2, column 118 (save the file as UTF-8)"
    if name == "huge-duration":
        text = config(tmp_path, aws, admin, threshold="> 999", verify_window="99999999999999d")
        return text.encode(), ("targets[0].escalation.verify_window: duration '99999999999999d' is too long: "
                               f"at most 3650d (line {line_of(text, 'verify_window')})")
    if name == "recursive-anchor":
        text = insert_after(changed, f"url: {admin}/l1", "json: &a [*a]")
        return text.encode(), \
            f"{{path}}: YAML anchors and aliases are not supported (&a on line {line_of(text, '&a')}): write the value out"
    if name == "alias-bomb":
        # Nested aliases in an otherwise valid action body: the old loader expanded them, then reloaded.
        rows = ['  lol0: &l0 "lol"'] + [f"  lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 7)]
        text = insert_after(changed, f"url: {admin}/l1", "json:", *rows)
        return text.encode(), \
            f"{{path}}: YAML anchors and aliases are not supported (&l0 on line {line_of(text, '&l0')}): write the value out"
    if name == "duplicate-key":
        text = insert_after(config(tmp_path, aws, admin), "threshold: '> 1500'", "threshold: '< 1'")
        first = line_of(text, "threshold: '> 1500'")
        return text.encode(), (f"targets[0].rules[0].threshold: duplicate key (lines {first} and {first + 1}): "
                               "YAML would silently keep only the last one")
    if name == "zero-interval":
        text = config(tmp_path, aws, admin, threshold="> 999", interval="0s")
        return text.encode(), f"sources[0].interval: at least 100ms (got 0s) (line {line_of(text, 'interval: 0s')})"
    raise AssertionError(name)


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

    from watchdog import cli

    def explode(path: str) -> None:
        raise MemoryError("no room for the new config")

    monkeypatch.setattr(cli, "load_config", explode)
    untouched = object()  # _reload must not get as far as the app
    with structlog.testing.capture_logs() as logs:
        await cli._reload(untouched, str(tmp_path / "config.yaml"))
    assert [(e["event"], e["why"]) for e in logs] == [
        ("reload_rejected", "unexpected MemoryError reading the config; the old one keeps running")]
