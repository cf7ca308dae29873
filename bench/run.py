"""The benchmark: `python -m bench.run` (what `make bench` runs).

One process (this one) holds the recording proxy and the admin API stub, so
their instants share a clock; moto runs in its own process, the daemon in its
own, the baseline and the evaluation timing in theirs. Results go to
bench/results.json and, as a table, into bench/README.md between markers.

    python -m bench.run                   # everything, with a short soak (make bench)
    python -m bench.run --soak-only --soak-polls 10000   # the full soak alone (make bench-soak)
    python -m bench.run --sizes 10,100 --runs 2 --no-soak --no-write   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp

from bench import synth
from bench.admin import AdminStub
from bench.procs import Daemon, cpu_seconds, fd_count, read_poll_log, status_kb
from bench.proxy import RecordingProxy

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
# Scratch: configs, state files, logs (git-ignored). BENCH_WORK names another, so two runs at once do not share one.
WORK = Path(os.environ.get("BENCH_WORK") or BENCH / "results")
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass(frozen=True)
class Plan:
    runs: int  # daemon processes (each: steady polls, scrapes, one reaction, peak RSS)
    interval: str  # the daemon's poll interval
    warmup: int  # polls not counted (client set-up, first connections)
    polls: int  # polls measured per run
    scrapes: int  # /metrics scrapes per run
    baseline_sweeps: int
    baseline_rules: int  # rules the baseline sweeps (fewer than N: its figures are scaled to N)


PLANS = {
    10: Plan(runs=5, interval="200ms", warmup=2, polls=12, scrapes=10, baseline_sweeps=5, baseline_rules=10),
    100: Plan(runs=5, interval="400ms", warmup=2, polls=8, scrapes=10, baseline_sweeps=3, baseline_rules=100),
    1000: Plan(runs=4, interval="1800ms", warmup=1, polls=4, scrapes=10, baseline_sweeps=2, baseline_rules=1000),
    # 5 000 rules: fewer runs and polls (a poll takes seconds, the start 15 s); the baseline sweeps 500 of the
    # rules (its cost per rule does not depend on N), scaled x10
    5000: Plan(runs=3, interval="8s", warmup=1, polls=2, scrapes=10, baseline_sweeps=1, baseline_rules=500),
}
EVAL_REPEATS = {10: 400, 100: 200, 1000: 40, 5000: 15}
TARGETS = {  # issue 22's table
    "calls_per_poll": "= ceil(N/500)",
    "fewer_requests_than_per_metric_at_1000": ">= 250x",
    "evaluation_5000_ms": "< 10 ms",
    "cpu_per_poll_1000_ms": "< 25 ms",
    "reaction_5000_ms": "< 30 ms",
    "peak_rss_5000_mb": "< 110 MB",
    "soak": "no growth",
}
# The daemon reads every query at every poll, `interval` apart (bench/shim.py), on an older daemon as on a newer.
SHIM_ENV = {"BENCH_EVERY_INTERVAL": "1"}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def spread(xs: list[float]) -> dict[str, Any]:
    return {"median": med(xs), "min": min(xs) if xs else None, "max": max(xs) if xs else None, "n": len(xs),
            "values": xs}


def seconds(d: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", d)
    assert m, d
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


# --- moto and its data ---------------------------------------------------------------


class Moto:
    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.loaded: dict[int, set[datetime]] = {}
        self._client: dict[str, Any] = {}

    def start(self) -> None:
        portfile = WORK / "moto.port"
        portfile.unlink(missing_ok=True)
        logf = open(WORK / "moto.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.moto_server", str(portfile)], cwd=ROOT,
                                     stdout=logf, stderr=subprocess.STDOUT, env={**os.environ, **AWS_ENV})
        deadline = time.monotonic() + 60
        while not portfile.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto did not start; see bench/results/moto.log")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{portfile.read_text().strip()}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def client(self, region: str) -> Any:
        import boto3

        if region not in self._client:
            self._client[region] = boto3.client("cloudwatch", region_name=region, endpoint_url=self.url)
        return self._client[region]

    def ensure(self, n: int, until: datetime, region: str | None = None) -> float:
        """Data for N's rules for every minute from 5 minutes ago up to `until`; returns the seconds it took."""
        now = datetime.now(timezone.utc)
        first = synth.minute_floor(now) - timedelta(minutes=5)
        minutes = []
        m = first
        while m <= until:
            minutes.append(m)
            m += timedelta(minutes=1)
        have = self.loaded.setdefault(n, set())
        todo = [m for m in minutes if m not in have]
        if not todo:
            return 0.0
        t0 = time.monotonic()
        cw = self.client(region or synth.REGIONS[n])
        batch: list[dict] = []
        for m in todo:
            batch += synth.datums(n, [m], seed=int(m.timestamp()) // 60)
            while len(batch) >= 1000:
                cw.put_metric_data(Namespace=synth.namespace(n), MetricData=batch[:1000])
                batch = batch[1000:]
        if batch:
            cw.put_metric_data(Namespace=synth.namespace(n), MetricData=batch)
        have.update(todo)
        return time.monotonic() - t0


# --- one daemon run at one size --------------------------------------------------------


async def wait_polls(path: str, count: int, daemon: Daemon, timeout: float) -> list[tuple[float, float, float]]:
    deadline = time.monotonic() + timeout
    while True:
        polls = read_poll_log(path)
        if len(polls) >= count:
            return polls
        if daemon.proc is not None and daemon.proc.returncode is not None:
            raise RuntimeError(f"daemon exited ({daemon.proc.returncode}) after {len(polls)} polls")
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(polls)} of {count} polls within {timeout:.0f}s")
        await asyncio.sleep(0.005)


def parse_metrics(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            pass
    return out


async def one_run(n: int, run: int, plan: Plan, proxy: RecordingProxy, admin: AdminStub,
                  http: aiohttp.ClientSession) -> dict[str, Any]:
    rundir = WORK / "runs" / f"n{n}-r{run}"
    shutil.rmtree(rundir, ignore_errors=True)
    (rundir / "state").mkdir(parents=True)
    cfg = rundir / "config.yaml"
    cfg.write_text(synth.config_text(n, endpoint=proxy.url, admin=admin.url, state_path=str(rundir / "state" / "watchdog.db"),
                                     interval=plan.interval))
    poll_log = str(rundir / "polls.log")
    proxy.reset()
    admin.hits.clear()
    interval = seconds(plan.interval)
    t_launch = time.monotonic()
    d = await Daemon.shim(str(cfg), poll_log, str(ROOT), {**os.environ, **AWS_ENV, **SHIM_ENV}).start()
    out: dict[str, Any] = {"n": n, "run": run}
    try:
        port = await d.port()
        out["startup_s"] = time.monotonic() - t_launch
        budget = 60 + (plan.warmup + plan.polls + 2) * interval * 3
        await wait_polls(poll_log, plan.warmup, d, budget)
        cpu0 = cpu_seconds(d.pid)
        polls = await wait_polls(poll_log, plan.warmup + plan.polls, d, budget)
        cpu1 = cpu_seconds(d.pid)
        measured = polls[plan.warmup: plan.warmup + plan.polls]
        per_poll = []
        for s, e, tcpu in measured:
            calls = [c for c in proxy.calls if s <= c.t_in <= e]
            endpoint = sum(c.endpoint_s for c in calls)
            per_poll.append({"wall_s": e - s, "endpoint_s": endpoint, "beyond_s": (e - s) - endpoint,
                             "thread_cpu_s": tcpu, "calls": len(calls), "queries": [c.queries for c in calls]})
        out["polls"] = per_poll
        out["cpu_per_poll_s"] = (cpu1 - cpu0) / plan.polls
        out["calls_per_poll"] = sorted({p["calls"] for p in per_poll})

        # /metrics, scraped between polls (a scrape that overlaps a poll waits for it: marked, not used)
        scrapes = []
        first = b""  # right after a poll ended: its counters are between polls
        for _ in range(plan.scrapes):
            t0 = time.monotonic()
            async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                body = await r.read()
            scrapes.append((t0, time.monotonic()))
            first = first or body
        out["metrics_bytes"] = len(first)
        m = parse_metrics(first.decode())
        polls_count = m.get('watchdog_source_poll_duration_seconds_count{source="cw"}', 0.0)
        out["daemon_counters"] = {
            "polls": polls_count,
            "cloudwatch_requests_total": m.get("watchdog_cloudwatch_requests_total"),
            "cloudwatch_metrics_requested_total": m.get("watchdog_cloudwatch_metrics_requested_total"),
        }

        # reaction: the last rule (last target, last call of the poll) breaches from now on
        last = synth.rules(n)[-1]
        proxy.arm_breach(f"q{n - 1}")
        path = f"/admin/{last.target}/feature-flags"
        deadline = time.monotonic() + 30 + 4 * interval
        while admin.first(path) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        hit = admin.first(path)
        if hit is None or proxy.breach_at is None:
            raise RuntimeError(f"no level 1 request for {last.target} (breach answered: {proxy.breach_at is not None})")
        out["reaction_s"] = hit - proxy.breach_at
        await asyncio.sleep(0.3)  # let the level's outcome be written
        # Which poll handed the breach over, and where the time went: the rest of that poll (parsing the
        # answer, evaluating every target) and then the level's start up to the request arriving.
        polls_now = read_poll_log(poll_log)  # now also the poll after the scrapes, which one might have overlapped
        clean = [b - a for a, b in scrapes if not any(s < b and a < e for s, e, _ in polls_now)]
        out["scrape_s"] = clean
        out["scrape_overlapping"] = len(scrapes) - len(clean)
        owner = [(s, e) for s, e, _ in polls_now if s <= proxy.breach_at <= e]
        if owner:
            out["reaction_poll_part_s"] = owner[0][1] - proxy.breach_at
            out["reaction_action_part_s"] = hit - owner[0][1]
        out["incident_opened"] = len(d.events("incident_opened"))
        out["vm_hwm_kb"] = status_kb(d.pid, "VmHWM")
        out["vm_rss_kb"] = status_kb(d.pid, "VmRSS")
        out["fds"] = fd_count(d.pid)
        out["log_warnings"] = sorted({str(ln.get("event"))[:80] for ln in d.lines if ln.get("log_level") in ("warning", "error")
                                      and ln.get("event") not in ("incident_opened", "level_started")})
    finally:
        rc = await d.stop()
        out["exit_code"] = rc
    return out


def summarize_size(n: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    per_run = lambda key: [statistics.fmean(p[key] for p in r["polls"]) for r in runs]  # noqa: E731
    return {
        "n": n,
        "targets": len(synth.target_names(n)),
        "expected_calls_per_poll": math.ceil(n / 500),
        "calls_per_poll_seen": sorted({c for r in runs for c in r["calls_per_poll"]}),
        # the daemon's own count: watchdog_cloudwatch_requests_total / polls (from its poll-duration histogram)
        "daemon_counter_calls_per_poll": sorted({round(r["daemon_counters"]["cloudwatch_requests_total"]
                                                       / r["daemon_counters"]["polls"], 3)
                                                 for r in runs if r["daemon_counters"].get("polls")}),
        "max_queries_per_call": max(q for r in runs for p in r["polls"] for q in p["queries"]),
        "cpu_per_poll_s": spread([r["cpu_per_poll_s"] for r in runs]),
        "thread_cpu_per_poll_s": spread(per_run("thread_cpu_s")),
        "wall_per_poll_s": spread(per_run("wall_s")),
        "endpoint_per_poll_s": spread(per_run("endpoint_s")),
        "beyond_endpoint_per_poll_s": spread(per_run("beyond_s")),
        "reaction_s": spread([r["reaction_s"] for r in runs]),
        "reaction_poll_part_s": spread([r["reaction_poll_part_s"] for r in runs if "reaction_poll_part_s" in r]),
        "reaction_action_part_s": spread([r["reaction_action_part_s"] for r in runs if "reaction_action_part_s" in r]),
        "peak_rss_mb": spread([r["vm_hwm_kb"] / 1024 for r in runs]),
        "rss_end_mb": spread([r["vm_rss_kb"] / 1024 for r in runs]),
        "scrape_s": spread([med(r["scrape_s"]) for r in runs if r["scrape_s"]]),
        "metrics_bytes": runs[-1]["metrics_bytes"],
        "startup_s": spread([r["startup_s"] for r in runs]),
        "runs": runs,
    }


# --- the baseline ----------------------------------------------------------------------


async def baseline(n: int, sweeps: int, limit: int, proxy: RecordingProxy) -> dict[str, Any]:
    spec = WORK / f"baseline-{n}.json"
    spec.write_text(json.dumps({"endpoint": proxy.url, "region": synth.REGIONS[n], "n": n, "sweeps": sweeps,
                                "limit": limit}))
    scale = n / limit
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.baseline", str(spec), cwd=str(ROOT), env={**os.environ, **AWS_ENV},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout and proc.stdin
    ready = await asyncio.wait_for(proc.stdout.readline(), 120)
    if not ready:
        raise RuntimeError("baseline did not start: " + (await proc.stderr.read()).decode()[-2000:])  # type: ignore[union-attr]
    proxy.reset()
    proc.stdin.write(b"go\n")
    await proc.stdin.drain()
    line = await proc.stdout.readline()
    await proc.wait()
    if not line:
        raise RuntimeError("baseline failed: " + (await proc.stderr.read()).decode()[-2000:])  # type: ignore[union-attr]
    result = json.loads(line)
    out = []
    for sw in result["sweeps"]:
        calls = [c for c in proxy.calls if sw["t0"] <= c.t_in <= sw["t1"]]
        endpoint = sum(c.endpoint_s for c in calls)
        out.append({"measured": {**sw, "calls": len(calls), "endpoint_s": endpoint},
                    "calls": round(len(calls) * scale), "wall_s": sw["wall_s"] * scale, "cpu_s": sw["cpu_s"] * scale,
                    "endpoint_s": endpoint * scale, "beyond_s": (sw["wall_s"] - endpoint) * scale})
    return {
        "n": n,
        "rules_swept": limit,
        "scaled_by": scale,
        "sweeps": out,
        "calls_per_sweep": sorted({s["calls"] for s in out}),
        "wall_s": spread([s["wall_s"] for s in out]),
        "cpu_s": spread([s["cpu_s"] for s in out]),
        "endpoint_s": spread([s["endpoint_s"] for s in out]),
        "beyond_s": spread([s["beyond_s"] for s in out]),
    }


# --- evaluation alone ---------------------------------------------------------------------


async def evaluation(n: int, repeats: int, profile: bool) -> dict[str, Any]:
    args = [sys.executable, "-m", "bench.evalbench", str(n), str(repeats)] + (["--profile"] if profile else [])
    proc = await asyncio.create_subprocess_exec(*args, cwd=str(ROOT), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"evalbench {n} failed: {err.decode()[-2000:]}")
    d = json.loads(out)
    d["rounds"] = spread(d.pop("rounds_s"))
    d["scenarios"] = {k: spread(v) for k, v in d.get("scenarios", {}).items()}
    return d


# --- the soak ---------------------------------------------------------------------------


async def soak(polls: int, interval: str, moto: Moto, proxy: RecordingProxy, admin: AdminStub,
               max_seconds: float | None = None) -> dict[str, Any]:
    n = 1000
    per_poll_calls = math.ceil(n / 500)
    est = min(polls * seconds(interval), max_seconds or float("inf")) * 1.3 + 60
    loaded = await asyncio.to_thread(moto.ensure, n, datetime.now(timezone.utc) + timedelta(seconds=est))
    rundir = WORK / "runs" / "soak"
    shutil.rmtree(rundir, ignore_errors=True)
    (rundir / "state").mkdir(parents=True)
    cfg = rundir / "config.yaml"
    cfg.write_text(synth.config_text(n, endpoint=proxy.url, admin=admin.url,
                                     state_path=str(rundir / "state" / "watchdog.db"), interval=interval))
    proxy.reset()
    proxy.replay, proxy.churn = True, False
    d = await Daemon.shim(str(cfg), str(rundir / "polls.log"), str(ROOT), {**os.environ, **AWS_ENV, **SHIM_ENV}).start()
    samples: list[dict[str, Any]] = []
    warmup = min(10, polls // 10)
    try:
        await d.port()
        t0 = time.monotonic()
        expected = polls if max_seconds is None else min(polls, int(max_seconds / seconds(interval)))
        step = max(1, expected // 40)
        next_sample = warmup
        last_progress = 0.0
        while True:
            done = len(proxy.calls) // per_poll_calls - warmup
            # Sampled as the first call of a poll arrives: the previous poll is over, always the same phase.
            if len(proxy.calls) >= next_sample * per_poll_calls + 1:
                pid = d.pid
                samples.append({"poll": next_sample - warmup, "t": time.monotonic() - t0,
                                "rss_kb": status_kb(pid, "VmRSS"), "hwm_kb": status_kb(pid, "VmHWM"),
                                "fds": fd_count(pid), "cpu_s": cpu_seconds(pid)})
                next_sample += step
            if done >= polls or (max_seconds is not None and time.monotonic() - t0 > max_seconds and samples):
                pid = d.pid
                samples.append({"poll": done, "t": time.monotonic() - t0, "rss_kb": status_kb(pid, "VmRSS"),
                                "hwm_kb": status_kb(pid, "VmHWM"), "fds": fd_count(pid), "cpu_s": cpu_seconds(pid)})
                break
            if len(samples) and samples[-1]["t"] > last_progress + 30:
                last_progress = samples[-1]["t"]
                (WORK / "soak-progress.json").write_text(json.dumps(samples))
            if d.proc is not None and d.proc.returncode is not None:
                raise RuntimeError("the daemon exited during the soak")
            await asyncio.sleep(0.02)
            if len(d.lines) > 2000:  # keep only what is needed: counts of events
                del d.lines[:1000]
        wall = time.monotonic() - t0
    finally:
        proxy.replay = False
        rc = await d.stop()
    first, last = samples[0], samples[-1]
    half = samples[len(samples) // 2:]
    slope = _slope([s["poll"] for s in half], [s["rss_kb"] for s in half]) * 1000  # KB per 1000 polls
    replayed = sum(1 for c in proxy.calls if c.source == "replay")
    return {
        "n": n, "polls": polls, "max_seconds": max_seconds, "polls_done": last["poll"] - first["poll"], "interval": interval,
        "wall_s": last["t"] - first["t"], "wall_with_warmup_s": wall, "exit_code": rc,
        "rss_start_mb": first["rss_kb"] / 1024, "rss_end_mb": last["rss_kb"] / 1024,
        "rss_growth_mb": (last["rss_kb"] - first["rss_kb"]) / 1024,
        "rss_slope_second_half_kb_per_1000_polls": slope,
        "hwm_end_mb": last["hwm_kb"] / 1024,
        "fds_start": first["fds"], "fds_end": last["fds"], "fds_max": max(s["fds"] for s in samples),
        "cpu_per_poll_s": (last["cpu_s"] - first["cpu_s"]) / max(1, last["poll"] - first["poll"]),
        "calls": len(proxy.calls), "replayed_calls": replayed, "data_load_s": loaded,
        "samples": samples,
    }


def _slope(xs: list[float], ys: list[float]) -> float:
    if len(xs) < 2:
        return 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


# --- the machine --------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = status_like("/proc/meminfo", "MemTotal")
    osname = platform.platform()
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                osname = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "os": osname,
        "kernel": platform.release(),
        "loadavg_start": os.getloadavg(),
    }


def status_like(path: str, key: str) -> int:
    with open(path) as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        r = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""

    changed = [ln for ln in git("status", "--porcelain", "--", "watchdog", "pyproject.toml").splitlines() if ln]
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted_daemon_files": len(changed)}


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("rollback-watchdog", "moto", "boto3", "aioboto3", "aiohttp", "prometheus-client")}


# --- the whole run --------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    WORK.mkdir(parents=True, exist_ok=True)
    t_begin = time.monotonic()
    results: dict[str, Any] = {"machine": machine(), "versions": versions(), "git": git_state(),
                               "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               "command": "make bench" if not args.soak_only else "make bench-soak", "targets": TARGETS}
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(synth.SIZES)
    log("moto self-check (patched answers == moto's own)")
    check = subprocess.run([sys.executable, "-m", "bench.moto_server", "--self-check"], cwd=ROOT,
                           capture_output=True, text=True, env={**os.environ, **AWS_ENV})
    results["moto_self_check"] = check.stdout.strip() or check.stderr.strip()[-500:]
    if check.returncode != 0:
        raise RuntimeError("moto self-check failed: " + results["moto_self_check"])
    moto = Moto()
    moto.start()
    proxy = await RecordingProxy(moto.url, churn=not args.no_churn).start()
    results["churn"] = proxy.churn
    results["fast_parse"] = False  # the daemon's own parser since it was plugged in: nothing to switch
    admin = await AdminStub().start()
    http = aiohttp.ClientSession()
    try:
        if not args.soak_only:
            results["sizes"] = {}
            results["baseline"] = {}
            results["evaluation"] = {}
            for n in sizes:
                plan = PLANS[n]
                if args.runs:
                    plan = Plan(**{**plan.__dict__, "runs": min(args.runs, plan.runs)})
                est = plan.runs * (6 + (plan.warmup + plan.polls + 2) * seconds(plan.interval)) + 60
                loaded = await asyncio.to_thread(moto.ensure, n, datetime.now(timezone.utc) + timedelta(seconds=est))
                log(f"N={n}: data loaded in {loaded:.1f}s; {plan.runs} daemon runs at interval {plan.interval}")
                runs = []
                for r in range(plan.runs):
                    await asyncio.to_thread(moto.ensure, n, datetime.now(timezone.utc) + timedelta(minutes=3))
                    res = await one_run(n, r, plan, proxy, admin, http)
                    runs.append(res)
                    log(f"  run {r}: cpu/poll {res['cpu_per_poll_s'] * 1000:.1f} ms, "
                        f"wall/poll {statistics.fmean(p['wall_s'] for p in res['polls']) * 1000:.1f} ms "
                        f"(endpoint {statistics.fmean(p['endpoint_s'] for p in res['polls']) * 1000:.1f} ms), "
                        f"calls/poll {res['calls_per_poll']}, reaction {res['reaction_s'] * 1000:.1f} ms, "
                        f"HWM {res['vm_hwm_kb'] / 1024:.1f} MB")
                results["sizes"][str(n)] = summarize_size(n, runs)
                results["sizes"][str(n)]["data_load_s"] = loaded
                await asyncio.to_thread(moto.ensure, n, datetime.now(timezone.utc) + timedelta(minutes=3))
                b = await baseline(n, plan.baseline_sweeps, plan.baseline_rules, proxy)
                results["baseline"][str(n)] = b
                log(f"  baseline: {b['calls_per_sweep']} calls/sweep, wall {b['wall_s']['median']:.2f} s, "
                    f"cpu {b['cpu_s']['median']:.2f} s")
                e = await evaluation(n, EVAL_REPEATS[n], profile=n == max(sizes))
                results["evaluation"][str(n)] = e
                log(f"  evaluation alone: {e['rounds']['median'] * 1000:.2f} ms for {n} rules")
            results["ratios"] = ratios(results)
        if not args.no_soak:
            if not args.soak_interval and "sizes" not in results:
                # The soak alone: measure this daemon's time per poll at 1 000 rules first (one short run).
                await asyncio.to_thread(moto.ensure, 1000, datetime.now(timezone.utc) + timedelta(minutes=3))
                calib = await one_run(1000, 0, Plan(runs=1, interval="1500ms", warmup=1, polls=2, scrapes=1,
                                                    baseline_sweeps=0, baseline_rules=0), proxy, admin, http)
                results["soak_calibration"] = {"sizes": {"1000": summarize_size(1000, [calib])}}
            interval = args.soak_interval or soak_interval(results.get("soak_calibration", results))
            log(f"soak: {args.soak_polls} polls at {interval} with 1000 rules (answers replayed by the proxy)")
            results["soak"] = await soak(args.soak_polls, interval, moto, proxy, admin, args.soak_max_seconds)
            s = results["soak"]
            log(f"  soak: RSS {s['rss_start_mb']:.1f} -> {s['rss_end_mb']:.1f} MB, fds {s['fds_start']} -> {s['fds_end']}, "
                f"{s['wall_s']:.0f} s")
    finally:
        await http.close()
        await proxy.stop()
        await admin.stop()
        moto.stop()
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["bench_wall_s"] = time.monotonic() - t_begin
    return results


def soak_interval(results: dict[str, Any]) -> str:
    """As short as the daemon can keep up with: a little above its own time per poll at 1 000 rules (the proxy
    replays the answers, so a poll is the daemon's work alone), in steps of 50ms, at least 50ms."""
    size = results.get("sizes", {}).get("1000")
    beyond = size["beyond_endpoint_per_poll_s"]["median"] if size else 0.75  # soak alone: this machine's figure
    ms = max(50, int(math.ceil(beyond * 1.4 / 0.05)) * 50)
    return f"{ms}ms"


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, size in results["sizes"].items():
        b = results["baseline"].get(key)
        if not b:
            continue
        calls = statistics.median(b["calls_per_sweep"]) / size["expected_calls_per_poll"]
        out[key] = {
            "calls": calls,
            "wall": b["wall_s"]["median"] / size["wall_per_poll_s"]["median"],
            "wall_beyond_endpoint": b["beyond_s"]["median"] / size["beyond_endpoint_per_poll_s"]["median"],
            "cpu": b["cpu_s"]["median"] / size["cpu_per_poll_s"]["median"],
        }
    return out


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run")
    p.add_argument("--sizes", help="comma-separated rule counts (default 10,100,1000,5000)")
    p.add_argument("--runs", type=int, help="at most this many daemon runs per size")
    p.add_argument("--soak-polls", type=int, default=1000)
    p.add_argument("--soak-interval", help="the soak's poll interval (default: from the 1 000-rule figures)")
    p.add_argument("--soak-max-seconds", type=float, help="end the soak after this long even if fewer polls were done")
    p.add_argument("--soak-only", action="store_true")
    p.add_argument("--no-soak", action="store_true")
    p.add_argument("--no-write", action="store_true", help="print JSON, leave results.json and README.md alone")
    p.add_argument("--json", help="also write every sample to this file (with --no-write: another commit's run)")
    p.add_argument("--fast-parse", action="store_true", help="does nothing: the daemon's CloudWatch client parses "
                   "GetMetricData's answers with watchdog/sources/cloudwatch_parse.py itself (kept for old commands)")
    p.add_argument("--no-churn", action="store_true", help="hand the daemon moto's answers as they are (a new value "
                   "only when moto's minute turns), not one with every value new at each poll (bench/proxy.py)")
    args = p.parse_args()
    for k, v in AWS_ENV.items():
        os.environ.setdefault(k, v)
    if args.fast_parse:
        print("--fast-parse does nothing: the daemon parses GetMetricData's answers with "
              "watchdog/sources/cloudwatch_parse.py itself", file=sys.stderr)
    if args.soak_max_seconds is None and not args.soak_only:
        args.soak_max_seconds = 90.0  # make bench: a short soak, so the whole run stays under 10 minutes
    results = asyncio.run(main_async(args))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str) + "\n")
    if args.no_write:
        print(json.dumps(results, indent=1, default=str)[:20000])
        return 0
    from bench.report import write

    write(results, soak_only=args.soak_only)
    log(f"done in {results['bench_wall_s']:.0f} s: bench/results.json and the table in bench/README.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
