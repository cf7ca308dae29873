"""`replay` over a week of 1-minute data for 100 rules: the first run (fetch, cost, replay) and a second
with another threshold (all from the cache), timed as a user runs them.

    .venv/bin/python -m bench.replay_bench [--rules 100] [--days 7] [--no-write]

The CloudWatch endpoint is a synthetic one in this process (`Synthetic` below), not moto: moto's
GetMetricData scans every datum for every period of every query (a 1 008-period window over 1 008 datums
per metric is a million comparisons per query), so a week of 100 metrics would take it hours. The
synthetic endpoint speaks the same query protocol, answers each MetricStat query with one value per
period (rule r0 is slow for 4 minutes a day, cured by level 1; the others never), and counts every call and query.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "bench" / "results"
BEGIN, END = "<!-- replay-bench:begin -->", "<!-- replay-bench:end -->"


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
                minute = int(t.timestamp()) // 60
                slow = rule == "r0" and minute % 1440 in range(600, 604)  # 4 minutes a day: cured at level 1
                values.append(2000.0 if slow else 100.0 + (minute * 7 + len(rule)) % 50)
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
    synth = Synthetic()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", synth.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    endpoint = f"http://127.0.0.1:{runner.addresses[0][1]}"
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    start = end - timedelta(days=args.days)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    runs = []
    try:
        for label, threshold in (("first run (fetch + replay)", 1500), ("second run, threshold > 1800 (cache)", 1800)):
            path = SCRATCH / f"replay-{threshold}.yaml"
            path.write_text(config(endpoint, args.rules, threshold, SCRATCH / "state" / "w.db"))
            calls0, queries0 = synth.calls, synth.queries
            t0 = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "watchdog", "replay", "-c", str(path), "--from", start.isoformat(),
                "--to", end.isoformat(), "--cache", str(cache), "--yes", "--json", env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate()
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"replay failed ({proc.returncode}): {err.decode()[-2000:]}")
            doc = json.loads(out)
            cost = next((ln for ln in err.decode().splitlines() if ln.startswith("cost:")), "")
            runs.append({"run": label, "wall_s": round(wall, 2), "calls": synth.calls - calls0,
                         "queries": synth.queries - queries0, "incidents": len(doc["incidents"]),
                         "polls": sum(doc["polls"].values()), "cost_line": cost})
    finally:
        await runner.cleanup()
    return {"rules": args.rules, "days": args.days, "from": start.isoformat(), "to": end.isoformat(),
            "machine": machine(), "runs": runs}


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
    rows = [f"`replay` over {res['days']} days of 1-minute data for {res['rules']} rules ({res['machine']}):", "",
            "| run | wall | GetMetricData calls | metrics requested | polls replayed | would-be incidents |",
            "|---|---|---|---|---|---|"]
    for r in res["runs"]:  # type: ignore[attr-defined]
        rows.append(f"| {r['run']} | {r['wall_s']} s | {r['calls']} | {r['queries']} | {r['polls']} | {r['incidents']} |")
    rows += ["", "The first run printed, before fetching: " + f"`{res['runs'][0]['cost_line']}`"]  # type: ignore[index]
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rules", type=int, default=100)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    res = asyncio.run(run(args))
    text = table(res)
    print(text)
    if not args.no_write:
        (ROOT / "bench" / "results-replay.json").write_text(json.dumps(res, indent=2) + "\n")
        readme = ROOT / "bench" / "README.md"
        doc = readme.read_text()
        block = f"{BEGIN}\n{text}\n{END}"
        doc = doc[:doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):] if BEGIN in doc else doc + "\n" + block + "\n"
        readme.write_text(doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
