"""GetMetricData's answers at 5 000 rules, parsed by botocore and by watchdog/sources/cloudwatch_parse.py.

    python -m bench.parsebench [--rules 5000] [--rounds 15] [--no-write]

moto (bench/moto_server.py's linear GetMetricData, in this process on loopback) is loaded with the benchmark's
data for N rules (bench/synth.py: one datum per rule and minute, at second 30, over the last six minutes), then
asked exactly what the daemon asks at a poll: the N rules' queries, 500 a call, over the daemon's window (back to
the first bucket of each rule's evaluation range, N + 2 periods). Each answer's raw bytes are kept (botocore's
`before-parse` event). Then, in rounds, the ten answers are parsed by botocore's QueryParser (with the daemon's
timestamp parser, as its client is set up) and by `cloudwatch_parse.parse`: CPU time (`time.process_time`) per
round, median [min-max]; the peak of Python allocations while parsing one answer (tracemalloc); and whether the
two give the same answer (they must). Writes bench/results-parse.json and the table between the markers in
bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from bench.report import write_block

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- parse-bench:begin -->", "<!-- parse-bench:end -->"


def answers(n: int) -> tuple[list[bytes], int]:
    """The raw answers of one poll of N rules, and how many datums moto was loaded with."""
    import boto3
    from moto.server import ThreadedMotoServer

    from bench import moto_server
    from bench.synth import PERIOD_S, REGIONS, datums, minute_floor, query, rules
    from watchdog.core.rules import evaluation_range

    moto_server.patch()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        cw = boto3.client("cloudwatch", region_name=REGIONS.get(n, "us-west-2"), endpoint_url=f"http://{host}:{port}",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
        now = minute_floor(datetime.now(timezone.utc)) + timedelta(seconds=40)
        minutes = [minute_floor(now) - timedelta(minutes=k) for k in range(6, -1, -1)]
        data = datums(n, minutes)
        from bench.synth import namespace
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda k: cw.put_metric_data(Namespace=namespace(n), MetricData=data[k:k + 1000]),
                          range(0, len(data), 1000)))
        raw: list[bytes] = []
        cw.meta.events.register("before-parse.cloudwatch.GetMetricData",
                                lambda response_dict, **_: raw.append(response_dict["body"]))
        start = datetime.fromtimestamp((int(now.timestamp()) // PERIOD_S - evaluation_range(3)) * PERIOD_S, timezone.utc)
        qs = [query(r, n, f"q{i}") for i, r in enumerate(rules(n))]
        for k in range(0, len(qs), 500):
            cw.get_metric_data(MetricDataQueries=qs[k:k + 500], StartTime=start, EndTime=now,
                               ScanBy="TimestampAscending")
        return raw, len(data)
    finally:
        server.stop()
        moto_server.unpatch()


def parsers() -> dict[str, Callable[[bytes], dict[str, Any]]]:
    import botocore.session
    from botocore.parsers import QueryParser

    from watchdog.sources.cloudwatch import fast_timestamp
    from watchdog.sources.cloudwatch_parse import parse

    shape = botocore.session.get_session().get_service_model("cloudwatch").operation_model("GetMetricData").output_shape
    theirs = QueryParser(timestamp_parser=fast_timestamp)
    return {"botocore": lambda body: theirs._do_parse({"body": body}, shape),
            "cloudwatch_parse": lambda body: parse(body, fast_timestamp)}


def measure(bodies: list[bytes], rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, parse in parsers().items():
        for body in bodies:  # warm-up
            parse(body)
        cpu = []
        for _ in range(rounds):
            gc.collect()
            t0 = time.process_time()
            for body in bodies:
                parse(body)
            cpu.append(time.process_time() - t0)
        gc.collect()
        tracemalloc.start()
        parse(bodies[0])
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out[name] = {"cpu_s": cpu, "median_s": statistics.median(cpu), "min_s": min(cpu), "max_s": max(cpu),
                     "peak_bytes_one_answer": peak}
    p = parsers()
    out["same_answers"] = all(_same(p["botocore"](b)) == _same(p["cloudwatch_parse"](b)) for b in bodies)
    return out


def _same(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _same(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_same(v) for v in value]
    return repr(value) if isinstance(value, float) else value


def table(res: dict[str, Any]) -> str:
    b, f = res["botocore"], res["cloudwatch_parse"]

    def ms(x: dict[str, Any]) -> str:
        return f"{x['median_s'] * 1000:.1f} [{x['min_s'] * 1000:.1f}–{x['max_s'] * 1000:.1f}] ms"

    return "\n".join([
        f"The {res['calls']} answers of one poll of {res['rules']} rules ({res['kib']:.0f} KiB, {res['results']} results, "
        f"{res['datapoints']} datapoints; moto loaded with {res['datums']} datums), parsed {res['rounds']} times each way "
        f"in one process ({res['machine']}); CPU time per poll's answers, median [min–max]:", "",
        "| parser | CPU, all answers of a poll | per answer | Python allocations, peak, one answer |",
        "|---|---|---|---|",
        f"| botocore `QueryParser` (today) | {ms(b)} | {b['median_s'] * 1000 / res['calls']:.1f} ms | "
        f"{b['peak_bytes_one_answer'] / 1e6:.1f} MB |",
        f"| `cloudwatch_parse.parse` | {ms(f)} | {f['median_s'] * 1000 / res['calls']:.1f} ms | "
        f"{f['peak_bytes_one_answer'] / 1e6:.1f} MB |", "",
        f"{b['median_s'] / f['median_s']:.1f}× less CPU; the same answers: {'yes' if res['same_answers'] else 'NO'}.",
    ])


def main() -> int:
    from bench.replay_bench import machine

    p = argparse.ArgumentParser()
    p.add_argument("--rules", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    bodies, loaded = answers(args.rules)
    res = measure(bodies, args.rounds)
    from bench import moto_server  # noqa: F401  (loaded by answers)
    from watchdog.sources.cloudwatch_parse import scan
    from watchdog.sources.cloudwatch import fast_timestamp
    parsed = [scan(b, fast_timestamp) for b in bodies]  # every answer read by the scanner itself, not botocore
    res.update(rules=args.rules, rounds=args.rounds, calls=len(bodies), kib=sum(map(len, bodies)) / 1024,
               results=sum(len(x["MetricDataResults"]) for x in parsed), datums=loaded, machine=machine(),
               datapoints=sum(len(r["Values"]) for x in parsed for r in x["MetricDataResults"]))
    text = table(res)
    print(text)
    if not args.no_write:
        (ROOT / "bench" / "results-parse.json").write_text(json.dumps(res, indent=2) + "\n")
        write_block(BEGIN, END, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
