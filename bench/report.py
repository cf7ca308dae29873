"""Writes bench/results.json (or results-soak.json) and the tables into bench/README.md between markers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
README = BENCH / "README.md"
MARKERS = {
    "main": ("<!-- bench:results:start -->", "<!-- bench:results:end -->"),
    "soak": ("<!-- bench:soak:start -->", "<!-- bench:soak:end -->"),
}


def ms(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x * 1000:.{digits}f}"


def fig(s: dict[str, Any] | None, scale: float = 1000.0, digits: int = 1, unit: str = "") -> str:
    """median [min–max] of a spread, scaled (seconds -> ms by default)."""
    if not s or s.get("median") is None:
        return "–"
    f = lambda v: f"{v * scale:.{digits}f}"  # noqa: E731
    if s["n"] == 1:
        return f"{f(s['median'])}{unit}"
    return f"{f(s['median'])}{unit} [{f(s['min'])}–{f(s['max'])}]"


def machine_lines(r: dict[str, Any]) -> list[str]:
    m = r["machine"]
    v = r.get("versions", {})
    return [
        f"- Machine: {m['nproc']} cores (`nproc`), {m['cpu_model']} (/proc/cpuinfo), {m['ram_gib']} GiB RAM; "
        f"{m['os']}, kernel {m['kernel']}; Python {m['python']}.",
        f"- Load average at start / end: {', '.join(f'{x:.2f}' for x in m['loadavg_start'])} / "
        f"{', '.join(f'{x:.2f}' for x in m.get('loadavg_end', ()))} (other work on the machine shares the 2 cores).",
        f"- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        f"- Daemon code: commit {r.get('git', {}).get('commit', '?')}"
        + (f" with {r['git']['uncommitted_daemon_files']} uncommitted file(s) in watchdog/ or pyproject.toml"
           if r.get("git", {}).get("uncommitted_daemon_files") else "") + ".",
        f"- Run started {r['started']}, took {r['bench_wall_s']:.0f} s (`{r['command']}`). "
        f"moto self-check: {r.get('moto_self_check', '?')}.",
    ]


def main_table(r: dict[str, Any]) -> list[str]:
    sizes = r["sizes"]
    keys = list(sizes)
    base = r.get("baseline", {})
    ev = r.get("evaluation", {})
    rat = r.get("ratios", {})
    head = "| | " + " | ".join(f"N = {int(k):,}".replace(",", " ") for k in keys) + " |"
    sep = "|---|" + "---|" * len(keys)
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, fn: Any) -> None:
        cells = []
        for k in keys:
            try:
                cells.append(fn(k))
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("–")
        rows.append((label, cells))

    row("targets × rules", lambda k: f"{sizes[k]['targets']} × {int(k) // sizes[k]['targets']}")
    row("daemon runs (polls measured per run)", lambda k: f"{len(sizes[k]['runs'])} ({len(sizes[k]['runs'][0]['polls'])})")
    row("**CloudWatch calls per poll** (ceil(N/500))", lambda k: (
        f"{'/'.join(str(c) for c in sizes[k]['calls_per_poll_seen'])} ({sizes[k]['expected_calls_per_poll']})"
        + (" ✓" if sizes[k]['calls_per_poll_seen'] == [sizes[k]['expected_calls_per_poll']] else " ✗")))
    row("  the daemon's own counter: requests ÷ polls", lambda k: "/".join(
        f"{x:g}" for x in sizes[k]["daemon_counter_calls_per_poll"]))
    row("queries per call, largest", lambda k: str(sizes[k]["max_queries_per_call"]))
    row("**daemon CPU per poll**, ms (/proc utime+stime)", lambda k: fig(sizes[k]["cpu_per_poll_s"]))
    row("wall per poll, ms", lambda k: fig(sizes[k]["wall_per_poll_s"]))
    row("  of which the endpoint (proxy + moto), ms", lambda k: fig(sizes[k]["endpoint_per_poll_s"]))
    row("  **beyond the endpoint**, ms", lambda k: fig(sizes[k]["beyond_endpoint_per_poll_s"]))
    row("**evaluation of all rules alone**, ms (in process; the same board again)", lambda k: fig(ev[k]["rounds"], digits=2))
    row("  after an equal answer (nothing new), ms", lambda k: fig(ev[k]["scenarios"]["same_answer"], digits=2))
    row("  after a new minute (every rule judged again), ms", lambda k: fig(ev[k]["scenarios"]["new_minute"], digits=2))
    row("**reaction**: breaching answer → level 1 request, ms", lambda k: fig(sizes[k]["reaction_s"]))
    row("  of which: rest of the poll (parse, evaluate), ms", lambda k: fig(sizes[k]["reaction_poll_part_s"]))
    row("  of which: poll end → request at the admin API, ms", lambda k: fig(sizes[k]["reaction_action_part_s"]))
    row("**peak RSS** (VmHWM), MB", lambda k: fig(sizes[k]["peak_rss_mb"], scale=1.0))
    row("  RSS at the end of the run (VmRSS), MB", lambda k: fig(sizes[k]["rss_end_mb"], scale=1.0)
        if "rss_end_mb" in sizes[k] else "-")
    row("`/metrics` scrape, ms (body size)", lambda k: f"{fig(sizes[k]['scrape_s'], digits=2)} ({sizes[k]['metrics_bytes'] / 1024:.0f} KiB)")
    row("daemon start → `started`, s", lambda k: fig(sizes[k]["startup_s"], scale=1.0, digits=2))
    row("baseline: requests per sweep", lambda k: "/".join(str(c) for c in base[k]["calls_per_sweep"]) + (
        f" (swept {base[k]['rules_swept']}, ×{base[k]['scaled_by']:g})" if base[k]["scaled_by"] != 1 else ""))
    row("baseline: wall per sweep, s", lambda k: fig(base[k]["wall_s"], scale=1.0, digits=2))
    row("baseline: CPU per sweep, s", lambda k: fig(base[k]["cpu_s"], scale=1.0, digits=2))
    row("**ratio baseline / daemon: requests**", lambda k: f"{rat[k]['calls']:.0f}×")
    row("**ratio baseline / daemon: wall**", lambda k: f"{rat[k]['wall']:.1f}×")
    row("ratio baseline / daemon: wall beyond the endpoint", lambda k: f"{rat[k]['wall_beyond_endpoint']:.1f}×")
    row("**ratio baseline / daemon: CPU**", lambda k: f"{rat[k]['cpu']:.1f}×")
    out = [head, sep]
    for label, cells in rows:
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return out


def verdicts(r: dict[str, Any]) -> list[str]:
    s = r["sizes"]
    out = ["| target | goal | measured | |", "|---|---|---|---|"]

    def add(name: str, goal: str, measured: str, ok: bool | None) -> None:
        out.append(f"| {name} | {goal} | {measured} | {'met' if ok else 'missed' if ok is not None else 'n/a'} |")

    ok = all(v["calls_per_poll_seen"] == [v["expected_calls_per_poll"]] for v in s.values())
    add("calls per poll", "= ceil(N/500)", ", ".join(f"{k}: {'/'.join(map(str, v['calls_per_poll_seen']))}"
                                                      for k, v in s.items()), ok)
    if "1000" in r.get("ratios", {}):
        x = r["ratios"]["1000"]["calls"]
        add("fewer requests than per-metric polling, N = 1 000", "≥ 250×", f"{x:.0f}×", x >= 250)
    if "5000" in r.get("evaluation", {}):
        e = r["evaluation"]["5000"]
        x = e["rounds"]["median"]
        add("evaluation of 5 000 rules alone (the same board again)", "< 10 ms", f"{x * 1000:.1f} ms", x < 0.010)
        if "new_minute" in e.get("scenarios", {}):
            y = e["scenarios"]["new_minute"]["median"]
            add("  the same, every rule judged again (a new minute)", "< 10 ms", f"{y * 1000:.1f} ms", y < 0.010)
    if "1000" in s:
        x = s["1000"]["cpu_per_poll_s"]["median"]
        add("daemon CPU per poll, N = 1 000 (beyond the endpoint)", "< 25 ms", f"{x * 1000:.0f} ms", x < 0.025)
    if "5000" in s:
        x = s["5000"]["reaction_s"]["median"]
        add("reaction, N = 5 000 (breaching answer → level 1 request)", "< 30 ms", f"{x * 1000:.0f} ms", x < 0.030)
        x = s["5000"]["peak_rss_mb"]["median"]
        add("peak RSS, N = 5 000", "< 110 MB", f"{x:.0f} MB", x < 110)
    soak = r.get("soak")
    if soak:
        add("soak: no growth", "flat RSS and FDs", soak_summary(soak), soak_flat(soak))
    return out


def soak_flat(s: dict[str, Any]) -> bool:
    # Flat: RSS within 2 MB (allocator noise) between the first and last sample, and the same FD count.
    return abs(s["rss_growth_mb"]) <= 2.0 and s["fds_end"] == s["fds_start"]


def soak_summary(s: dict[str, Any]) -> str:
    return (f"{s['polls_done']} polls at {s['interval']}: RSS {s['rss_start_mb']:.1f} → {s['rss_end_mb']:.1f} MB "
            f"({s['rss_growth_mb']:+.1f}), FDs {s['fds_start']} → {s['fds_end']}")


def soak_table(s: dict[str, Any]) -> list[str]:
    return [
        "| soak | |",
        "|---|---|",
        f"| rules, polls, interval | {s['n']}, {s['polls_done']}"
        + (f" (time-boxed at {s['max_seconds']:.0f} s)" if s.get("max_seconds") and s["polls_done"] < s["polls"]
           else f" (of {s['polls']} asked)" if s["polls_done"] < s["polls"] else "") + f", {s['interval']} |",
        f"| wall time | {s['wall_s']:.0f} s ({s['wall_s'] / max(1, s['polls_done']) * 1000:.0f} ms per poll) |",
        f"| CloudWatch calls (answers replayed by the proxy) | {s['calls']} ({s['replayed_calls']}) |",
        f"| RSS first → last sample | {s['rss_start_mb']:.1f} → {s['rss_end_mb']:.1f} MB ({s['rss_growth_mb']:+.2f} MB) |",
        f"| RSS trend over the second half | {s['rss_slope_second_half_kb_per_1000_polls']:+.0f} KB per 1 000 polls |",
        f"| peak RSS (VmHWM) at the end | {s['hwm_end_mb']:.1f} MB |",
        f"| open FDs first → last (max) | {s['fds_start']} → {s['fds_end']} ({s['fds_max']}) |",
        f"| daemon CPU per poll | {s['cpu_per_poll_s'] * 1000:.0f} ms |",
        f"| flat (RSS within 2 MB, same FDs) | {'yes' if soak_flat(s) else 'NO'} |",
    ]


def profile_lines(r: dict[str, Any]) -> list[str]:
    ev = r.get("evaluation", {})
    prof = next((v.get("profile") for v in ev.values() if v.get("profile")), None)
    n = next((k for k, v in ev.items() if v.get("profile")), None)
    if not prof:
        return []
    out = [f"cProfile of the evaluation alone, N = {n} (share of the profiled time; own = in the function itself):", "",
           "| function | own | cumulative | calls |", "|---|---|---|---|"]
    for p in prof[:10]:
        out.append(f"| `{p['where']}` | {p['own_pct']:.1f} % | {p['cum_pct']:.1f} % | {p['calls']} |")
    return out


def block(r: dict[str, Any]) -> str:
    churn = ("- Answers: every value of every answer new at each poll (`bench/proxy.py` churn), so every rule is "
             "judged again at every poll, as at a read on a period boundary." if r.get("churn") else
             "- Answers: moto's as they are (a new value when moto's minute turns; `--no-churn`).")
    parse = ("- GetMetricData's answers parsed by watchdog/sources/cloudwatch_parse.py, plugged in by bench/shim.py "
             "(`--fast-parse`; the daemon does not use it yet)." if r.get("fast_parse") else "")
    lines = ["", *machine_lines(r), churn, *([parse] if parse else []), "", *main_table(r), "", "Targets (issue 22):",
             "", *verdicts(r), ""]
    if r.get("soak"):
        lines += ["Short soak run inside `make bench` (the full 10 000-poll soak is `make bench-soak`, below):", "",
                  *soak_table(r["soak"]), ""]
    prof = profile_lines(r)
    if prof:
        lines += [*prof, ""]
    return "\n".join(lines)


def soak_block(r: dict[str, Any]) -> str:
    return "\n".join(["", *machine_lines(r), "", *soak_table(r["soak"]), ""])


def put_between(text: str, start: str, end: str, content: str) -> str:
    """`text` with `content` between the markers `start` and `end`; both appended at the end if absent."""
    if start not in text or end not in text:
        return text.rstrip("\n") + f"\n\n{start}\n{content}\n{end}\n"
    a = text.index(start) + len(start)
    b = text.index(end)
    return text[:a] + "\n" + content + "\n" + text[b:]


def replace_between(text: str, which: str, content: str) -> str:
    return put_between(text, *MARKERS[which], content)


def write_block(start: str, end: str, content: str) -> None:
    """bench/README.md with `content` between the markers (every bench script's table goes in this way)."""
    README.write_text(put_between(README.read_text(), start, end, content))


def write(results: dict[str, Any], soak_only: bool = False) -> None:
    name = "results-soak.json" if soak_only else "results.json"
    (BENCH / name).write_text(json.dumps(results, indent=1, default=_default) + "\n")
    text = README.read_text() if README.exists() else "# Benchmark\n"
    text = replace_between(text, "soak" if soak_only else "main", soak_block(results) if soak_only else block(results))
    README.write_text(text)


def _default(o: Any) -> Any:
    if isinstance(o, float) and (math.isnan(o) or math.isinf(o)):
        return None
    return str(o)
