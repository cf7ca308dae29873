"""moto's CloudWatch on loopback for the benchmark, in its own process.

    python -m bench.moto_server PORTFILE

Binds 127.0.0.1 on a free port, writes the port to PORTFILE and serves until
killed. Two of moto's code paths are quadratic and would dominate the run
(a 500-query GetMetricData takes about 5 s on 1 000 metrics, a 1 000-datum
PutMetricData about 5 s); both are made linear here without changing a single
answer:

* request parsing: `QueryParser._gonna_recurse` scans every form key for every
  structure it parses (O(structures x keys)); here it bisects the sorted keys
  (same truth value: the keys that start with a prefix sort right after it);
* GetMetricData: for every query and every period moto scans every datum in
  the window; here each query walks moto's periods the same way, with moto's
  filters and its `Statistics`, over only that period's datums of that metric
  name and dimension set (found by bisection on their timestamps), so the
  values, timestamps and order are moto's. Queries with an `Expression` take
  moto's original path.

`python -m bench.moto_server --self-check` compares both against unpatched moto.
"""

from __future__ import annotations

import bisect
import os
import sys
import threading
import time
from datetime import timedelta
from typing import Any

for _k, _v in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}.items():
    os.environ.setdefault(_k, _v)

_local = threading.local()
_lock = threading.RLock()
ORIGINAL: dict[str, Any] = {}
_SORTED: dict[int, tuple[int, list[Any], list[Any]]] = {}


def _gonna_recurse(self: Any, query_params: dict[str, Any], prefix: str) -> bool:
    if prefix == "":
        return False
    cache = getattr(_local, "keys", None)
    # The parser never changes the params while it walks them; the cache holds a reference, so `is` is safe
    # (len() of werkzeug's CombinedMultiDict is itself O(keys)).
    if cache is None or cache[0] is not query_params:
        cache = (query_params, sorted(query_params))
        _local.keys = cache
    keys = cache[1]
    i = bisect.bisect_left(keys, prefix)
    return not (i < len(keys) and keys[i].startswith(prefix))


def _key(name: str, dims: Any) -> tuple[str, frozenset[tuple[str, str]]]:
    pairs = []
    for d in dims or ():
        if isinstance(d, dict):
            pairs.append((d.get("Name"), d.get("Value")))
        else:
            pairs.append((d.name, d.value))
    return name, frozenset(pairs)


def _index(backend: Any) -> tuple[dict[Any, list[Any]], dict[str, list[Any]]]:
    """(name, dimension set) -> datums and name -> datums, extended as metric_data grows (append-only)."""
    idx = backend.__dict__.get("_bench_index")
    if idx is None:
        idx = backend.__dict__["_bench_index"] = [0, {}, {}]
    data = backend.metric_data
    for md in data[idx[0]:]:
        idx[1].setdefault(_key(md.name, md.dimensions), []).append(md)
        idx[2].setdefault(md.name, []).append(md)
    idx[0] = len(data)
    return idx[1], idx[2]


def _get_metric_data(self: Any, queries: list[dict[str, Any]], start_time: Any, end_time: Any,
                     scan_by: str = "TimestampAscending") -> list[dict[str, Any]]:
    original = ORIGINAL["get_metric_data"]
    if any("MetricStat" not in q for q in queries) or self.aws_metric_data:
        return original(self, queries, start_time, end_time, scan_by)
    with _lock:
        by_key, by_name = _index(self)
        start_time = start_time.replace(microsecond=0)
        end_time = end_time.replace(microsecond=0)
        if start_time >= end_time:  # moto's own validation errors
            return original(self, queries, start_time, end_time, scan_by)
        out: list[dict[str, Any]] = []
        for q in queries:
            metric = q["MetricStat"]["Metric"]
            dims = metric.get("Dimensions", [])
            candidates = by_key.get(_key(metric["MetricName"], dims), []) if dims else by_name.get(
                metric["MetricName"], [])
            out.extend(_answer(q, _sorted(candidates), start_time, end_time, scan_by))
        return out


def _sorted(datums: list[Any]) -> tuple[list[Any], list[Any]]:
    """The datums in time order and their timestamps (cached until more arrive)."""
    cache = _SORTED  # under _lock: the server answers each request on a thread of its own
    hit = cache.get(id(datums))
    if hit is not None and hit[0] == len(datums):
        return hit[1], hit[2]
    ordered = sorted(datums, key=lambda md: md.timestamp)
    cache[id(datums)] = (len(datums), ordered, [md.timestamp for md in ordered])
    return ordered, cache[id(datums)][2]


def _answer(q: dict[str, Any], cands: tuple[list[Any], list[Any]], start_time: Any, end_time: Any,
            scan_by: str) -> list[dict[str, Any]]:
    """moto's loop for one MetricStat query (models.CloudWatchBackend.get_metric_data): the same period
    walk, filters and Statistics, over each period's own datums (found by bisection) instead of every datum
    of the window for every period."""
    from moto.cloudwatch.models import Dimension, Statistics

    ordered, stamps = cands
    metric_stat = q["MetricStat"]
    query_ns = metric_stat["Metric"]["Namespace"]
    query_name = metric_stat["Metric"]["MetricName"]
    delta = timedelta(seconds=int(metric_stat["Period"]))
    dimensions = [Dimension(name=d["Name"], value=d["Value"]) for d in metric_stat["Metric"].get("Dimensions", [])]
    unit = metric_stat.get("Unit")
    stat = metric_stat["Stat"]
    values: list[Any] = []
    timestamps: list[Any] = []
    last = bisect.bisect_left(stamps, end_time)  # moto keeps datums with start <= timestamp < end
    period_start = start_time
    while period_start <= end_time:
        period_end = period_start + delta
        lo = bisect.bisect_left(stamps, period_start)
        hi = min(bisect.bisect_left(stamps, period_end), last)
        chunk = [md for md in ordered[lo:hi] if md.namespace == query_ns and md.name == query_name]
        if dimensions:
            chunk = [md for md in ordered[lo:hi] if sorted(md.dimensions) == sorted(dimensions) and md.name == query_name]
        if unit:
            chunk = [md for md in chunk if md.unit == unit]
        if chunk:
            stats = Statistics([stat], period_start)
            stats.metric_data = chunk
            values.append(stats.get_statistics_for_type(stat))
            timestamps.append(stats.timestamp)
        period_start += delta
    if scan_by == "TimestampDescending" and timestamps:
        timestamps.reverse()
        values.reverse()
    label = q.get("Label") or f"{query_name} {stat}"
    if not q.get("ReturnData", True):
        return []
    return [{"id": q["Id"], "label": label, "values": values, "timestamps": timestamps, "status_code": "Complete"}]


def _put_metric_data(self: Any, namespace: str, metric_data: list[dict[str, Any]]) -> None:
    with _lock:
        ORIGINAL["put_metric_data"](self, namespace, metric_data)


def patch() -> None:
    from moto.cloudwatch.models import CloudWatchBackend
    from moto.core.parse import QueryParser

    if ORIGINAL:
        return
    ORIGINAL["gonna_recurse"] = QueryParser._gonna_recurse
    ORIGINAL["get_metric_data"] = CloudWatchBackend.get_metric_data
    ORIGINAL["put_metric_data"] = CloudWatchBackend.put_metric_data
    QueryParser._gonna_recurse = _gonna_recurse  # type: ignore[method-assign]
    CloudWatchBackend.get_metric_data = _get_metric_data  # type: ignore[method-assign]
    CloudWatchBackend.put_metric_data = _put_metric_data  # type: ignore[method-assign]


def unpatch() -> None:
    from moto.cloudwatch.models import CloudWatchBackend
    from moto.core.parse import QueryParser

    if not ORIGINAL:
        return
    QueryParser._gonna_recurse = ORIGINAL.pop("gonna_recurse")  # type: ignore[method-assign]
    CloudWatchBackend.get_metric_data = ORIGINAL.pop("get_metric_data")  # type: ignore[method-assign]
    CloudWatchBackend.put_metric_data = ORIGINAL.pop("put_metric_data")  # type: ignore[method-assign]


def self_check() -> list[str]:
    """The same requests against patched and unpatched moto (in process): the answers must be equal."""
    import logging
    from datetime import datetime, timedelta, timezone

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    problems: list[str] = []
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        cw = boto3.client("cloudwatch", region_name="ap-south-1", endpoint_url=f"http://{host}:{port}")
        now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
        datums = []
        for minute in range(-6, 1):
            for i in range(30):
                dims = [{"Name": "Service", "Value": f"s{i % 3}"}] + ([{"Name": "Rule", "Value": f"r{i}"}] if i % 5 else [])
                datums.append({"MetricName": "Latency" if i % 2 else "Errors", "Dimensions": dims,
                               "Value": float(i * 7 + minute), "Timestamp": now + timedelta(minutes=minute, seconds=i)})
        cw.put_metric_data(Namespace="Check", MetricData=datums)
        queries = []
        for i in range(30):
            dims = [{"Name": "Service", "Value": f"s{i % 3}"}] + ([{"Name": "Rule", "Value": f"r{i}"}] if i % 5 else [])
            queries.append({"Id": f"q{i}", "MetricStat": {"Metric": {"Namespace": "Check", "MetricName": "Latency" if i % 2 else "Errors",
                            "Dimensions": dims}, "Period": 60, "Stat": ("Average", "Maximum", "Sum", "SampleCount")[i % 4]}})
        queries.append({"Id": "nodims", "MetricStat": {"Metric": {"Namespace": "Check", "MetricName": "Latency"}, "Period": 60, "Stat": "Sum"}})
        kw = {"MetricDataQueries": queries, "StartTime": now - timedelta(minutes=5), "EndTime": now + timedelta(seconds=50),
              "ScanBy": "TimestampAscending"}
        answers = []
        for patched in (False, True):
            (patch if patched else unpatch)()
            answers.append(cw.get_metric_data(**kw)["MetricDataResults"])
        if answers[0] != answers[1]:
            problems.append(f"GetMetricData differs: unpatched {answers[0][:2]} patched {answers[1][:2]}")
        if not any(r["Values"] for r in answers[0]):
            problems.append("the self-check data returned no values at all")
    finally:
        server.stop()
    return problems


def main() -> int:
    if sys.argv[1:] == ["--self-check"]:
        problems = self_check()
        print("\n".join(problems) or "patched moto answers as unpatched moto")
        return 1 if problems else 0
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    patch()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    tmp = sys.argv[1] + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(str(port))
    os.replace(tmp, sys.argv[1])
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    raise SystemExit(main())
