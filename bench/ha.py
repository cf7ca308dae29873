"""`make bench-ha`: two watchdogs on one shared DynamoDB table, killed and restarted in turn (issue 24's soak).

    python -m bench.ha [--minutes 30] [--targets 10] [--every 120]

Two real daemons (`python -m watchdog run`, instance ids w-a and w-b) share one table in a moto server of their
own, each reaching it through a proxy of its own that counts its DynamoDB calls, in front of one that passes
requests on one at a time (moto's server does not isolate concurrent requests to one item as DynamoDB does).
10 targets, each with its own metric, polled every second with 1 s periods; a 5 s lease (a round every 1.7 s).

Every `--every` seconds a cycle: the victim (w-a and w-b in turn) is found holding some idle target; that
target's metric starts to breach; after a random 0 to 3 s the victim is killed (kill -9), so that it dies before
it noticed, while it decided, or while it acted; 10 s later it is started again. The breach heals at the first
action request any watchdog sends for it, and the incident is then resolved through its holder's API. Counted:
- each breach's action requests per level (a duplicate is a second request for one level of one breach);
- the time from the victim's death to the first action request for its target, beside lease + one round;
- takeovers (`lease_acquired` with `took_from`) and fenced requests;
- each watchdog's DynamoDB calls, per lease round while nothing happens and per action taken;
and at the end `incidents verify-log` on the table. Results: bench/results/ha.json, and a summary on stdout
for bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import aiohttp
import boto3
from aiohttp import web

from bench.admin import AdminStub, serve
from bench.procs import Daemon
from bench.run import AWS_ENV, ROOT, WORK, Moto, machine

LEASE, POLL = 5.0, 1.0
ROUND = LEASE / 3
TABLE = "bench-ha"
TOKEN = "bench-ha-token"
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"}
PRICE_WRITE, PRICE_READ = 0.625e-6, 0.125e-6  # on-demand, us-east-1, per request unit (December 2024)


class Proxy:
    """Counts each DynamoDB operation by name (X-Amz-Target) and passes the request on, through `lock` if given."""

    def __init__(self, upstream: str, lock: asyncio.Lock | None):
        self.upstream, self.lock = upstream, lock
        self.ops: Counter[str] = Counter()
        self.timeline: list[tuple[float, str]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self, http: aiohttp.ClientSession) -> "Proxy":
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            target = request.headers.get("X-Amz-Target", "")
            if target.startswith("DynamoDB_"):
                op = target.rsplit(".", 1)[-1]
                self.ops[op] += 1
                self.timeline.append((time.monotonic(), op))
            headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
            async with self.lock if self.lock else _nothing():
                async with http.request(request.method, self.upstream + request.path_qs, data=body,
                                        headers=headers) as r:
                    answer, status = await r.read(), r.status
                    kept = {k: v for k, v in r.headers.items() if k.lower() not in (
                        "content-length", "transfer-encoding", "connection", "content-encoding", "date", "server")}
            return web.Response(body=answer, status=status, headers=kept)

        self._runner, self.url = await serve(handle, client_max_size=64 * 1024 * 1024)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class _nothing:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


def config(me: str, endpoint: str, admin: str, targets: int) -> str:
    rules_targets = []
    for i in range(targets):
        name = f"t{i:02d}"
        levels = "\n".join(
            f"      - {{level: {lv}, name: l{lv}, deadline: 10s, actions: [{{type: http, method: PUT, "
            f"url: '{admin}/{me}/{name}/l{lv}', timeout: 5s, retry: {{attempts: 1}}}}]}}" for lv in (1, 2))
        rules_targets.append(f"""  - name: {name}
    escalation: {{verify_window: 5s, max_rollbacks_per_hour: 100}}
    rules:
      - {{name: latency, category: performance, source: cloudwatch, threshold: "> 1500", datapoints_to_alarm: 2,
         evaluation_periods: 3,
         metric: {{namespace: BenchHa, name: Latency, dimensions: {{Target: {name}}}, stat: Average, period: 1s}}}}
    levels:
{levels}""")
    return f"""watchdog:
  listen: 127.0.0.1:0
  instance_id: {me}
  api_token: {TOKEN}
  state: {{type: dynamodb, table: {TABLE}, lease: {LEASE:g}s}}
aws: {{region: us-east-1, endpoint_url: "{endpoint}"}}
sources:
  - {{name: cloudwatch, type: cloudwatch, interval: {POLL:g}s, timeout: 3s, retry: {{attempts: 2}}}}
targets:
""" + "\n".join(rules_targets) + "\n"


class Publisher:
    """Every target's latency, once a second: 200 ms, or 2 500 while it breaches."""

    def __init__(self, url: str, targets: int):
        self.cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=url)
        self.targets = [f"t{i:02d}" for i in range(targets)]
        self.breaching: set[str] = set()

    async def run(self) -> None:
        while True:
            now = datetime.now(timezone.utc)
            data = [{"MetricName": "Latency", "Dimensions": [{"Name": "Target", "Value": t}], "Timestamp": now,
                     "Value": 2500.0 if t in self.breaching else 200.0, "StorageResolution": 1} for t in self.targets]
            await asyncio.to_thread(self.cw.put_metric_data, Namespace="BenchHa", MetricData=data)
            await asyncio.sleep(1.0)


async def status(http: aiohttp.ClientSession, port: int) -> dict[str, Any]:
    async with http.get(f"http://127.0.0.1:{port}/status", timeout=aiohttp.ClientTimeout(total=5)) as r:
        return await r.json()


async def soak(minutes: float, targets: int, every: float) -> dict[str, Any]:
    """The soak, with moto stopped whatever happens (a failed run must not leave its server behind)."""
    import os

    for key, value in AWS_ENV.items():  # this process's own boto3 clients (the table, the publisher)
        os.environ.setdefault(key, value)
    WORK.mkdir(parents=True, exist_ok=True)
    moto = Moto()
    moto.start()
    try:
        return await _soak(moto, minutes, targets, every)
    finally:
        moto.stop()


async def _soak(moto: Moto, minutes: float, targets: int, every: float) -> dict[str, Any]:
    boto3.client("dynamodb", region_name="us-east-1", endpoint_url=moto.url).create_table(
        TableName=TABLE, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST")
    admin = await AdminStub().start()
    lock = asyncio.Lock()
    pub = Publisher(moto.url, targets)
    pub_task = asyncio.create_task(pub.run())
    env = {**AWS_ENV, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    names = ["w-a", "w-b"]
    cycles: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http:
        serial = await Proxy(moto.url, lock).start(http)
        proxies = {n: await Proxy(serial.url, None).start(http) for n in names}
        paths = {}
        for n in names:
            p = WORK / f"ha-{n}.yaml"
            p.write_text(config(n, proxies[n].url, admin.url, targets))
            paths[n] = str(p)
        daemons = {n: await Daemon.plain(paths[n], str(ROOT), env).start() for n in names}
        ports = {n: await daemons[n].port() for n in names}
        lines: dict[str, list[dict[str, Any]]] = {n: [] for n in names}  # every life's log lines
        started = time.monotonic()
        await asyncio.sleep(3 * LEASE)  # leases spread
        idle_from, idle_ops = time.monotonic(), {n: sum(proxies[n].ops.values()) for n in names}
        await asyncio.sleep(6 * ROUND)
        idle = {n: (sum(proxies[n].ops.values()) - idle_ops[n]) / ((time.monotonic() - idle_from) / ROUND)
                for n in names}
        idle_by_op = {n: dict(proxies[n].ops) for n in names}
        rng = random.Random(24)
        k = 0
        while time.monotonic() - started < minutes * 60 - every / 2:
            cycle_start = time.monotonic()
            victim = names[k % 2]
            k += 1
            doc = await status(http, ports[victim])
            busy = {t["name"] for t in doc["targets"] if t["phase"] != "normal"}
            mine = [t["name"] for t in doc["targets"] if t["role"] == "leader" and t["name"] not in busy]
            if not mine:
                cycles.append({"victim": victim, "skipped": "it held no idle target"})
                await asyncio.sleep(max(0.0, every - (time.monotonic() - cycle_start)))
                continue
            target = rng.choice(mine)
            hits_before = len(admin.hits)
            pub.breaching.add(target)
            await asyncio.sleep(rng.uniform(0.0, 3.0))
            daemons[victim].proc.kill()  # type: ignore[union-attr]
            died = time.monotonic()
            await daemons[victim].proc.wait()  # type: ignore[union-attr]
            lines[victim] += daemons[victim].lines
            first = None
            while time.monotonic() - died < 60:
                mine_hits = [(t, p) for t, _, p in admin.hits[hits_before:] if f"/{target}/" in p]
                if mine_hits:
                    first = mine_hits[0]
                    break
                await asyncio.sleep(0.05)
            pub.breaching.discard(target)
            await asyncio.sleep(max(0.0, 10.0 - (time.monotonic() - died)))
            daemons[victim] = await Daemon.plain(paths[victim], str(ROOT), env).start()
            ports[victim] = await daemons[victim].port()
            await asyncio.sleep(max(0.0, every / 2 - (time.monotonic() - cycle_start)))
            resolved = await resolve(http, ports, target)
            requests = Counter(p.rsplit("/", 1)[-1] for _, _, p in admin.hits[hits_before:] if f"/{target}/" in p)
            cycles.append({"victim": victim, "target": target, "died_at_s": round(died - started, 1),
                           "first_request": None if first is None else first[1],
                           "death_to_first_request_s": None if first is None else round(first[0] - died, 3),
                           "by_level": dict(requests), "resolved": resolved})
            await asyncio.sleep(max(0.0, every - (time.monotonic() - cycle_start)))
        for n in names:
            await daemons[n].stop()
            lines[n] += daemons[n].lines
        ops = {n: dict(proxies[n].ops) for n in names}
        # On a thread: the proxies it goes through run on this loop.
        verify = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "watchdog", "incidents", "verify-log", "-c", paths["w-a"]],
            capture_output=True, text=True, env={**env}, timeout=120, cwd=ROOT)
        for p in (*proxies.values(), serial):
            await p.stop()
    pub_task.cancel()
    await admin.stop()
    return summarize(cycles, lines, idle, idle_by_op, ops, verify, minutes, targets)


async def resolve(http: aiohttp.ClientSession, ports: dict[str, int], target: str) -> str:
    """Close the target's incident through whichever watchdog holds it (after it was mitigated)."""
    for _ in range(60):
        for port in ports.values():
            try:
                doc = await status(http, port)
            except (aiohttp.ClientError, TimeoutError):
                continue
            for t in doc["targets"]:
                if t["name"] == target and t["role"] == "leader" and t["incident"]:
                    if t["phase"] not in ("mitigated", "exhausted"):
                        continue
                    async with http.post(f"http://127.0.0.1:{port}/api/v1/incidents/{t['incident']['id']}/resolve",
                                         json={"note": "bench-ha"}, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                        return f"{t['phase']}, resolved: HTTP {r.status}"
        await asyncio.sleep(1.0)
    return "not mitigated within 60 s"


def reads_per_round(by_op: dict[str, dict[str, int]], idle: dict[str, float]) -> float:
    """The reads among a watchdog's idle calls per round (its total per round times the reads' share)."""
    shares = []
    for n, ops in by_op.items():
        total = sum(ops.values())
        if total:
            shares.append(idle[n] * sum(v for k, v in ops.items() if k not in WRITES) / total)
    return statistics.mean(shares) if shares else 0.0


def summarize(cycles: list[dict[str, Any]], lines: dict[str, list[dict[str, Any]]], idle: dict[str, float],
              idle_by_op: dict[str, dict[str, int]], ops: dict[str, dict[str, int]], verify: Any, minutes: float,
              targets: int) -> dict[str, Any]:
    acted = [c for c in cycles if "by_level" in c]
    duplicates = sum(max(0, n - 1) for c in acted for n in c["by_level"].values())
    # From a death to the other watchdog's first request: the cycles in which the victim had not acted yet.
    times = [c["death_to_first_request_s"] for c in acted if c["death_to_first_request_s"] is not None
             and not c["first_request"].startswith(f"/{c['victim']}/")]
    takeovers = sum(1 for n in lines for ln in lines[n] if ln.get("event") == "lease_acquired" and ln.get("took_from"))
    fenced = sum(1 for n in lines for ln in lines[n] if ln.get("event") == "fenced")
    actions = sum(sum(c["by_level"].values()) for c in acted)
    return {
        "machine": machine(), "minutes": minutes, "targets": targets, "lease_s": LEASE, "poll_s": POLL,
        "round_s": ROUND, "cycles": cycles, "breaches": len(acted),
        "breaches_acted_on": sum(1 for c in acted if c["by_level"]), "duplicate_requests": duplicates,
        "death_to_first_request_s": {"median": statistics.median(times) if times else None,
                                     "max": max(times) if times else None, "n": len(times),
                                     "lease_plus_one_poll": LEASE + POLL, "lease_plus_two_rounds": LEASE + 2 * ROUND},
        "victim_acted_before_its_death": sum(1 for c in acted if c["first_request"] and
                                             c["first_request"].startswith(f"/{c['victim']}/")),
        "takeovers": takeovers, "fenced_lines": fenced, "actions": actions,
        "dynamodb_calls_per_round_idle": {n: round(v, 2) for n, v in idle.items()},
        "cost_per_month_at_20s_lease": {t: monthly_cost(t, reads_per_round(idle_by_op, idle)) for t in (1, 10, 100)},
        "dynamodb_calls": ops, "dynamodb_calls_at_idle_sample": idle_by_op,
        "verify_log": (verify.returncode, verify.stdout.strip() or verify.stderr.strip()),
    }


def monthly_cost(targets: int, reads_per_round: float, watchdogs: int = 2, lease: float = 20.0) -> dict[str, float]:
    """What the table costs per 30 days on demand, from the calls a round makes (measured at idle): each watchdog's
    reads (Queries and GetItems; the leases' Query costs one read unit per 4 KB, about 150 bytes a lease), its
    heartbeat, and one renewal per lease (the targets split among the watchdogs). Incidents add a handful of
    writes each: nothing at incident rates."""
    rounds = 30 * 86400 / (lease / 3)
    lease_query_units = max(1.0, -(-targets * 150 // 4096))
    reads = watchdogs * (reads_per_round - 1 + lease_query_units)
    writes = watchdogs + targets
    return {"rounds_per_watchdog": rounds, "read_units": rounds * reads, "write_units": rounds * writes,
            "dollars": round(rounds * (reads * PRICE_READ + writes * PRICE_WRITE), 2)}


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ha")
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--targets", type=int, default=10)
    ap.add_argument("--every", type=float, default=120.0, help="seconds between kills")
    args = ap.parse_args()
    result = asyncio.run(soak(args.minutes, args.targets, args.every))
    out = ROOT / "bench" / "results" / "ha.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    brief = {k: v for k, v in result.items() if k not in ("cycles", "machine", "dynamodb_calls_at_idle_sample")}
    print(json.dumps(brief, indent=1, default=str))
    print(f"wrote {out}")
    return 0 if result["duplicate_requests"] == 0 and result["verify_log"][0] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
