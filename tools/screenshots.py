"""`make screenshots`: the pictures in docs/img/, taken from the real daemon on moto in Debian's chromium.

    python -m tools.screenshots [--out docs/img]

It starts a moto server (a process), the demo's simulated hybrid-routing service (its admin API reacts to
the levels), a publisher of its latency and error rate, and the daemon itself (`python -m watchdog run`)
with quick periods, then photographs the status page as the story goes:

    page-normal.png    every rule ok (the hybrid-routing section opened by its link, ?open=NAME)
    page-incident.png  a fault: level 1 does not cure it, level 2 does (mitigated at level 2)
    page-paused.png    paused through the page's own form (token and reason typed in)
    replay-report.png  `rollback-watchdog replay --report` over the same minutes of moto's history
    page-blind.png     moto stopped: the source fails and the target goes blind

Needs the dev extra (moto, playwright) and Debian's chromium; runs in about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aioboto3
import yaml

from tools.browser import chromium, chromium_path
from watchdog.demo.service import HybridRoutingService, ServiceState, publish_metrics

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "screenshots-token"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class Plain(yaml.SafeDumper):
    """Every value written out: the config refuses YAML anchors and aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(work: Path, aws: str, app: str) -> dict[str, Any]:
    def metric(name: str) -> dict[str, Any]:
        return {"namespace": "HybridRouting", "name": name, "dimensions": {"Service": "router"}, "stat": "Average",
                "period": "1s"}

    def put(path: str, body: dict[str, Any] | None = None, method: str = "PUT") -> dict[str, Any]:
        action: dict[str, Any] = {"type": "http", "method": method, "url": app + path, "timeout": "2s"}
        return {**action, "json": body} if body is not None else action

    health = [{"type": "http", "url": f"{app}/health", "expect_status": 200}]
    quick = {"datapoints_to_alarm": 2, "evaluation_periods": 3, "source": "cloudwatch"}
    return {
        "watchdog": {"listen": "127.0.0.1:0", "state_path": str(work / "watchdog.db"), "api_token": TOKEN,
                     "shutdown_grace": "5s"},
        "aws": {"region": "us-east-1", "endpoint_url": aws},
        "sources": [{"name": "cloudwatch", "type": "cloudwatch", "interval": "1s", "timeout": "900ms",
                     "blind_after": "3s", "retry": {"attempts": 1}}],
        "targets": [
            {"name": "hybrid-routing",
             "rules": [{"name": "latency", "category": "performance", "metric": metric("Latency"),
                        "threshold": "> 1500", "level": 1, **quick},
                       {"name": "error-rate", "category": "performance", "metric": metric("ErrorRate"),
                        "threshold": "> 10", "level": 2, **quick}],
             "escalation": {"verify_window": "3s", "max_rollbacks_per_hour": 10},
             "levels": [{"level": 1, "name": "feature-flags", "deadline": "5s", "checks": health,
                         "actions": [put("/admin/feature-flags/hybrid-routing", {"enabled": False})]},
                        {"level": 2, "name": "traffic-routing", "deadline": "5s", "checks": health,
                         "actions": [put("/admin/routing", {"mode": "mcp_only"})]},
                        {"level": 3, "name": "full-system", "deadline": "10s",
                         "actions": [put("/admin/redeploy", method="POST")]}]},
            {"name": "checkout",
             "rules": [{"name": "error-budget", "category": "performance", "metric": metric("ErrorRate"),
                        "threshold": "> 25", "level": 1, **quick}],
             "levels": [{"level": 1, "name": "feature-flags", "deadline": "5s",
                         "actions": [put("/admin/feature-flags/hybrid-routing", {"enabled": False})]}]},
        ],
    }


class Daemon:
    """`python -m watchdog run` in a child process; its JSON lines read as they come."""

    def __init__(self, config_path: Path, env: dict[str, str]):
        self.proc = subprocess.Popen([sys.executable, "-m", "watchdog", "run", "-c", str(config_path)],
                                     stdout=subprocess.PIPE, stderr=None, env=env, text=True)
        self.lines: list[dict[str, Any]] = []

    async def read(self) -> None:
        assert self.proc.stdout is not None
        while line := await asyncio.to_thread(self.proc.stdout.readline):
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                pass

    async def until(self, event: str, timeout: float = 60.0) -> dict[str, Any]:
        return await until(lambda: next((ln for ln in self.lines if ln.get("event") == event), None),
                           f"the daemon's {event!r} line", timeout)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def until(found: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := found()):
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshots: no {what} within {timeout:g}s")
        await asyncio.sleep(0.1)
    return value


async def shoot(out: Path, work: Path) -> None:
    binary = chromium_path()
    if binary is None:
        raise SystemExit("screenshots: chromium is not installed (Debian's chromium package)")
    env = {**os.environ, **AWS_ENV}
    moto_port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    aws = f"http://127.0.0.1:{moto_port}"
    state = ServiceState()
    service = HybridRoutingService(state, lambda _line: None)
    stop = asyncio.Event()
    daemon = None
    try:
        await until(lambda: socket.socket().connect_ex(("127.0.0.1", moto_port)) == 0, "moto server", 20)
        app = await service.start()
        cfg_path = work / "config.yaml"
        cfg_path.write_text(yaml.dump(config(work, aws, app), Dumper=Plain, sort_keys=False))
        for k, v in AWS_ENV.items():
            os.environ.setdefault(k, v)
        async with aioboto3.Session().client("cloudwatch", region_name="us-east-1", endpoint_url=aws) as cw:
            publisher = asyncio.create_task(publish_metrics(cw, state, stop, every=0.25))
            started = datetime.now(timezone.utc)
            daemon = Daemon(cfg_path, env)
            reader = asyncio.create_task(daemon.read())
            listen = (await daemon.until("started"))["listen"]
            origin = "http://" + str(listen)
            async with chromium(work / "profile", origin, binary) as b:
                page = b.page
                await asyncio.sleep(8)  # a few healthy periods on the charts
                await page.goto(origin + "/?open=hybrid-routing")
                await page.screenshot(path=out / "page-normal.png", full_page=True)
                state.fault = True  # the Bedrock path breaks: level 1 will not cure it, level 2 will
                await daemon.until("mitigated", 90)
                await asyncio.sleep(3)
                await page.goto(origin + "/")
                await page.screenshot(path=out / "page-incident.png", full_page=True)
                await page.fill("#token", TOKEN)
                await page.fill("#pause-form [name=duration]", "45m")
                await page.fill("#pause-form [name=reason]", "deploying the Bedrock fix by hand")
                await page.click("#pause-form button")
                await until(lambda: daemon is not None and any(ln.get("event") == "paused" for ln in daemon.lines),
                            "pause", 20)
                await asyncio.sleep(6)  # the page's own refresh shows it
                await page.screenshot(path=out / "page-paused.png", full_page=True)
                ended = datetime.now(timezone.utc)
                await replay_report(cfg_path, started, ended, work, env)
                report = work / "report.html"
                async with chromium(work / "profile-report", report.as_uri(), binary) as r:
                    await r.page.goto(report.as_uri())
                    await r.page.screenshot(path=out / "replay-report.png", full_page=True)
                stop.set()  # the publisher first: it writes to moto
                await publisher
                moto.terminate()  # the source fails: after blind_after the target is blind
                moto.wait(10)
                await daemon.until("blind", 60)
                await asyncio.sleep(6)
                await page.screenshot(path=out / "page-blind.png", full_page=True)
                if b.outside:
                    raise SystemExit(f"screenshots: the page asked for {b.outside}")
            daemon.stop()
            await reader
    finally:
        stop.set()
        if daemon is not None:
            daemon.stop()
        await service.stop()
        if moto.poll() is None:
            moto.terminate()
            moto.wait(10)


async def replay_report(cfg_path: Path, start: datetime, end: datetime, work: Path, env: dict[str, str]) -> None:
    span = [(start - timedelta(seconds=5)).isoformat(), (end + timedelta(seconds=2)).isoformat()]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "watchdog", "replay", "-c", str(cfg_path), "--from", span[0], "--to", span[1],
        "--report", str(work / "report.html"), "--cache", str(work / "cache.db"), "--yes", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"screenshots: the replay failed: {err.decode(errors='replace')[-500:]}")


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tools.screenshots", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="where the PNGs go (docs/img)")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="watchdog-screenshots-") as work:
        asyncio.run(shoot(args.out, Path(work)))
    for name in ("page-normal", "page-incident", "page-paused", "page-blind", "replay-report"):
        path = args.out / f"{name}.png"
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}  {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
