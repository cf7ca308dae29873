"""Where the daemon's time and memory go (`make bench-profile`, which installs py-spy into .venv).

    python -m bench.profile

* CPU: py-spy samples the real daemon (`python -m watchdog run`, 1 000 rules,
  answers from moto through the proxy) over several steady polls; the shares are
  of the samples in which the daemon was running (idle waiting is not sampled),
  so they split its CPU per poll.
* Memory: the daemon's own building blocks, in one process, at 5 000 rules:
  RSS after the imports, after loading the config, after App.start (sources,
  board, state), and the peak over one poll (VmHWM), each from /proc/self/status.
* Evaluation alone: cProfile of SignalBoard.evaluate over all targets at 5 000 rules.

Writes bench/profile.md and the raw py-spy samples to bench/results/.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench import synth
from bench.admin import AdminStub
from bench.proxy import RecordingProxy
from bench.run import AWS_ENV, ROOT, SHIM_ENV, WORK, Moto, machine

PROFILE_MD = ROOT / "bench" / "profile.md"

# Frames whose cumulative share tells the story of a poll (py-spy shows paths relative to sys.path).
KEY_FRAMES = [
    ("watchdog/runtime/runtime.py", "Runtime._poll", "a whole poll (fetch + evaluation)"),
    ("watchdog/sources/cloudwatch.py", "CloudWatch.poll", "the CloudWatch fetch"),
    ("aiobotocore/client.py", "AioBaseClient._make_api_call", "one GetMetricData through aiobotocore"),
    ("botocore/serialize.py", "QuerySerializer.serialize_to_request", "  request: serialize the 500 queries (validation is off)"),
    ("aiobotocore/endpoint.py", "AioEndpoint.create_request", "  request: form body + SigV4 signing"),
    ("watchdog/sources/cloudwatch_request.py", "EncodedQueries.serialize_to_request", "    form body, the queries encoded once per batch"),
    ("botocore/auth.py", "SigV4Auth.add_auth", "    SigV4 signing"),
    ("aiobotocore/parsers.py", "AioResponseParser.parse", "  answer: XML parsing into dicts"),
    ("botocore/utils.py", "parse_timestamp", "    of which timestamps by botocore's dateutil path"),
    ("watchdog/sources/cloudwatch.py", "fast_timestamp", "    of which timestamps by the daemon's parser (since a4b77fe)"),
    ("watchdog/core/signals.py", "SignalBoard.source_ok", "storing the datapoints"),
    ("watchdog/runtime/runtime.py", "Runtime.evaluate", "evaluation, metrics and the escalation machine"),
    ("watchdog/core/signals.py", "SignalBoard.evaluate", "  rule evaluation (board)"),
    ("watchdog/support/metrics.py", "RuleSeries.record", "  per-rule series (state, value)"),
    ("watchdog/runtime/executor.py", "TargetExecutor.observe", "  escalation machine"),
]


def fold(raw: Path) -> tuple[int, collections.Counter[str], collections.Counter[str]]:
    total, cum, own = 0, collections.Counter(), collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = []
        for f in stack.split(";"):
            name, _, where = f.rpartition(" (")
            path = where.rsplit(":", 1)[0] if where else "?"
            frames.append(f"{path}:{name}")
        own[frames[-1]] += n
        for f in set(frames):
            cum[f] += n
    return total, cum, own


async def cpu_profile(n: int, seconds: float, moto: Moto, proxy: RecordingProxy, admin: AdminStub) -> dict[str, Any]:
    from bench.procs import Daemon, cpu_seconds

    pyspy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if pyspy is None:
        return {"error": "py-spy is not installed (make bench-profile installs it into .venv)"}
    await asyncio.to_thread(moto.ensure, n, datetime.now(timezone.utc) + timedelta(minutes=4))
    rundir = WORK / "runs" / f"profile-{n}"
    shutil.rmtree(rundir, ignore_errors=True)
    (rundir / "state").mkdir(parents=True)
    cfg = rundir / "config.yaml"
    cfg.write_text(synth.config_text(n, endpoint=proxy.url, admin=admin.url, state_path=str(rundir / "state" / "w.db"),
                                     interval="1800ms"))
    proxy.reset()
    # Polled every `interval` with every query due (bench/shim.py): a poll of all N queries, as `make bench` measures
    d = await Daemon.shim(str(cfg), str(rundir / "polls.log"), str(ROOT), {**os.environ, **AWS_ENV, **SHIM_ENV}).start()
    raw = WORK / f"pyspy-{n}.txt"
    try:
        await d.port()
        per = -(-n // 500)
        while len(proxy.calls) < 2 * per:  # two polls done: warm
            await asyncio.sleep(0.05)
        calls0, cpu0 = len(proxy.calls), cpu_seconds(d.pid)
        p = await asyncio.create_subprocess_exec(
            pyspy, "record", "--pid", str(d.pid), "--duration", str(int(seconds)), "--rate", "250", "--format", "raw",
            "--output", str(raw), "--nonblocking", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await p.communicate()
        polls = (len(proxy.calls) - calls0) / per
        cpu = cpu_seconds(d.pid) - cpu0
        if p.returncode != 0 or not raw.exists():
            return {"error": f"py-spy failed: {err.decode()[-500:]}"}
    finally:
        await d.stop()
    total, cum, own = fold(raw)
    key = []
    for path, func, what in KEY_FRAMES:
        share = cum.get(f"{path}:{func}", 0) / max(1, total)
        key.append({"where": f"{path}:{func}", "what": what, "pct": 100 * share})
    top_own = [{"where": k, "pct": 100 * v / max(1, total)} for k, v in own.most_common(15)]
    return {"n": n, "samples": total, "polls": polls, "cpu_per_poll_s": cpu / max(polls, 1e-9), "key": key,
            "own": top_own, "raw": str(raw.relative_to(ROOT))}


MEMORY_STAGES = r'''
import asyncio, json, os, sys, time
def kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
out = {"start": kb("VmRSS")}
from watchdog.lifecycle.app import App
from watchdog.cli.main import main as _cli
from watchdog.config import parse_config
from watchdog.support.logs import setup_logging
out["imports"] = kb("VmRSS")
text = open(sys.argv[1]).read()
t = time.monotonic()
cfg = parse_config(text, dict(os.environ))
out["config_s"] = time.monotonic() - t
out["config"] = kb("VmRSS")
out["hwm_config"] = kb("VmHWM")  # the parse's own peak (the YAML tree, then the models)
setup_logging("warning")
async def go():
    app = await App.create(cfg, serve_http=True, schedule=False)
    await app.start()
    out["started"] = kb("VmRSS")
    out["hwm_started"] = kb("VmHWM")
    t = time.monotonic()
    await app.runtime._poll("cw", app.runtime.clock.now())
    out["poll_s"] = time.monotonic() - t
    out["after_poll"] = kb("VmRSS")
    out["hwm_after_poll"] = kb("VmHWM")
    import tracemalloc
    tracemalloc.start()
    await app.runtime._poll("cw", app.runtime.clock.now())
    cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out["poll2_traced_peak"] = peak // 1024
    out["poll2_traced_after"] = cur // 1024
    out["after_poll2"] = kb("VmRSS")
    out["hwm_after_poll2"] = kb("VmHWM")
    up = [h.up for h in app.runtime.board.sources.values()]
    out["source_up"] = up
    await app.stop()
asyncio.run(go())
print(json.dumps(out))
'''


CONFIG_TRACE = r'''
import gc, json, sys, tracemalloc
from watchdog.config import parse_config
text = open(sys.argv[1]).read()
parse_config(text, {})  # the models of the kinds are built once, on the first parse: not the config's own
gc.collect()
tracemalloc.start()
cfg = parse_config(text, {})
gc.collect()
cur, peak = tracemalloc.get_traced_memory()
print(json.dumps({"peak_kb": peak // 1024, "kept_kb": cur // 1024}))
'''


async def config_trace(n: int) -> dict[str, Any]:
    """Python allocations of loading the config: the peak while parsing, and what the Config keeps."""
    rundir = WORK / "runs" / f"config-{n}"
    rundir.mkdir(parents=True, exist_ok=True)
    cfg = rundir / "config.yaml"
    cfg.write_text(synth.config_text(n, endpoint="http://127.0.0.1:9", admin="http://127.0.0.1:9",
                                     state_path=str(rundir / "w.db"), interval="60s"))
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", CONFIG_TRACE, str(cfg), cwd=str(ROOT),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return json.loads(out) if proc.returncode == 0 else {"error": err.decode()[-1000:]}


async def memory_stages(n: int, moto: Moto, proxy: RecordingProxy, admin: AdminStub) -> dict[str, Any]:
    await asyncio.to_thread(moto.ensure, n, datetime.now(timezone.utc) + timedelta(minutes=4))
    rundir = WORK / "runs" / f"memory-{n}"
    shutil.rmtree(rundir, ignore_errors=True)
    (rundir / "state").mkdir(parents=True)
    cfg = rundir / "config.yaml"
    cfg.write_text(synth.config_text(n, endpoint=proxy.url, admin=admin.url, state_path=str(rundir / "state" / "w.db"),
                                     interval="60s"))
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", MEMORY_STAGES, str(cfg), cwd=str(ROOT),
                                                env={**os.environ, **AWS_ENV}, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        return {"error": err.decode()[-1500:]}
    return json.loads(out)


async def main_async() -> dict[str, Any]:
    WORK.mkdir(parents=True, exist_ok=True)
    moto = Moto()
    moto.start()
    proxy = await RecordingProxy(moto.url).start()
    admin = await AdminStub().start()
    try:
        result: dict[str, Any] = {"machine": machine(), "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        result["cpu_1000"] = await cpu_profile(1000, 12, moto, proxy, admin)
        result["memory_5000"] = await memory_stages(5000, moto, proxy, admin)
        result["memory_10"] = await memory_stages(10, moto, proxy, admin)
        result["config_trace_1000"] = await config_trace(1000)
    finally:
        await proxy.stop()
        await admin.stop()
        moto.stop()
    ev = subprocess.run([sys.executable, "-m", "bench.evalbench", "5000", "10", "--profile"], cwd=ROOT,
                        capture_output=True, text=True)
    result["evaluation_5000"] = json.loads(ev.stdout) if ev.returncode == 0 else {"error": ev.stderr[-1500:]}
    return result


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = ["# Profile of the daemon", "",
             f"`make bench-profile`, {r['started']}; {m['nproc']} cores, {m['cpu_model']}, Python {m['python']}, "
             f"load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_start'])}.", ""]
    c = r["cpu_1000"]
    if "error" in c:
        lines += [f"CPU profile: {c['error']}", ""]
    else:
        lines += [f"## CPU per poll, 1 000 rules (py-spy, {c['samples']} samples over {c['polls']:.0f} polls, "
                  f"{c['cpu_per_poll_s'] * 1000:.0f} ms CPU per poll while profiled)", "",
                  "Share of the daemon's busy samples in which the frame is on the stack:", "",
                  "| where (file:function) | what | share |", "|---|---|---|"]
        for k in c["key"]:
            lines.append(f"| `{k['where']}` | {k['what']} | {k['pct']:.1f} % |")
        lines += ["", "Functions with the most samples of their own:", "", "| function | share |", "|---|---|"]
        for k in c["own"]:
            lines.append(f"| `{k['where']}` | {k['pct']:.1f} % |")
        lines += ["", f"Raw samples: `{c['raw']}` (collapsed stacks; not kept in git).", ""]
    for key in ("memory_10", "memory_5000"):
        mem = r.get(key, {})
        n = key.split("_")[1]
        if "error" in mem:
            lines += [f"Memory at {n} rules: {mem['error']}", ""]
            continue
        mb = lambda kb: f"{kb / 1024:.1f} MB"  # noqa: E731
        lines += [f"## Memory, {n} rules (one process, /proc/self/status)", "", "| stage | RSS | step |", "|---|---|---|",
                  f"| interpreter | {mb(mem['start'])} | |",
                  f"| + imports (watchdog.lifecycle.app, cli: aiohttp, aioboto3/botocore, pydantic, ...) | {mb(mem['imports'])} | +{mb(mem['imports'] - mem['start'])} |",
                  f"| + config loaded and validated ({mem['config_s']:.1f} s) | {mb(mem['config'])} | +{mb(mem['config'] - mem['imports'])} |",
                  f"|   peak while loading it (VmHWM) | {mb(mem['hwm_config'])} | +{mb(mem['hwm_config'] - mem['imports'])} over the imports |",
                  f"| + App.start (state, sources, board, executors, metrics) | {mb(mem['started'])} | +{mb(mem['started'] - mem['config'])} |",
                  f"|   peak so far (VmHWM) | {mb(mem['hwm_started'])} | |",
                  f"| after one poll (RSS / peak VmHWM) | {mb(mem['after_poll'])} / {mb(mem['hwm_after_poll'])} | peak +{mb(mem['hwm_after_poll'] - mem['started'])} over started |",
                  f"| after a second poll (RSS / peak) | {mb(mem['after_poll2'])} / {mb(mem['hwm_after_poll2'])} | |",
                  f"| Python allocations during the second poll (tracemalloc): peak / still held after it | "
                  f"{mb(mem['poll2_traced_peak'])} / {mb(mem['poll2_traced_after'])} | |",
                  ""]
    ct = r.get("config_trace_1000", {})
    if "peak_kb" in ct:
        lines += [f"Loading the config of 1 000 rules under tracemalloc: Python allocations peak at "
                  f"{ct['peak_kb'] / 1024:.1f} MB while parsing; the Config keeps {ct['kept_kb'] / 1024:.1f} MB. "
                  "The tree is built from libyaml's events (`watchdog/config/tree.py`), without PyYAML's node "
                  "graph, which peaked at 13.5 MB here before; the peak is now the tree beside the models being "
                  "validated from it.", ""]
    ev = r.get("evaluation_5000", {})
    if ev.get("profile"):
        lines += ["## Evaluation alone, 5 000 rules (cProfile)", "", "| function | own | cumulative | calls |",
                  "|---|---|---|---|"]
        for p in ev["profile"][:12]:
            lines.append(f"| `{p['where']}` | {p['own_pct']:.1f} % | {p['cum_pct']:.1f} % | {p['calls']} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    for k, v in AWS_ENV.items():
        os.environ.setdefault(k, v)
    r = asyncio.run(main_async())
    (WORK / "profile.json").write_text(json.dumps(r, indent=1, default=str))
    PROFILE_MD.write_text(render(r))
    print(f"wrote {PROFILE_MD.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
