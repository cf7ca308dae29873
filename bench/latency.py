"""Detection latency, end to end: `python -m bench.latency` (what `make bench-latency` runs).

The time from the first breaching datapoint's timestamp to the level 1 request arriving at the admin API,
with the real daemon (`python -m watchdog run -c CONFIG`, no shim) against moto in server mode, one moto,
one admin stub and one daemon per run. A publisher (this process) writes the rule's metric every second or
five, each datapoint when its timestamp comes, quiet until the breach starts at a known time; the admin stub
(this process) notes when level 1's request arrives. Theory per scenario and per run: bench/latency_world.py.

Two lanes run side by side: the 60 s-period scenarios all at once (they mostly wait), and the 10 s and
pushed runs one after the other. Results: bench/results-latency.json and the table in bench/README.md
between its markers.

    python -m bench.latency                       # everything, about 12 minutes
    python -m bench.latency --only aligned-10s,pushed --runs 2 --no-write
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3

from bench import run
from bench.admin import AdminStub
from bench.latency_world import SCENARIOS, Publisher, Scenario, config_text, expected_read, state_change
from bench.procs import Daemon
from bench.report import write_block

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "results" / "latency"  # scratch (git-ignored): configs, state files, daemon logs
README = ROOT / "bench" / "README.md"
MARK = ("<!-- bench:latency:results:start -->", "<!-- bench:latency:results:end -->")
AWS_ENV = run.AWS_ENV
REGION = "eu-west-1"
GRACE_S = 60  # how long past its worst case a run waits for level 1 before it counts as missed


def log(msg: str) -> None:
    print(f"[latency {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Moto(run.Moto):
    """moto in server mode (bench/moto_server.py) in a process of its own, its port in a file of this run's."""

    def __init__(self, where: Path):
        super().__init__()
        self.where = where

    async def launch(self) -> Moto:
        portfile = self.where / "moto.port"
        portfile.unlink(missing_ok=True)
        with open(self.where / "moto.log", "wb") as logf:
            self.proc = subprocess.Popen([sys.executable, "-m", "bench.moto_server", str(portfile)], cwd=ROOT,
                                         stdout=logf, stderr=subprocess.STDOUT, env={**os.environ, **AWS_ENV})
        deadline = time.monotonic() + 90
        while not portfile.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto did not start; see {self.where / 'moto.log'}")
            await asyncio.sleep(0.05)
        self.url = f"http://127.0.0.1:{portfile.read_text().strip()}"
        return self


def wall(monotonic_at: float) -> float:
    """A time.monotonic() instant of this process as wall time (the datapoints' clock)."""
    return monotonic_at + (time.time() - time.monotonic())


def logged(line: dict[str, Any]) -> float:
    """The wall time of a daemon log line (its `ts`, UTC)."""
    return datetime.fromisoformat(str(line["ts"]).replace("Z", "+00:00")).timestamp()


async def level_one(admin: AdminStub, by: float) -> float | None:
    """Wall time of level 1's request at the admin stub, waiting until the wall time `by`."""
    while time.time() < by:
        hit = admin.first("/svc/l1")
        if hit is not None:
            return wall(hit)
        await asyncio.sleep(0.02)
    return None


def daemon_for(s: Scenario, cfg: Path, old: Path) -> Daemon:
    env = {**os.environ, **AWS_ENV}
    if s.kind == "interval":  # the commit before issue 22, in its own clone and venv
        return Daemon([str(old / ".venv" / "bin" / "python"), "-m", "watchdog", "run", "-c", str(cfg)], env, str(old))
    return Daemon.plain(str(cfg), str(ROOT), env)


async def one_run(s: Scenario, i: int, old: Path) -> dict[str, Any]:
    where = WORK / f"{s.key}-{i}"
    where.mkdir(parents=True, exist_ok=True)
    for stale in where.glob("watchdog.db*"):
        stale.unlink()
    moto = await Moto(where).launch()
    admin = await AdminStub().start()
    daemon: Daemon | None = None
    publishing: asyncio.Task[None] | None = None
    out: dict[str, Any] = {"scenario": s.key, "run": i}
    try:
        cw = boto3.client("cloudwatch", region_name=REGION, endpoint_url=moto.url)
        metric, alarm, queue = f"Lat{s.key.replace('-', '')}{i}", f"lat-{s.key}-{i}", None
        pub = Publisher(cw, metric, s.step, s.period < 60)
        if s.kind == "pushed":
            sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto.url)
            await asyncio.to_thread(cw.put_metric_alarm, AlarmName=alarm, Namespace="Bench/Latency",
                                    MetricName=metric, Statistic="Maximum", Period=60, EvaluationPeriods=1,
                                    Threshold=500.0, ComparisonOperator="GreaterThanThreshold")
            queue = (await asyncio.to_thread(sqs.create_queue, QueueName="alarm-events",
                                             Attributes={"VisibilityTimeout": "30"}))["QueueUrl"]
        else:
            await pub.backfill((s.m + 4) * s.period)
            publishing = asyncio.create_task(pub.run())
        cfg = where / "config.yaml"
        cfg.write_text(config_text(s, endpoint=moto.url, region=REGION, admin=admin.url,
                                   state_path=where / "watchdog.db", metric=metric, queue_url=queue, alarm=alarm))
        daemon = await daemon_for(s, cfg, old).start()
        await daemon.port()  # `started`: the first poll (every query at once) is under way
        first_poll = logged(daemon.events("started")[0])
        await asyncio.sleep(3)
        if s.kind == "pushed":
            # The send lands at a different moment of the queue's 20 s long poll in each run.
            await asyncio.sleep(1 + i * 19 / max(1, s.runs))
            t0 = time.time()
            await asyncio.to_thread(cw.set_alarm_state, AlarmName=alarm, StateValue="ALARM", StateReason="bench")
            await asyncio.to_thread(sqs.send_message, QueueUrl=queue,
                                    MessageBody=state_change(alarm, datetime.now(timezone.utc), REGION))
        else:
            t0 = s.breach_start(i, time.time() + 3)
            pub.breach_at = t0
        out["t0"] = t0
        out["expected"] = expected_read(s, t0, first_poll)
        arrived = await level_one(admin, t0 + s.worst() + GRACE_S)
        out["arrived"] = arrived
        out["latency"] = None if arrived is None else arrived - t0
        out["beyond"] = None if arrived is None else arrived - out["expected"]
        out["publish_errors"] = pub.errors
        heard = daemon.events("alarm_event_received")
        if heard and arrived is not None:  # pushed: the send -> the daemon has the event -> level 1's request
            out["received"] = logged(heard[0])
        log(f"{s.key} run {i}: " + ("no level 1 request" if arrived is None else
                                    f"{arrived - t0:.2f} s (theory for this start {out['expected'] - t0:.0f} s)"))
    finally:
        if publishing is not None:
            publishing.cancel()
        if daemon is not None:
            await daemon.stop()
            (where / "daemon.log").write_text("\n".join(json.dumps(ln) for ln in daemon.lines) + "\n")
        await admin.stop()
        moto.stop()
    return out


async def lanes(scenarios: list[Scenario], old: Path) -> list[dict[str, Any]]:
    async def long_lane() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(one_run(s, i, old) for s in scenarios if s.lane == "long"
                                           for i in range(s.runs))))

    async def short_lane() -> list[dict[str, Any]]:
        return [await one_run(s, i, old) for s in scenarios if s.lane == "short" for i in range(s.runs)]

    a, b = await asyncio.gather(long_lane(), short_lane())
    return a + b


# --- the report ----------------------------------------------------------------------------------


def spread(xs: list[float], scale: float = 1.0, digits: int = 1) -> str:
    if not xs:
        return "–"
    m, lo, hi = (x * scale for x in (statistics.median(xs), min(xs), max(xs)))
    return f"{m:.{digits}f} [{lo:.{digits}f}–{hi:.{digits}f}]"


def agrees(s: Scenario) -> str:
    """The hand-derived worst case against the daemon's own `detection_delay` (aligned schedules only)."""
    if s.kind not in ("aligned", "read_every"):
        return ""
    from watchdog.core.schedule import detection_delay

    product = detection_delay(timedelta(seconds=s.period), s.m, timedelta(seconds=s.settle),
                              timedelta(seconds=s.read_every) if s.read_every else None).total_seconds()
    return "" if product == s.worst() else f" (detection_delay says {product:.0f} s!)"


def table(scenarios: list[Scenario], runs: list[dict[str, Any]]) -> list[str]:
    rows = ["| scenario | period | M | theory, worst case | theory for these runs' breach starts | "
            "measured: first breaching datapoint → level 1 request, s | beyond this run's theory, ms | runs |",
            "|---|---|---|---|---|---|---|---|"]
    for s in scenarios:
        mine = [r for r in runs if r["scenario"] == s.key]
        done = [r for r in mine if r["latency"] is not None]
        theory = [r["expected"] - r["t0"] for r in mine]
        this = f"{min(theory):.0f}–{max(theory):.0f} s" if theory else "–"
        if s.kind == "pushed":
            got = [r for r in done if "received" in r]
            this = ("0 s + the daemon's work: the send → the event received "
                    f"{spread([r['received'] - r['t0'] for r in got], 1000, 0)} ms, → level 1's request "
                    f"{spread([r['arrived'] - r['received'] for r in got], 1000, 0)} ms")
        period = f"{s.period} s" if s.period else "(the alarm's)"
        missed = len(mine) - len(done)
        worst = s.formula() if s.kind == "pushed" else f"{s.worst()} s: {s.formula()}"
        rows.append(f"| {s.title} | {period} | {s.m if s.kind != 'pushed' else '–'} | {worst}"
                    f"{agrees(s)} | {this} | {spread([r['latency'] for r in done], 1, 2)} | "
                    f"{spread([r['beyond'] for r in done], 1000, 0)} | {len(done)}{f' ({missed} missed)' if missed else ''} |")
    return rows


def write_readme(text: str) -> bool:
    body = README.read_text()
    start, end = body.find(MARK[0]), body.find(MARK[1])
    if start < 0 or end < start:
        return False
    write_block(*MARK, text)
    return True


def report(results: dict[str, Any], scenarios: list[Scenario]) -> str:
    m = results["machine"]
    lines = [
        f"- Machine: {m['nproc']} cores, {m['cpu_model']}; Python {m['python']}; moto {results['moto']}.",
        f"- Load average at start / end: {', '.join(f'{x:.2f}' for x in m['load_start'])} / "
        f"{', '.join(f'{x:.2f}' for x in m['load_end'])} (other helpers' work shares the 2 cores).",
        f"- Daemon code: commit {results['commit']} (`python -m watchdog run`)"
        + (f", with {results['uncommitted']} file(s) of `watchdog/` changed in the working tree (others' work in "
           "progress)" if results["uncommitted"] else "")
        + f"; the fixed interval: commit {results['old_commit']} from its own clone and venv.",
        f"- Run started {results['started']}, took {results['seconds']:.0f} s (`make bench-latency`).",
        "",
        *table(scenarios, results["runs"]),
    ]
    return "\n".join(lines)


def git(args: list[str], cwd: Path) -> str:
    r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated scenario keys: " + ", ".join(s.key for s in SCENARIOS))
    ap.add_argument("--runs", type=int, help="runs per scenario (default: each scenario's own)")
    ap.add_argument("--old", default="/tmp/bench-old", help="a clone of the commit before issue 22 with its .venv")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results-latency.json"))
    ap.add_argument("--no-write", action="store_true", help="print the table; leave README and JSON alone")
    args = ap.parse_args()
    for key, value in AWS_ENV.items():  # this process's own clients (publisher, alarms, queue) talk to moto too
        os.environ.setdefault(key, value)
    old = Path(args.old)
    scenarios = [s for s in SCENARIOS if not args.only or s.key in args.only.split(",")]
    if not (old / ".venv" / "bin" / "python").exists():
        log(f"no {old}/.venv: the fixed-interval scenario is left out")
        scenarios = [s for s in scenarios if s.kind != "interval"]
    if args.runs:
        scenarios = [Scenario(**{**s.__dict__, "runs": args.runs}) for s in scenarios]
    from importlib.metadata import version

    WORK.mkdir(parents=True, exist_ok=True)
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    results: dict[str, Any] = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "moto": version("moto"),
        "commit": git(["rev-parse", "--short", "HEAD"], ROOT),
        "uncommitted": len(git(["status", "--porcelain", "--", "watchdog", "pyproject.toml"], ROOT).splitlines()),
        "old_commit": git(["rev-parse", "--short", "HEAD"], old),
        "machine": {"nproc": os.cpu_count(), "cpu_model": cpu, "python": sys.version.split()[0],
                    "load_start": os.getloadavg()},
    }
    t = time.monotonic()
    results["runs"] = asyncio.run(lanes(scenarios, old))
    results["seconds"] = time.monotonic() - t
    results["machine"]["load_end"] = os.getloadavg()
    text = report(results, scenarios)
    print(text)
    if not args.no_write:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
        if not write_readme(text):
            log(f"no {MARK[0]} in bench/README.md: the table is printed only")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
