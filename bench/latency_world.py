"""What one detection-latency run stands on (bench/latency.py): its scenario, when theory says the level 1
request comes, the daemon's config, and the metric publisher.

Theory is derived here by hand from docs/deciding.md "When it polls" (not from the daemon's code; the worst
case is cross-checked against `watchdog.core.schedule.detection_delay` in the report). Times are seconds
since the epoch, as CloudWatch's bucket grid is (buckets start at multiples of the period).

- aligned reads: the bucket holding the first breaching datapoint (time T0) starts at B = T0 - T0 mod P; the
  M-th breaching bucket closes at C = B + M x P and is read at C + settle. Expected: C + settle - T0, from
  (M - 1) x P + settle (T0 just before a bucket's end) up to M x P + settle (T0 on its start).
- `read_every: R`: the query is read only at the ticks k x R + settle, each reading the buckets closed by
  k x R, so the M-th bucket is read at ceil(C / R) x R + settle; the worst case adds R - P.
- the fixed interval of the commit before issue 22: a poll at the daemon's start (its `started` line) and every
  I after it, each judging the buckets complete at that moment; the M-th is judged at the first poll after C,
  so C - T0 plus 0 to I, exactly known once the start is.
- pushed alarm state: the state change is sent at a known time S (set_alarm_state, then the EventBridge-
  shaped message on the queue); the long poll waiting on the queue returns when the message lands, so the
  expectation is S plus the daemon's own work; were the wake missed, a poll returns within its 20 s wait.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

QUIET, BREACH, THRESHOLD = 100.0, 1000.0, "> 500"  # Maximum of a bucket: one breaching datapoint breaches it
LONG_POLL_S = 20  # SQS's longest wait, what the pushed source asks for


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    kind: str  # aligned | read_every | interval | pushed
    period: int = 60  # seconds
    m: int = 3  # datapoints_to_alarm (= evaluation_periods here: M of M)
    settle: int = 5
    read_every: int | None = None
    interval: int = 60
    runs: int = 3
    lane: str = "long"  # "long" runs all at once; "short" one after the other beside them

    @property
    def step(self) -> int:
        """How often the publisher writes a datapoint: 1 s for high-resolution periods, 5 s for minutes."""
        return 1 if self.period < 60 else 5

    def offset(self, run: int) -> int:
        """Where in its bucket run `run` starts the breach: spread over the bucket, the first on its start
        (the worst case)."""
        return (run * self.period // self.runs) // self.step * self.step

    def breach_start(self, run: int, now: float) -> float:
        """T0 of run `run`, in a bucket starting after `now`. The runs of a scenario start one period apart;
        under `read_every` each waits for its own place on the read grid instead: the M-th breaching bucket
        closes one period after a read (the worst case) in the first run, and further on in the others."""
        first = now - now % self.period + self.period
        if self.read_every is None:
            return first + self.period * run + self.offset(run)
        r = self.read_every
        close_at = (self.period + run * r // self.runs) // self.period * self.period % r  # C mod R wanted
        b = first
        while (b + self.m * self.period) % r != close_at:
            b += self.period
        return b + self.offset(run)

    def worst(self) -> int:
        p, m = self.period, self.m
        if self.kind == "aligned":
            return m * p + self.settle
        if self.kind == "read_every":
            assert self.read_every is not None
            return m * p + self.settle + self.read_every - p
        if self.kind == "interval":
            return m * p + self.interval
        return LONG_POLL_S

    def formula(self) -> str:
        if self.kind == "aligned":
            return f"M×P + settle = {self.m}×{self.period} + {self.settle}"
        if self.kind == "read_every":
            return f"M×P + settle + (read_every − P) = {self.m}×{self.period} + {self.settle} + {self.read_every}−{self.period}"
        if self.kind == "interval":
            return f"M×P + interval = {self.m}×{self.period} + {self.interval}"
        return "≈ 0 s + the daemon's work: the long poll returns when the message lands (20 s were it not woken)"


SCENARIOS = (
    Scenario("aligned-10s", "aligned reads, high-resolution metric", "aligned", period=10, runs=5, lane="short"),
    Scenario("aligned-60s", "aligned reads", "aligned", period=60),
    Scenario("read-every-5m", "`read_every: 5m`", "read_every", period=60, read_every=300),
    Scenario("interval-30s", "fixed `interval: 30s` (the commit before issue 22)", "interval", period=60, interval=30),
    Scenario("pushed", "alarm state pushed (EventBridge → SQS)", "pushed", period=0, m=1, runs=5, lane="short"),
)


def expected_read(s: Scenario, t0: float, first_poll: float) -> float:
    """When theory says the poll that judges the breach starts; pushed: the send. `first_poll` is the
    daemon's first poll (its start), from which the fixed interval counts."""
    if s.kind == "pushed":
        return t0
    b = t0 - t0 % s.period
    close = b + s.m * s.period
    if s.kind == "aligned":
        return close + s.settle
    if s.kind == "read_every":
        assert s.read_every is not None
        return math.ceil(close / s.read_every) * s.read_every + s.settle
    return first_poll + math.ceil((close - first_poll) / s.interval) * s.interval


def config_text(s: Scenario, *, endpoint: str, region: str, admin: str, state_path: Path, metric: str,
                queue_url: str | None = None, alarm: str | None = None) -> str:
    """The daemon's YAML: one target, one rule, level 1 and 2 as PUTs to the admin stub."""
    retry = "retry: {attempts: 2, initial_backoff: 50ms, max_backoff: 200ms}"
    lines = ["watchdog:", "  listen: 127.0.0.1:0", f"  state_path: {state_path}", "  log_level: info",
             "  shutdown_grace: 5s", "aws:", f"  region: {region}", f"  endpoint_url: {endpoint}", "sources:"]
    if s.kind == "pushed":
        # interval 1h: the reconcile at start is the only scheduled read, so only the event can act
        lines.append(f"  - {{name: src, type: cloudwatch_alarms, interval: 1h, timeout: 10s, queue_url: "
                     f"\"{queue_url}\", {retry}}}")
        rule = f"{{name: lat, category: performance, source: src, alarm: {alarm}}}"
    else:
        extra = f", settle: {s.settle}s" if s.kind != "interval" else ""  # the old daemon knows no settle
        lines.append(f"  - {{name: src, type: cloudwatch, interval: {s.interval}s, timeout: 10s{extra}, {retry}}}")
        every = f", read_every: {s.read_every // 60}m" if s.read_every else ""
        rule = (f"{{name: lat, category: performance, source: src, metric: {{namespace: Bench/Latency, name: "
                f"{metric}, dimensions: {{Service: svc}}, stat: Maximum, period: {s.period}s}}, threshold: "
                f"\"{THRESHOLD}\", evaluation_periods: {s.m}, datapoints_to_alarm: {s.m}, level: 1{every}}}")
    lines += ["targets:", "  - name: svc", "    rules:", f"      - {rule}",
              "    escalation: {verify_window: 30m, max_rollbacks_per_hour: 10}", "    levels:"]
    for n, name in ((1, "l1"), (2, "l2")):
        lines.append(f"      - {{level: {n}, name: {name}, deadline: 30s, actions: [{{type: http, method: PUT, "
                     f"url: \"{admin}/svc/{name}\", timeout: 5s, retry: {{attempts: 1}}}}]}}")
    return "\n".join(lines) + "\n"


class Publisher:
    """Writes one datapoint of `metric` every `step` seconds, each when its timestamp comes (moto has no
    ingestion delay, so a datapoint is readable from its own time on): QUIET until `breach_at`, BREACH
    from it on. High-resolution (StorageResolution 1) for periods under a minute."""

    def __init__(self, cw: Any, metric: str, step: int, high_resolution: bool):
        self.cw, self.metric, self.step, self.hires = cw, metric, step, high_resolution
        self.breach_at: float | None = None
        self.errors = 0

    def _put(self, points: list[tuple[float, float]]) -> None:
        data = [{"MetricName": self.metric, "Dimensions": [{"Name": "Service", "Value": "svc"}], "Value": v,
                 "Timestamp": datetime.fromtimestamp(ts, timezone.utc),
                 **({"StorageResolution": 1} if self.hires else {})} for ts, v in points]
        self.cw.put_metric_data(Namespace="Bench/Latency", MetricData=data)

    def value(self, ts: float) -> float:
        return BREACH if self.breach_at is not None and ts >= self.breach_at else QUIET

    async def backfill(self, seconds: int) -> None:
        """Quiet datapoints for the last `seconds`, so the rule has data in every bucket from the start."""
        now = time.time() // self.step * self.step
        points = [(now - k * self.step, QUIET) for k in range(seconds // self.step, 0, -1)]
        for i in range(0, len(points), 500):
            await asyncio.to_thread(self._put, points[i:i + 500])

    async def run(self) -> None:
        ts = time.time() // self.step * self.step + self.step
        while True:
            await asyncio.sleep(max(0.0, ts - time.time()))
            try:
                await asyncio.to_thread(self._put, [(ts, self.value(ts))])
            except Exception:  # noqa: BLE001 - a lost datapoint shows as a late detection; counted, reported
                self.errors += 1
            ts += self.step


def state_change(alarm: str, at: datetime, region: str) -> str:
    """A "CloudWatch Alarm State Change" to ALARM, as EventBridge puts it on an SQS queue (the fields the
    source reads; tests/alarm_endpoints.py has the full shape the tests use)."""
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}+0000"
    reason = json.dumps({"version": "1.0", "statistic": "Maximum", "period": 60, "threshold": 500.0,
                         "evaluatedDatapoints": [{"timestamp": stamp, "sampleCount": 1.0, "value": BREACH}]})
    return json.dumps({
        "version": "0", "id": f"{alarm}-{random.getrandbits(64):x}", "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch", "account": "123456789012", "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region, "resources": [f"arn:aws:cloudwatch:{region}:123456789012:alarm:{alarm}"],
        "detail": {"alarmName": alarm,
                   "state": {"value": "ALARM", "reason": "bench", "reasonData": reason, "timestamp": stamp},
                   "previousState": {"value": "OK", "reason": "bench", "timestamp": stamp},
                   "configuration": {"metrics": []}},
    })
