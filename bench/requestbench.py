"""GetMetricData's requests of one poll, made by botocore and with each batch's queries encoded once.

    python -m bench.requestbench [--rules 1000] [--rounds 15]

The CloudWatch source built over the benchmark's config for N rules (bench/synth.py) packs its queries 500 a call,
as at a read of every query. Each round makes every call's request body as the daemon's client does before it is
signed (serialized, then prepared: the bytes SigV4 hashes and aiohttp sends), three ways: botocore alone; the way
of the commit before (botocore's serializer, then the old FormEncoder: the query fields' quoted text kept, the
rest urlencoded at every call); and `cloudwatch_request.EncodedQueries` (the daemon now). Each round moves the
window a minute on, as polls do. CPU time (`time.process_time`) per round, median [min-max]; the bodies must be the
same bytes (checked at every round). Prints a line per way; writes nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote_plus


def form_encoder() -> Callable[[Any], None]:
    """The commit before's FormEncoder (sources/cloudwatch.py at d0ccb36, one per source, its memo kept across
    calls), kept here to measure against."""
    known: dict[str, str] = {}

    def encode(request: Any) -> None:
        parts = []
        for key, value in request.data.items():
            text = value if isinstance(value, str) else str(value)
            if key.startswith("MetricDataQueries."):
                qk = known.get(key) or known.setdefault(key, quote_plus(key))
                qv = known.get(text) or known.setdefault(text, quote_plus(text))
            else:
                qk, qv = quote_plus(key), quote_plus(text)
            parts.append(f"{qk}={qv}")
        request.data = "&".join(parts)

    return encode


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rules", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args()

    import boto3
    from botocore.awsrequest import AWSRequest
    from botocore.config import Config as BotoConfig

    from bench.synth import config_text
    from watchdog.config import parse_config
    from watchdog.config.models import AwsSection
    from watchdog.sources.base import Query
    from watchdog.sources.cloudwatch import CloudWatch, pack
    from watchdog.sources.cloudwatch_request import Batch, EncodedQueries
    from watchdog.support.metrics import Metrics

    cfg = parse_config(config_text(args.rules, endpoint="http://127.0.0.1:9", admin="http://127.0.0.1:9",
                                   state_path="/nonexistent/w.db", interval="60s"), os.environ)
    queries = [Query(f"{t.name}/{r.name}", r) for t in cfg.targets for r in t.rules]
    source = CloudWatch(cfg.sources[0], queries, AwsSection(region="us-east-1"), Metrics())  # type: ignore[arg-type]
    batches = pack(source._sent)
    client = boto3.client("cloudwatch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y",
                          config=BotoConfig(parameter_validation=False))
    model = client.meta.service_model.operation_model("GetMetricData")
    plain, encoded = client._serializer, EncodedQueries(client._serializer)
    kept = [Batch(b) for b in batches]

    def bodies(serializer: Any, calls: list[Any], minute: int, before_sign: Callable[[Any], None] | None) -> list[Any]:
        start = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=minute)
        out = []
        for batch in calls:
            r = serializer.serialize_to_request({"MetricDataQueries": batch, "StartTime": start,
                                                 "EndTime": start + timedelta(minutes=6), "ScanBy": "TimestampAscending"},
                                                model)
            request = AWSRequest(method="POST", url="https://monitoring.invalid", data=r["body"])
            if before_sign is not None:
                before_sign(request)
            out.append(request.prepare().body)
        return out

    ways: list[tuple[str, Any, list[Any], Callable[[Any], None] | None]] = [
        ("botocore alone", plain, [list(b) for b in batches], None),
        ("botocore + FormEncoder (the commit before)", plain, [list(b) for b in batches], form_encoder()),
        ("each batch's queries encoded once (now)", encoded, kept, None),
    ]
    cpu: dict[str, list[float]] = {name: [] for name, *_ in ways}
    for minute in range(args.rounds + 1):  # round 0 warms up (and encodes the batches)
        made = []
        for name, serializer, calls, hook in ways:
            c0 = time.process_time()
            made.append(bodies(serializer, calls, minute, hook))
            if minute:
                cpu[name].append((time.process_time() - c0) * 1000)
        if any(m != made[0] for m in made):
            raise SystemExit("the bodies differ")
    sizes = [len(b) for b in batches]
    print(f"{args.rules} rules, {len(batches)} calls of {sizes} queries, {args.rounds} rounds; CPU per poll's requests:")
    for name, xs in cpu.items():
        print(f"  {name}: {statistics.median(xs):.2f} [{min(xs):.2f}-{max(xs):.2f}] ms")
    print("  the same bodies: yes")


if __name__ == "__main__":
    main()
