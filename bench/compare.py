"""Issue 22's speed table: this commit beside the commit before, from `python -m bench.run --json` runs of each
(the same harness, one after the other on the same machine) and `bench.replay_bench` runs.

    python -m bench.compare --before B.json --after A.json [--fast-parse F.json] \
        [--replay-before R.json ...] [--replay-after R.json ...] [--no-write]

Writes the table between the markers in bench/README.md (section "Issue 22").
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from bench.report import write_block

BEGIN, END = "<!-- bench:issue22:start -->", "<!-- bench:issue22:end -->"


def fig(s: dict[str, Any] | None, scale: float = 1000.0, digits: int = 1) -> str:
    if not s or s.get("median") is None:
        return "–"
    f = lambda v: f"{v * scale:.{digits}f}"  # noqa: E731
    return f"{f(s['median'])} [{f(s['min'])}–{f(s['max'])}]"


def spread(xs: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)} if xs else {}


def rows(r: dict[str, Any] | None) -> dict[str, str]:
    """Each figure of issue 22's table from one bench.run result, median [min–max]."""
    if r is None:
        return {}
    s, e = r.get("sizes", {}), r.get("evaluation", {})
    out = {}
    if "1000" in s:
        out["cpu"] = fig(s["1000"]["cpu_per_poll_s"])
        out["beyond"] = fig(s["1000"]["beyond_endpoint_per_poll_s"])
    if "5000" in e:
        out["eval"] = fig(e["5000"]["rounds"], digits=1)
        sc = e["5000"].get("scenarios", {})
        out["eval_same"] = fig(sc.get("same_answer"), digits=1)
        out["eval_new"] = fig(sc.get("new_minute"), digits=1)
    if "5000" in s:
        out["reaction"] = fig(s["5000"]["reaction_s"])
        out["rss"] = fig(s["5000"]["peak_rss_mb"], scale=1.0)
        out["cpu5000"] = fig(s["5000"]["cpu_per_poll_s"])
    if "1000" in s:
        out["reaction1000"] = fig(s["1000"]["reaction_s"])
    return out


def replay(paths: list[str], rules: int, which: int) -> str:
    """The replay's wall time over runs (`which`: 0 the first run, fetching; 1 those from the cache, every one
    of a `--repeat N` file)."""
    walls = []
    for p in paths:
        res = json.loads(Path(p).read_text())
        if res["rules"] == rules:
            walls.extend(r["wall_s"] for r in (res["runs"][1:] if which else res["runs"][:1]))
    return fig(spread(walls), scale=1.0, digits=2) + (f" ({len(walls)} runs)" if walls else "")


def table(before: dict[str, Any], after: dict[str, Any], fast: dict[str, Any] | None, rb: list[str],
          ra: list[str]) -> str:
    b, a, f = rows(before), rows(after), rows(fast)
    fast_col = fast is not None
    head = ["| measure | target | before (`" + before["git"]["commit"] + "`) | after (`" + after["git"]["commit"] + "`) |"
            + (" after, parser plugged in |" if fast_col else ""),
            "|---|---|---|---|" + ("---|" if fast_col else "")]
    lines = list(head)

    def add(label: str, target: str, key: str, unit: str) -> None:
        cells = [b.get(key, "–"), a.get(key, "–")] + ([f.get(key, "–")] if fast_col else [])
        lines.append(f"| {label} | {target} | " + " | ".join(f"{c} {unit}" if c != "–" else c for c in cells) + " |")

    add("daemon CPU per poll, 1 000 rules (all of it beyond the endpoint, /proc)", "< 25 ms", "cpu", "ms")
    add("  wall per poll beyond the endpoint, 1 000 rules", "", "beyond", "ms")
    add("evaluation of 5 000 rules alone: the same board again (`bench.evalbench`)", "< 10 ms", "eval", "ms")
    add("  after an equal answer (a poll that brings nothing new)", "", "eval_same", "ms")
    add("  after a new minute (every rule judged again)", "", "eval_new", "ms")
    add("reaction (breaching answer → level 1 request), 5 000 rules", "< 30 ms", "reaction", "ms")
    add("  the same, 1 000 rules", "", "reaction1000", "ms")
    add("peak RSS (VmHWM), 5 000 rules", "< 110 MB", "rss", "MB")
    for rules, target in ((100, "< 3 s"), (10, "< 1 s")):
        cells = [replay(rb, rules, 1), replay(ra, rules, 1)] + (["the same (no fetch)"] if fast_col else [])
        lines.append(f"| replay of 7 days of 1-minute data, {rules} rules, from the cache, wall | {target} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--before", required=True)
    p.add_argument("--after", required=True)
    p.add_argument("--fast-parse")
    p.add_argument("--replay-before", nargs="*", default=[])
    p.add_argument("--replay-after", nargs="*", default=[])
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    load = lambda path: json.loads(Path(path).read_text()) if path else None  # noqa: E731
    text = table(load(args.before), load(args.after), load(args.fast_parse), args.replay_before, args.replay_after)
    print(text)
    if not args.no_write:
        write_block(BEGIN, END, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
