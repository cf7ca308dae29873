"""`rollback-watchdog demo`: the scripted story of SPEC 3.6, start to finish.

A latency fault starts at about 20 s; level 1 (feature flags off) does not cure
it; level 2 (all traffic to the MCP-only route) does; the incident ends
mitigated at level 2 and the report is printed. Then the story's own history is
replayed with a stricter threshold: the would-be incidents and an HTML report.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

import aioboto3

from watchdog.lifecycle.app import App
from watchdog.config import Config, parse_config
from watchdog.demo.emulator import moto_server_class
from watchdog.demo.service import HybridRoutingService, ServiceState, publish_metrics
from watchdog.core.escalation import Phase
from watchdog.shared.events import Event
from watchdog.support.logs import setup_logging
from watchdog.replay.command import Options, run_replay
from watchdog.state.report import incident_report

FAULT_AT = 20.0
GIVE_UP_AFTER = 100.0
STRICTER = 1000  # ms: the threshold the replay tries after the story

CONFIG = """
watchdog:
  listen: 127.0.0.1:0
  state_path: {state}
  shutdown_grace: 5s
  record: {record}
aws:
  region: us-east-1
  endpoint_url: {aws}
sources:
  # Read each 5 s bucket 1 s after it closes (not CloudWatch's 2m: the publisher's last datapoint of a bucket is
  # in moto within a second).
  - {{name: cloudwatch, type: cloudwatch, interval: 2s, timeout: 3s, settle: 1s}}
targets:
  - name: hybrid-routing
    rules:
      - name: latency
        category: performance
        source: cloudwatch
        metric: {{namespace: HybridRouting, name: Latency, dimensions: {{Service: router}}, stat: Average, period: 5s}}
        threshold: "> {threshold}"
        datapoints_to_alarm: 2
        evaluation_periods: 3
        level: 1
    escalation:
      verify_window: 12s
      max_rollbacks_per_hour: 5
    levels:
      - level: 1
        name: feature-flags
        deadline: 10s
        actions:
          - {{type: http, method: PUT, url: "{app}/admin/feature-flags/hybrid-routing", json: {{enabled: false}}, timeout: 2s}}
        checks:
          - {{type: http, url: "{app}/health", expect_status: 200}}
      - level: 2
        name: traffic-routing
        deadline: 10s
        actions:
          - {{type: http, method: PUT, url: "{app}/admin/routing", json: {{mode: mcp_only}}, timeout: 2s}}
        checks:
          - {{type: http, url: "{app}/health", expect_status: 200}}
      - level: 3
        name: full-system
        deadline: 20s
        actions:
          - {{type: http, method: POST, url: "{app}/admin/redeploy", timeout: 5s}}
notifications:
  - {{type: webhook, name: demo-webhook, url: "{app}/notify", timeout: 2s}}
"""


class Timeline:
    def __init__(self, out: TextIO):
        self._out = out
        self._t0 = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self._t0:6.1f}s] {text}", file=self._out, flush=True)

    def event(self, ev: Event, dry_run: bool) -> None:
        self.say(f"watchdog: {ev.kind.replace('_', ' ')} (level {ev.level}) - {ev.why} -> {ev.next}")


async def run_demo(out: TextIO = sys.stdout, fault_at: float = FAULT_AT) -> int:
    """The story; EmulatorMissing (before anything starts) when the demo extra is not installed."""
    ThreadedMotoServer = moto_server_class()
    # The SDK's standard credential chain reads these; moto accepts any value.
    for key, value in (("AWS_ACCESS_KEY_ID", "demo"), ("AWS_SECRET_ACCESS_KEY", "demo"), ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(key, value)
    workdir = Path(tempfile.mkdtemp(prefix="rollback-watchdog-demo-"))
    log_path = workdir / "watchdog.log"
    log_file = log_path.open("w")
    setup_logging("info", log_file)
    tl = Timeline(out)

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    aws_url = f"http://{host}:{port}"
    state = ServiceState()
    service = HybridRoutingService(state, tl.say)
    stop = asyncio.Event()
    app: App | None = None
    try:
        app_url = await service.start()
        def config(threshold: int) -> Config:
            text = CONFIG.format(state=workdir / "watchdog.db", aws=aws_url, app=app_url,
                                 record=workdir / "polls.jsonl", threshold=threshold)
            return parse_config(text, os.environ, "demo")

        cfg = config(1500)
        tl.say(f"local CloudWatch (moto) at {aws_url}; hybrid-routing service at {app_url}")
        session = aioboto3.Session()
        async with session.client("cloudwatch", region_name="us-east-1", endpoint_url=aws_url) as cw:
            samples: list[float] = []
            publisher = asyncio.create_task(publish_metrics(cw, state, stop, on_sample=samples.append))
            app = await App.create(cfg, listeners=(tl.event,))
            started = datetime.now(timezone.utc)
            await app.start()
            tl.say(f"watchdog up: metrics at http://127.0.0.1:{app.bound_port}/metrics, logs in {log_path}")
            tl.say(f"story: latency is normal; a fault in the Bedrock path starts at {fault_at:.0f}s")
            result = await _watch(app, state, tl, samples, fault_at)
            stop.set()
            await publisher
            await app.runtime.notifier.drain(3)
            tl.say(f"notifications: {len(state.notifications)} delivered to the demo webhook "
                   f"({', '.join(state.notifications)})")
            ex = app.runtime.executors["hybrid-routing"]
            inc = ex.machine.incident
            if inc is not None:
                await app.runtime.journal.flush()  # the report reads the state file: every record has landed
                print("", file=out)
                print(incident_report(inc, app.runtime.journal.records(inc.id)), file=out)
            await app.stop()
            app = None
            await _replay(config(STRICTER), workdir, started, out)
            return result
    finally:
        stop.set()
        if app is not None:
            await app.stop()
        await service.stop()
        moto.stop()
        log_file.close()


async def _replay(cfg: Config, workdir: Path, started: datetime, out: TextIO) -> None:
    """The story's own history (CloudWatch's, and the daemon's recorded polls) through `replay`, with a
    stricter threshold: when would it have acted?"""
    now = datetime.now(timezone.utc)
    print(f"\n# Replay: the same {int((now - started).total_seconds())} s of history, threshold > {STRICTER} ms "
          "instead of > 1500\n", file=out, flush=True)
    opt = Options(start=started, end=now, now=now, cache=workdir / "replay-cache.db", recording=workdir / "polls.jsonl",
                  report=workdir / "replay.html", yes=True, resolve_after=None)
    await run_replay(cfg, opt, out=out, err=out)


async def _watch(app: App, state: ServiceState, tl: Timeline, samples: list[float], fault_at: float) -> int:
    ex = app.runtime.executors["hybrid-routing"]
    t0 = time.monotonic()
    last_report = 0.0
    while True:
        elapsed = time.monotonic() - t0
        if not state.fault and elapsed >= fault_at:
            state.fault = True
            tl.say("FAULT: Bedrock path degraded; latency climbs")
        if elapsed - last_report >= 5 and samples:
            last_report = elapsed
            tl.say(f"service: latency now {samples[-1]:.0f} ms (flags {'on' if state.flags_enabled else 'off'}, route {state.routing_mode})")
        if ex.machine.phase is Phase.MITIGATED:
            tl.say(f"incident mitigated at level {ex.machine.level}; a human resolves it when satisfied")
            return 0 if ex.machine.level == 2 else 1
        if ex.machine.phase is Phase.EXHAUSTED or elapsed > GIVE_UP_AFTER:
            tl.say(f"demo failed: phase {ex.machine.phase.value} at level {ex.machine.level} after {elapsed:.0f}s")
            return 1
        await asyncio.sleep(0.25)
