"""The synthetic world of one rule count N: its rules, its config file and its CloudWatch data.

Every N has its own region and namespace, so the sizes never see each other's
data. Rule i reads metric `<name>` of namespace `Bench/N<N>` with dimensions
{Rule: r<i>, Service: <target>}; one datum per metric and minute, at second 30,
of a value far below its threshold (so nothing alarms until the benchmark makes
one rule breach).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

SIZES = (10, 100, 1000, 5000)
TARGETS = {10: 2, 100: 4, 1000: 8, 5000: 10}
REGIONS = {10: "eu-west-1", 100: "eu-west-2", 1000: "eu-central-1", 5000: "us-west-2"}
METRICS = ("Latency", "Errors5xx", "Throttles", "QueueDepth", "CPUUtilization")
STATS = ("Average", "Maximum", "Sum", "Minimum", "SampleCount")
PERIOD_S = 60
DATUM_SECOND = 30  # datums sit at hh:mm:30
EVALUATION_PERIODS = 3
DATAPOINTS_TO_ALARM = 2
BREACH_VALUE = 999999.0


@dataclass(frozen=True)
class RuleDef:
    index: int
    target: str
    name: str
    metric: str
    stat: str
    dims: tuple[tuple[str, str], ...]  # sorted by name, as the daemon sends them

    @property
    def threshold(self) -> str:
        return "> 50" if self.stat == "SampleCount" else "> 1500"


def target_names(n: int) -> list[str]:
    return [f"svc{t:02d}" for t in range(TARGETS.get(n, max(1, min(10, n // 100))))]


def rules(n: int) -> list[RuleDef]:
    """Rules in config order (targets in order, rules in order): the daemon's query ids q0..q(n-1)."""
    targets = target_names(n)
    per = math.ceil(n / len(targets))
    out = []
    for i in range(n):
        t = targets[min(i // per, len(targets) - 1)]
        out.append(RuleDef(i, t, f"r{i:05d}", METRICS[i % len(METRICS)], STATS[(i // len(METRICS)) % len(STATS)],
                           (("Rule", f"r{i:05d}"), ("Service", t))))
    return out


def namespace(n: int) -> str:
    return f"Bench/N{n}"


def config_text(n: int, *, endpoint: str, admin: str, state_path: str, interval: str, region: str | None = None,
                retry_attempts: int = 1, timeout: str = "60s") -> str:
    """The daemon's YAML for N rules over several targets; two levels of HTTP actions on the admin stub."""
    region = region or REGIONS[n]
    ns = namespace(n)
    lines = [
        "watchdog:",
        "  listen: 127.0.0.1:0",
        f"  state_path: {state_path}",
        "  log_level: info",
        "  shutdown_grace: 5s",
        "aws:",
        f"  region: {region}",
        f"  endpoint_url: {endpoint}",
        "sources:",
        f"  - {{name: cw, type: cloudwatch, interval: {interval}, timeout: {timeout}, "
        f"retry: {{attempts: {retry_attempts}, initial_backoff: 50ms, max_backoff: 200ms}}}}",
        "targets:",
    ]
    by_target: dict[str, list[RuleDef]] = {}
    for r in rules(n):
        by_target.setdefault(r.target, []).append(r)
    for target, rs in by_target.items():
        lines += [f"  - name: {target}", "    rules:"]
        for r in rs:
            dims = ", ".join(f"{k}: {v}" for k, v in r.dims)
            lines.append(
                f"      - {{name: {r.name}, category: performance, source: cw, metric: {{namespace: {ns}, "
                f"name: {r.metric}, dimensions: {{{dims}}}, stat: {r.stat}, period: {PERIOD_S}s}}, "
                f'threshold: "{r.threshold}", evaluation_periods: {EVALUATION_PERIODS}, '
                f"datapoints_to_alarm: {DATAPOINTS_TO_ALARM}, level: 1}}"
            )
        lines += [
            "    escalation: {verify_window: 30m, max_rollbacks_per_hour: 10}",
            "    levels:",
            f"      - {{level: 1, name: feature-flags, deadline: 30s, actions: [{{type: http, method: PUT, "
            f'url: "{admin}/admin/{target}/feature-flags", json: {{enabled: false}}, timeout: 5s, retry: {{attempts: 1}}}}]}}',
            f"      - {{level: 2, name: traffic-routing, deadline: 30s, actions: [{{type: http, method: PUT, "
            f'url: "{admin}/admin/{target}/routing", json: {{mode: safe}}, timeout: 5s, retry: {{attempts: 1}}}}]}}',
        ]
    return "\n".join(lines) + "\n"


def minute_floor(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def datums(n: int, minutes: list[datetime], seed: int = 0) -> list[dict]:
    """One datum per rule metric and minute (at second 30): values far below the thresholds."""
    rnd = random.Random(seed * 7919 + n)
    out = []
    for m in minutes:
        for r in rules(n):
            out.append({
                "MetricName": r.metric,
                "Dimensions": [{"Name": k, "Value": v} for k, v in r.dims],
                "Value": round(rnd.uniform(80.0, 400.0), 3),
                "Timestamp": m + timedelta(seconds=DATUM_SECOND),
            })
    return out


def fetch_window(now: datetime) -> tuple[datetime, datetime]:
    """The window the daemon asks for (watchdog.sources.cloudwatch.fetch_window for these rules)."""
    lookback = EVALUATION_PERIODS * PERIOD_S
    start_s = ((now.timestamp()) - lookback) // PERIOD_S * PERIOD_S
    return datetime.fromtimestamp(start_s, timezone.utc), now.replace(microsecond=0)


def query(r: RuleDef, n: int, qid: str) -> dict:
    """The GetMetricData query the daemon sends for rule r (also what the per-metric baseline sends)."""
    return {
        "Id": qid,
        "MetricStat": {
            "Metric": {"Namespace": namespace(n), "MetricName": r.metric,
                       "Dimensions": [{"Name": k, "Value": v} for k, v in r.dims]},
            "Period": PERIOD_S,
            "Stat": r.stat,
        },
        "ReturnData": True,
    }
