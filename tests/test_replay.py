"""`replay` over CloudWatch history on moto: the cost first, batches of at most 500 queries per window,
the cache (a second run with other thresholds sends nothing), the would-be incidents."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3

from aws_proxy import running_proxy
from configs import hybrid_routing, metric_rule, parsed
from watchdog.replay.command import Options, run_replay
from watchdog.core.rules import EPOCH

UTC = timezone.utc
MIN = timedelta(minutes=1)
RULES = 30


def put_history(moto_url: str, ns: str, rules: int, start: datetime, minutes: int, breach: tuple[int, int],
                every: int = 1) -> None:
    """Per rule a 1-minute metric from `start`; rule r0 breaches (2000 > 1500) in the `breach` minutes."""
    cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=moto_url)
    for i in range(rules):
        data = []
        for k in range(0, minutes, every):
            bad = i == 0 and breach[0] <= k < breach[1]
            data.append({"MetricName": "Latency", "Dimensions": [{"Name": "Rule", "Value": f"r{i}"}],
                         "Timestamp": start + k * MIN + timedelta(seconds=5), "Value": 2000.0 if bad else 100.0})
        for j in range(0, len(data), 1000):
            cw.put_metric_data(Namespace=ns, MetricData=data[j:j + 1000])


def config(endpoint: str, ns: str, rules: int, threshold: str = "> 1500", tmp: Path | None = None):
    rs = [metric_rule(f"r{i}", namespace=ns, dimensions={"Rule": f"r{i}"}, stat="Maximum", threshold=threshold,
                      datapoints_to_alarm=3, evaluation_periods=3) for i in range(rules)]
    return parsed(hybrid_routing(aws_endpoint=endpoint, interval="60s", rules=rs, verify_window="3m",
                                 state_path=(tmp / "w.db") if tmp else None))


async def test_a_replay_prints_its_cost_first_fetches_in_batches_and_then_only_from_the_cache(
        moto_url: str, aws_env: dict[str, str], tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(hours=3)
    ns = "REPLAY1"
    put_history(moto_url, ns, RULES, start - timedelta(minutes=10), 190, breach=(100, 110))
    async with running_proxy(moto_url) as proxy:
        cfg = config(proxy.url, ns, RULES, tmp=tmp_path)
        opt = Options(start=start, end=now - timedelta(minutes=20), now=now, cache=tmp_path / "cache.db")
        out = io.StringIO()
        assert await run_replay(cfg, opt, out=out) == 0, out.getvalue()
        text = out.getvalue()
        first = text.splitlines()[0]
        assert first.startswith("cost: source cloudwatch:"), text
        # By hand, from the documented rule (docs/replay.md): a call returns at most 100 800 datapoints, so
        # a batch of 30 one-minute queries gets 100 800 / 30 = 3 360 buckets, 56 h a window, the windows laid
        # from the range's start. The range starts N + 2 = 5 buckets before --from (the first poll's window)
        # and ends at --to, 20 minutes before now: 2 h 45 min, one window; 30 queries are one batch (at most
        # 500): one call.
        assert len(proxy.calls) == 1
        assert all(size <= 500 for size in proxy.sizes)
        assert f"{len(proxy.calls)} GetMetricData calls, {sum(proxy.sizes)} metrics requested" in first
        assert "would-be incidents: 1" in text
        assert "trigger: r0 = 2000 (3 of 3 datapoints breach > 1500 (alarm at 3))" in text
        # Another threshold: the same queries, all from the cache.
        before = len(proxy.calls)
        cfg2 = config(proxy.url, ns, RULES, threshold="> 150", tmp=tmp_path)
        out2 = io.StringIO()
        assert await run_replay(cfg2, Options(start=start, end=opt.end, now=now, cache=tmp_path / "cache.db",
                                              as_json=True), out=out2, err=io.StringIO()) == 0
        assert len(proxy.calls) == before
        doc = json.loads(out2.getvalue())
        # "> 150" over values of 100 and 2000: still only r0, from the same cached datapoints
        assert [set(i["trigger"]) for i in doc["incidents"]] == [{"r0"}]
        assert doc["incidents"][0]["levels"][0]["level"] == 1


async def test_four_hours_across_a_line_of_the_epoch_grid_request_each_metric_once(
        moto_url: str, aws_env: dict[str, str], tmp_path: Path) -> None:
    """Windows used to lie on a grid fixed to the epoch (56 h apart for 30 one-minute rules): a range across
    one of its lines was two windows, every metric requested twice and paid twice. Laid from the range's
    start, a range shorter than a window is one call per batch, whatever time of day it covers."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    span = timedelta(hours=56)  # 100 800 datapoints / 30 queries = 3 360 one-minute buckets
    line = EPOCH + span * ((now - timedelta(hours=3) - EPOCH) // span)  # a line of the old grid, >= 3 h ago
    start, end = line - timedelta(hours=2), line + timedelta(hours=2)
    ns = "REPLAY4H"
    put_history(moto_url, ns, RULES, start - timedelta(minutes=10), 250, breach=(100, 110))
    async with running_proxy(moto_url) as proxy:
        cfg = config(proxy.url, ns, RULES, tmp=tmp_path)
        out = io.StringIO()
        opt = Options(start=start, end=end, now=now, cache=tmp_path / "cache.db")
        assert await run_replay(cfg, opt, out=out) == 0, out.getvalue()
        first = out.getvalue().splitlines()[0]
        # One batch of the 30 queries over the range (5 buckets before --from to --to: 4 h 5 min, one window).
        assert proxy.sizes == [RULES]
        sent = sorted(v for form in proxy.calls for k, [v] in form.items() if k.endswith(".Dimensions.member.1.Value"))
        assert sent == sorted(f"r{i}" for i in range(RULES))  # each metric once
        assert first == (f"cost: source cloudwatch: 1 GetMetricData calls, {RULES} metrics requested, $0.0003 at $0.01 "
                         f"per 1 000 (0 of {RULES} query-windows already cached)")

