"""docs/cost.md's tables, computed by the watchdog's own projection (watchdog/sources/cost.py), never typed.

`python -m tools.cost_table` rewrites what lies between the markers in docs/cost.md; tests/test_cost_table.py
makes the same text and fails when the file differs, so a change of price, schedule or packing shows there.

Every way of reading watches N rules, each on its own 1-minute metric, in alarm on 3 of 3 periods (the
example of docs/deciding.md, "Worst-case detection delay"). The alarm ways read N existing alarms of the same
shape, one a rule; what those alarms cost CloudWatch is the last row, which they add to.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from watchdog.config.schema import rule_model
from watchdog.core.cost import ALARM_STANDARD, Usage, alarm_delay, dollars, fixed_delay, per_month, said_delay
from watchdog.core.schedule import Pace, detection_delay
from watchdog.core.signals import Query
from watchdog.sources.cloudwatch import MAX_QUERIES_PER_CALL, CloudWatchSource
from watchdog.sources.cloudwatch import usage as cloudwatch_usage
from watchdog.sources.cloudwatch_alarms import CloudWatchAlarmsSource, alarms_usage
from watchdog.sources.cloudwatch_config import SETTLE

DOC = Path(__file__).resolve().parent.parent / "docs" / "cost.md"
BENCH = DOC.parent.parent / "bench" / "README.md"  # issue 22: the bench's page shows the same tables
BEGIN = "<!-- cost tables: made by `python -m tools.cost_table`, do not edit by hand -->"
END = "<!-- end of the cost tables -->"
RULES = (10, 100, 1000, 5000)
PERIOD = timedelta(minutes=1)
M = 3
BEFORE = timedelta(seconds=30)  # the example config's interval before issue 22: every query at every poll
PUSHED_INTERVAL = timedelta(minutes=5)  # config.yaml's pushed example: the reconcile every 5m
QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/rollback-watchdog-alarm-events"


def _rules(n: int, reads: Callable[[int], dict[str, Any]]) -> list[Query]:
    model = rule_model()
    return [Query(f"t/r{k}", model.model_validate({"name": f"r{k}", "category": "performance", "source": "s",
                                                    "evaluation_periods": M, **reads(k)}))
            for k in range(n)]


def _metric(k: int) -> dict[str, Any]:
    return {"threshold": "> 1", "metric": {"namespace": "Shop", "name": f"Errors{k}", "period": "60s"}}


def _alarm(k: int) -> dict[str, Any]:
    return {"alarm": f"shop-errors-{k}"}


def every_30s(n: int) -> Usage:
    """Before issue 22 every poll read every query: N metrics per poll, ceil(N / 500) calls."""
    polls = per_month(Pace(BEFORE))
    return Usage("-", "cloudwatch", {"GetMetricData": polls * math.ceil(n / MAX_QUERIES_PER_CALL)}, polls * n,
                 fixed_delay(PERIOD, M, SETTLE, BEFORE))


def aligned(n: int, **source: Any) -> Usage:
    cfg = CloudWatchSource.model_validate({"name": "s", "type": "cloudwatch", **source})
    return cloudwatch_usage(cfg, _rules(n, _metric))


def polled(n: int) -> Usage:
    cfg = CloudWatchAlarmsSource.model_validate({"name": "s", "type": "cloudwatch_alarms", "interval": "60s"})
    return alarms_usage(cfg, _rules(n, _alarm))


def pushed(n: int) -> Usage:
    cfg = CloudWatchAlarmsSource.model_validate({"name": "s", "type": "cloudwatch_alarms", "queue_url": QUEUE,
                                                 "interval": f"{int(PUSHED_INTERVAL.total_seconds())}s"})
    return alarms_usage(cfg, _rules(n, _alarm))


ALARM_OWN = detection_delay(PERIOD, M, SETTLE)  # an alarm decides on the same buckets, as late as they land

WAYS: list[tuple[str, Callable[[int], Usage], str]] = [
    (f"every {said_delay(BEFORE)}, every query (before issue 22)", every_30s,
     said_delay(fixed_delay(PERIOD, M, SETTLE, BEFORE))),
    ("aligned: each query once a period", aligned, said_delay(detection_delay(PERIOD, M, SETTLE))),
    ("aligned, `read_every: 5m`", lambda n: aligned(n, read_every="5m"),
     said_delay(detection_delay(PERIOD, M, SETTLE, timedelta(minutes=5)))),
    ("alarms polled (`interval: 60s`)", polled, said_delay(alarm_delay(ALARM_OWN, timedelta(minutes=1)))),
    (f"alarms pushed (`interval: {said_delay(PUSHED_INTERVAL)}`)", pushed,
     said_delay(alarm_delay(ALARM_OWN, None)) + " + seconds"),
]


def tables() -> str:
    head = "| way of reading | worst-case detection delay | " + " | ".join(f"{n:,} rules".replace(",", " ")
                                                                              for n in RULES) + " |"
    rule = "|---|---|" + "---|" * len(RULES)
    usages = {name: [how(n) for n in RULES] for name, how, _ in WAYS}
    listed, free = [head, rule], [head, rule]
    for name, _, delay in WAYS:
        for out, amount in ((listed, lambda u: u.dollars), (free, lambda u: u.after_free_tier)):
            cells = " | ".join(dollars(amount(u)) for u in usages[name])
            out.append(f"| {name} | {delay} | {cells} |")
    alarms = " | ".join(dollars(n * ALARM_STANDARD) for n in RULES)
    for out in (listed, free):
        out.append(f"| N standard alarms themselves (CloudWatch, {dollars(ALARM_STANDARD)} each) | "
                   f"{said_delay(ALARM_OWN)} | {alarms} |")
    requests = [head.replace(" worst-case detection delay |", ""), rule[4:]]
    for name, _, _ in WAYS:
        cells = " | ".join(_requests(u) for u in usages[name])
        requests.append(f"| {name} | {cells} |")
    return "\n".join([BEGIN, "", "**At list price**, dollars per 30 days:", "", *listed, "",
                      "**With the free tier** (the account's first million CloudWatch API requests and first "
                      "million SQS requests a month, when nothing else uses them):", "", *free, "",
                      "**What is requested** per 30 days (GetMetricData: metrics requested, its billed unit):", "",
                      *requests, "", END])


def _requests(u: Usage) -> str:
    parts = [f"{_n(u.metrics)} metrics in {_n(u.requests['GetMetricData'])} calls"] if u.metrics else []
    parts += [f"{_n(n)} {api}" for api, n in u.requests.items() if n and api != "GetMetricData"]
    return ", ".join(parts)


def _n(x: float) -> str:
    return f"{round(x):,}".replace(",", " ")


def rewritten(text: str) -> str:
    """`text` with what lies between the markers (the markers included) made again."""
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + tables() + text[end:]


def main() -> int:
    for doc in (DOC, BENCH):
        text = doc.read_text()
        new = rewritten(text)
        if new != text:
            doc.write_text(new)
            print(f"{doc}: rewritten")
        else:
            print(f"{doc}: already current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
