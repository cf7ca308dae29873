"""The baseline: what a cron script does today, one CloudWatch request per metric, in a loop.

    python -m bench.baseline SPEC.json

SPEC: {"endpoint": url, "region": r, "n": N, "sweeps": k, "limit": rules swept (default N)}. boto3 is the client,
created (and warmed by one request) before anything is timed, so client start-up
is not counted against it. Each sweep sends one GetMetricData with one query per
rule, over the same window the daemon asks for, one after the other. Prints one
JSON object: per sweep, its wall time and this process's CPU time.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timezone


def main() -> int:
    import boto3
    from botocore.config import Config

    from bench.synth import fetch_window, query, rules

    spec = json.loads(open(sys.argv[1]).read())
    n = spec["n"]
    cw = boto3.client("cloudwatch", region_name=spec["region"], endpoint_url=spec["endpoint"],
                      config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    all_rules = rules(n)[: spec.get("limit") or n]
    start, end = fetch_window(datetime.now(timezone.utc))
    cw.get_metric_data(MetricDataQueries=[query(all_rules[0], n, "m")], StartTime=start, EndTime=end)  # warm-up
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()  # the bench says go (its proxy counts from here)
    sweeps = []
    for _ in range(spec["sweeps"]):
        start, end = fetch_window(datetime.now(timezone.utc))
        c0, t0 = time.process_time(), time.monotonic()
        points = breaching = 0
        for r in all_rules:
            answer = cw.get_metric_data(MetricDataQueries=[query(r, n, "m")], StartTime=start, EndTime=end,
                                        ScanBy="TimestampAscending")
            values = [v for x in answer["MetricDataResults"] for v in x.get("Values", [])]
            points += len(values)
            limit = 50 if r.stat == "SampleCount" else 1500  # what the script checks: the latest value
            breaching += bool(values) and values[-1] > limit
        sweeps.append({"wall_s": time.monotonic() - t0, "cpu_s": time.process_time() - c0, "t0": t0,
                       "t1": time.monotonic(), "points": points, "breaching": breaching})
    print(json.dumps({"sweeps": sweeps, "pid": os.getpid()}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
