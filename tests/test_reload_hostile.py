"""SIGHUP with a hostile config on the real daemon (issue 12: 2): every bad file is a rejected reload, the
daemon stays up, answers /healthz and keeps polling with the old config. Before, an undecodable file or a
recursive anchor ended the process (and under systemd it crash-looped)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.daemon import Daemon

pytestmark = pytest.mark.slow

CONFIG = """\
watchdog: {{listen: "127.0.0.1:0", state_path: "{tmp}/w.db"}}
aws: {{region: us-east-1, endpoint_url: "{aws}"}}
sources:
  - {{name: cloudwatch, type: cloudwatch, interval: 1s, timeout: {timeout}, retry: {{attempts: 1}}}}
targets:
  - name: web
    rules:
      - {{name: latency, category: performance, source: cloudwatch, threshold: "{threshold}",
         metric: {{namespace: RELOADHOSTILE, name: Latency, stat: Average, period: 60s}}}}
    escalation: {{verify_window: 10m}}
    levels:
      - level: 1
        name: flags
        deadline: 10s
        actions:
          - {{type: http, method: PUT, url: "{admin}/l1", json: {{enabled: false}}}}
"""


def bomb(text: str, levels: int = 6) -> str:
    """Nested aliases in an otherwise valid action body: the old loader expanded them, then reloaded."""
    rows = ['              lol0: &l0 "lol"']
    rows += [f"              lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    action = '          - {type: http, method: PUT, url: "'
    head, _, rest = text.partition(action)
    url = rest.split('"', 1)[0]
    return (head + f'          - type: http\n            method: PUT\n            url: "{url}"\n            json:\n'
            + "\n".join(rows) + "\n")


def hostile_files(good: str) -> list[tuple[str, bytes, str]]:
    """(name, file bytes, the one problem the rejection must carry). Each would set threshold > 999 if taken."""
    changed = good.replace('threshold: "> 1500"', 'threshold: "> 999"')
    return [
        ("latin1-comment", changed.replace("sources:\n", "# caf\xe9\nsources:\n").encode("latin-1"),
         "{path}: not UTF-8: byte 0xe9 on line 3, column 6 (save the file as UTF-8)"),
        ("utf16", changed.encode("utf-16"),
         "{path}: is UTF-16 or UTF-32 text (it starts with a byte-order mark): save it as UTF-8"),
        ("binary", bytes(range(256)) * 16, "{path}: not UTF-8: byte 0x80 on line 2, column 118 (save the file as UTF-8)"),
        ("huge-duration", changed.replace("verify_window: 10m", "verify_window: 99999999999999d").encode(),
         "targets[0].escalation.verify_window: duration '99999999999999d' is too long: at most 3650d (line 10)"),
        ("recursive-anchor", changed.replace("json: {enabled: false}", "json: &a [*a]").encode(),
         "{path}: YAML anchors and aliases are not supported (&a on line 16): write the value out"),
        ("alias-bomb", bomb(changed).encode(),
         "{path}: YAML anchors and aliases are not supported (&l0 on line 20): write the value out"),
        ("duplicate-key", good.replace('threshold: "> 1500"', 'threshold: "> 1500", threshold: "< 1"').encode(),
         "targets[0].rules[0].threshold: duplicate key (line 8, columns 68 and 89): YAML would silently keep only the last one"),
        ("zero-interval", changed.replace("interval: 1s", "interval: 0s").encode(),
         "sources[0].interval: at least 100ms (got 0s) (line 4)"),
    ]


async def status(s: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with s.get(f"{base}/status") as r:
        assert r.status == 200
        return await r.json()


async def polled_after(s: aiohttp.ClientSession, base: str, before: str | None, timeout: float = 15.0) -> str:
    """The source's last_poll once it has moved past `before`: the old config is still polling."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = (await status(s, base))["sources"][0]["last_poll"]
        if last is not None and last != before:
            return str(last)
        await asyncio.sleep(0.2)
    raise AssertionError(f"no poll after {before} within {timeout}s")


NAMES = [name for name, _, _ in hostile_files(CONFIG)]


@pytest.mark.parametrize("name", NAMES)
async def test_a_hostile_file_is_a_rejected_reload_and_the_old_config_runs_on(
        tmp_path: Path, moto_url: str, aws_env: dict[str, str], admin_api: Any, name: str) -> None:
    path = tmp_path / "config.yaml"
    good = CONFIG.format(tmp=tmp_path, aws=moto_url, admin=admin_api.url, threshold="> 1500", timeout="1s")
    path.write_text(good)
    d = await Daemon(str(path)).start()
    try:
        base = f"http://127.0.0.1:{await d.port()}"
        async with aiohttp.ClientSession() as s:
            before = await polled_after(s, base, None)
            raw, expected = next((raw, exp) for n, raw, exp in hostile_files(good) if n == name)
            path.write_bytes(raw)
            d.signal(signal.SIGHUP)
            rejected = await d.wait_for("reload_rejected", timeout=30)
            assert rejected["problems"] == [expected.format(path=path)]
            assert d.proc is not None and d.proc.returncode is None
            async with s.get(f"{base}/healthz") as r:
                assert r.status == 200, await r.text()
            await polled_after(s, base, before)  # still polling, after the rejection
            doc = await status(s, base)
            assert doc["rules"][0]["threshold"] == "> 1500" and doc["sources"][0]["interval_s"] == 1  # the old config
            assert d.events("reloaded") == []

            # A good file still reloads; its warning is logged, and stops nothing.
            path.write_text(CONFIG.format(tmp=tmp_path, aws=moto_url, admin=admin_api.url, threshold="> 999",
                                          timeout="5s"))
            d.signal(signal.SIGHUP)
            await d.wait_for("reloaded", timeout=30)
            warning = await d.wait_for("config_warning", timeout=10)
            assert warning["warning"] == ("warning: sources[0].timeout: timeout x attempts (5s x 1 = 5s) is longer "
                                          "than the interval (1s): a slow answer can hold a poll past the next one")
            assert (await status(s, base))["rules"][0]["threshold"] == "> 999"
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
