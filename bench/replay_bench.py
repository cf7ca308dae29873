"""`replay` over a week of 1-minute data for 100 rules: the first run (fetch, cost, replay) and a second
with another threshold (all from the cache), timed as a user runs them.

    .venv/bin/python -m bench.replay_bench [--moto] [--rules 100] [--days 7] [--no-write]

With --moto (`make bench-replay`) the endpoint is moto in its own process (bench/moto_server.py, its
GetMetricData made linear), loaded with every datum first, behind the recording proxy (bench/proxy.py),
which counts the calls. Without, it is a synthetic CloudWatch in this process (`Synthetic` below): the
same query protocol and the same values (`value`), no loading. Either way rule r0 is slow for 4 minutes
a day (cured by level 1) and the others never.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import yaml
from aiohttp import web

from bench.procs import daemon_python
from bench.report import write_block

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "bench" / "results"
BEGIN, END = "<!-- replay-bench:begin -->", "<!-- replay-bench:end -->"


def value(rule: str, minute: int) -> float:
    """Rule r0 is slow for 4 minutes a day (cured by level 1); the others never."""
    slow = rule == "r0" and minute % 1440 in range(600, 604)
    return 2000.0 if slow else 100.0 + (minute * 7 + len(rule)) % 50


def load_moto(url: str, rules: int, start: datetime, end: datetime) -> float:
    """Every rule's 1-minute datums from `start` to `end` into moto, 1 000 a call; the seconds it took."""
    import boto3
    from concurrent.futures import ThreadPoolExecutor

    cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=url, aws_access_key_id="bench",
                      aws_secret_access_key="bench")
    first, last = int(start.timestamp()) // 60, int(end.timestamp()) // 60
    batches = []
    for i in range(rules):
        rule = f"r{i}"
        data = [{"MetricName": "Latency", "Dimensions": [{"Name": "Rule", "Value": rule}], "Value": value(rule, m),
                 "Timestamp": datetime.fromtimestamp(m * 60 + 5, timezone.utc)} for m in range(first, last)]
        batches += [data[k:k + 1000] for k in range(0, len(data), 1000)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda b: cw.put_metric_data(Namespace="Bench", MetricData=b), batches))
    return time.perf_counter() - t0


class Synthetic:
    def __init__(self) -> None:
        self.calls = 0
        self.queries = 0

    async def handle(self, request: web.Request) -> web.Response:
        form = parse_qs((await request.read()).decode(), keep_blank_values=True)
        if form.get("Action") != ["GetMetricData"]:
            return web.Response(status=400, text="only GetMetricData here")
        self.calls += 1
        start = datetime.fromisoformat(form["StartTime"][0].replace("Z", "+00:00"))
        end = datetime.fromisoformat(form["EndTime"][0].replace("Z", "+00:00"))
        members: dict[str, dict[str, str]] = {}
        for key, values in form.items():
            if key.startswith("MetricDataQueries.member."):
                n, _, rest = key[len("MetricDataQueries.member."):].partition(".")
                members.setdefault(n, {})[rest] = values[0]
        out = []
        for q in members.values():
            self.queries += 1
            rule = next((v for k, v in q.items() if k.endswith(".Value")), "r0")
            period = int(q["MetricStat.Period"])
            t = start
            stamps, values = [], []
            while t < end:
                values.append(value(rule, int(t.timestamp()) // 60))
                stamps.append(t.strftime("%Y-%m-%dT%H:%M:%SZ"))
                t += timedelta(seconds=period)
            out.append(f"<member><Id>{escape(q['Id'])}</Id><Label>{escape(q['Id'])}</Label>"
                       "<StatusCode>Complete</StatusCode><Timestamps>"
                       + "".join(f"<member>{s}</member>" for s in stamps) + "</Timestamps><Values>"
                       + "".join(f"<member>{v!r}</member>" for v in values) + "</Values></member>")
        body = ('<GetMetricDataResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/"><GetMetricDataResult>'
                f"<MetricDataResults>{''.join(out)}</MetricDataResults><Messages/></GetMetricDataResult>"
                "<ResponseMetadata><RequestId>bench</RequestId></ResponseMetadata></GetMetricDataResponse>")
        return web.Response(body=body.encode(), content_type="text/xml")


def config(endpoint: str, rules: int, threshold: int, state: Path) -> str:
    rs = [{"name": f"r{i}", "category": "performance", "source": "cloudwatch", "threshold": f"> {threshold}",
           "datapoints_to_alarm": 3, "evaluation_periods": 3,
           "metric": {"namespace": "Bench", "name": "Latency", "dimensions": {"Rule": f"r{i}"}, "stat": "Maximum",
                      "period": "60s"}} for i in range(rules)]
    targets = [{"name": f"t{k}", "rules": rs[k::4], "escalation": {"verify_window": "3m"},
                "levels": [{"level": 1, "name": "flags", "deadline": "2m",
                            "actions": [{"type": "http", "url": "http://127.0.0.1:9/flags"}]}]} for k in range(4)]
    return yaml.safe_dump({"watchdog": {"state_path": str(state)}, "aws": {"region": "us-east-1", "endpoint_url": endpoint},
                           "sources": [{"name": "cloudwatch", "type": "cloudwatch", "interval": "60s"}],
                           "targets": [t for t in targets if t["rules"]]})


async def run(args: argparse.Namespace) -> dict[str, object]:
    SCRATCH.mkdir(parents=True, exist_ok=True)
    cache = SCRATCH / "replay-cache.db"
    cache.unlink(missing_ok=True)
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    start = end - timedelta(days=args.days)
    synth = Synthetic()
    moto = proxy = None
    loaded = None
    if args.moto:
        from bench.proxy import RecordingProxy
        from bench.run import Moto

        moto = Moto()
        moto.start()
        loaded = load_moto(moto.url, args.rules, start - timedelta(minutes=30), end)
        proxy = await RecordingProxy(moto.url).start()
        endpoint = proxy.url
        runner = None
    else:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", synth.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        endpoint = f"http://127.0.0.1:{runner.addresses[0][1]}"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    runs = []
    try:
        cached = [(f"second run, threshold > 1800 (cache){f' #{k + 1}' if args.repeat > 1 else ''}", 1800)
                  for k in range(args.repeat)]
        for label, threshold in [("first run (fetch + replay)", 1500), *cached]:
            path = SCRATCH / f"replay-{threshold}.yaml"
            path.write_text(config(endpoint, args.rules, threshold, SCRATCH / "state" / "w.db"))
            calls0, queries0 = counts(synth, proxy)
            cpu0 = _children_cpu()
            t0 = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                daemon_python(), "-m", "watchdog", "replay", "-c", str(path), "--from", start.isoformat(),
                "--to", end.isoformat(), "--cache", str(cache), "--yes", "--json", env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate()
            wall = time.perf_counter() - t0
            cpu = _children_cpu() - cpu0  # the replay's own CPU: on a shared machine its wall moves with the load
            if proc.returncode != 0:
                raise SystemExit(f"replay failed ({proc.returncode}): {err.decode()[-2000:]}")
            doc = json.loads(out)
            cost = next((ln for ln in err.decode().splitlines() if ln.startswith("cost:")), "")
            calls1, queries1 = counts(synth, proxy)
            runs.append({"run": label, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "calls": calls1 - calls0,
                         "queries": queries1 - queries0, "incidents": len(doc["incidents"]),
                         "polls": sum(doc["polls"].values()), "cost_line": cost})
    finally:
        if runner is not None:
            await runner.cleanup()
        if proxy is not None:
            await proxy.stop()
        if moto is not None:
            moto.stop()
    return {"rules": args.rules, "days": args.days, "from": start.isoformat(), "to": end.isoformat(),
            "endpoint": "moto" if args.moto else "synthetic", "moto_load_s": loaded,
            "machine": machine(), "runs": runs}


def _children_cpu() -> float:
    """User and system seconds of the replays run so far (the children this process waited for)."""
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def counts(synth: Synthetic, proxy: object) -> tuple[int, int]:
    if proxy is None:
        return synth.calls, synth.queries
    calls = proxy.calls  # type: ignore[attr-defined]
    return len(calls), sum(c.queries for c in calls)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()}"


def table(res: dict[str, object]) -> str:
    where = ("moto (bench/moto_server.py), counted by the recording proxy (bench/proxy.py); loading the "
             f"datums took {res['moto_load_s']:.0f} s" if res["endpoint"] == "moto" else "the synthetic endpoint")
    rows = [f"`replay` over {res['days']} days of 1-minute data for {res['rules']} rules against {where} "
            f"({res['machine']}):", "",
            "| run | wall | CPU | GetMetricData calls | metrics requested | polls replayed | would-be incidents |",
            "|---|---|---|---|---|---|---|"]
    for r in res["runs"]:  # type: ignore[attr-defined]
        rows.append(f"| {r['run']} | {r['wall_s']} s | {r.get('cpu_s', '-')} s | {r['calls']} | {r['queries']} | {r['polls']} | {r['incidents']} |")
    again = res["runs"][1:]  # type: ignore[index]
    if len(again) > 1:
        rows += ["", f"From the cache, {len(again)} runs: wall {spread([r['wall_s'] for r in again])} s, "
                 f"CPU {spread([r.get('cpu_s', 0.0) for r in again])} s (median [min–max])."]
    rows += ["", "The first run printed, before fetching: " + f"`{res['runs'][0]['cost_line']}`"]  # type: ignore[index]
    return "\n".join(rows)


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} [{min(xs):.2f}–{max(xs):.2f}]"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rules", type=int, default=100)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--repeat", type=int, default=1, help="run the second replay (all from the cache) this many times")
    p.add_argument("--json", help="also write the result to this file (with --no-write: another commit's run)")
    p.add_argument("--moto", action="store_true", help="against moto (loaded with every datum first) through the "
                   "recording proxy, instead of the synthetic endpoint")
    args = p.parse_args()
    res = asyncio.run(run(args))
    text = table(res)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    if not args.no_write:
        (ROOT / "bench" / "results-replay.json").write_text(json.dumps(res, indent=2) + "\n")
        write_block(BEGIN, END, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
