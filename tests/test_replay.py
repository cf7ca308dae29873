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
        # By hand, from the documented rule (README "Replay"): a call returns at most 100 800 datapoints, so
        # a batch of 30 one-minute queries gets 100 800 / 30 = 3 360 buckets, 56 h a window, on a grid aligned
        # to the epoch. The range starts N + 2 = 5 buckets before --from (the first poll's window) and ends at
        # --to: one window, or two where a grid line falls inside it; 30 queries are one batch (at most 500).
        span = 100_800 // RULES * 60
        assert span == 56 * 3600
        lo, hi = int((start - 5 * MIN).timestamp()) // span, (int(opt.end.timestamp()) - 1) // span
        assert hi - lo + 1 in (1, 2)
        assert len(proxy.calls) == hi - lo + 1
        assert all(size <= 500 for size in proxy.sizes)
        assert f"{len(proxy.calls)} GetMetricData calls, {sum(proxy.sizes)} metrics requested" in first
        assert "would-be incidents: 1" in text
        assert "r0 = 2000 > 1500" in text
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

